// Mounts: mount, remount, umount and pivot_root requests of a target, with the mount
// point and the file system type as the caller named them. Rare, so not deduplicated.
// Called from the sys_enter dispatcher (dispatch.c).

#define OP_MOUNT 1
#define OP_REMOUNT 2
#define OP_UMOUNT 3
#define OP_PIVOT_ROOT 4
#define MS_REMOUNT_FLAG 32

static __always_inline int report_mount(u32 target, u32 op, const void *path,
                                        const void *fstype) {
    count(CNT_OBSERVED);
    struct event *e = event_start(EV_MOUNT, target);
    if (!e)
        return 0;
    e->arg[0] = op;
    long n = bpf_probe_read_user_str(&e->data[0], POS_MASK + 1, path);
    u32 pos = n > 0 ? n : 0;
    if (pos == 0)
        e->data[pos++] = 0;
    if (fstype)
        pos = put_user_name(e, pos, fstype);
    e->data_len = pos;
    event_send(e);
    return 0;
}

static __always_inline int mounts_on_enter(u32 target, long nr, struct syscall_args *a) {
    if (nr == SYSNR_MOUNT) {
        // mount(source, target, fstype, flags, data)
        u32 op = (a->arg[3] & MS_REMOUNT_FLAG) ? OP_REMOUNT : OP_MOUNT;
        return report_mount(target, op, (const void *)a->arg[1], (const void *)a->arg[2]);
    }
    if (nr == SYSNR_UMOUNT2)
        return report_mount(target, OP_UMOUNT, (const void *)a->arg[0], NULL);
    return report_mount(target, OP_PIVOT_ROOT, (const void *)a->arg[0], NULL);  // pivot_root
}
