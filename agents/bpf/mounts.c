// Mounts: mount, remount, umount and pivot_root requests of a target, with the mount
// point and the file system type as the caller named them. Rare, so not deduplicated.

#define OP_MOUNT 1
#define OP_REMOUNT 2
#define OP_UMOUNT 3
#define OP_PIVOT_ROOT 4
#define MS_REMOUNT_FLAG 32

static __always_inline int report_mount(u32 op, const void *path, const void *fstype) {
    u32 target = current_target();
    if (!target)
        return 0;
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

TRACEPOINT_PROBE(syscalls, sys_enter_mount) {
    u32 op = (args->flags & MS_REMOUNT_FLAG) ? OP_REMOUNT : OP_MOUNT;
    return report_mount(op, args->dir_name, args->type);
}

TRACEPOINT_PROBE(syscalls, sys_enter_umount) {
    return report_mount(OP_UMOUNT, args->name, NULL);
}

TRACEPOINT_PROBE(syscalls, sys_enter_pivot_root) {
    return report_mount(OP_PIVOT_ROOT, args->new_root, NULL);
}
