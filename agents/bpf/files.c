// Files: every distinct (file, AppArmor permission set) a target opens successfully.
// The open flags are kept at syscall entry; at exit, a successful descriptor leads to the
// struct file, whose path is walked in the kernel (so relative names, "..", symlinks and
// bind mounts come out as the absolute path AppArmor mediates).

#define PERM_READ 1
#define PERM_WRITE 2
#define PERM_APPEND 4

#define FLAG_ACCMODE 3
#define FLAG_CREAT 0100
#define FLAG_TRUNC 01000
#define FLAG_APPEND 02000
#define FLAG_PATH 010000000

struct pending_open {
    u64 flags;
    u32 target;
    u32 pad;
};

BPF_HASH(pending_opens, u32, struct pending_open, MAX_PIDS);

// AppArmor's mapping of open flags to requested permissions: O_APPEND turns write into
// append, O_TRUNC and O_CREAT need write.
static __always_inline u32 open_perms(u64 flags) {
    if (flags & FLAG_PATH)
        return 0;
    u32 perms = 0;
    u32 mode = flags & FLAG_ACCMODE;
    if (mode == 0 || mode == 2)
        perms |= PERM_READ;
    if (mode == 1 || mode == 2)
        perms |= (flags & FLAG_APPEND) ? PERM_APPEND : PERM_WRITE;
    if (flags & (FLAG_CREAT | FLAG_TRUNC))
        perms |= PERM_WRITE;
    return perms;
}

static __always_inline int open_enter(u64 flags) {
    u32 target = current_target();
    if (!target)
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct pending_open pending = {.flags = flags, .target = target};
    pending_opens.update(&tid, &pending);
    return 0;
}

static __always_inline int open_exit(long ret) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct pending_open *found = pending_opens.lookup(&tid);
    if (!found)
        return 0;
    struct pending_open pending = *found;
    pending_opens.delete(&tid);
    if (ret < 0)
        return 0;
    count(CNT_OBSERVED);
    u32 perms = open_perms(pending.flags);
    if (!perms)
        return 0;
    void *file = current_fd_file(ret);
    if (!file)
        return 0;
    struct file_key key = {};
    if (!file_identity(file, pending.target, perms, &key))
        return 0;
    if (seen_files.lookup(&key))
        return 0;
    u8 one = 1;
    seen_files.update(&key, &one);
    struct event *e = event_start(EV_FILE, pending.target);
    if (!e)
        return 0;
    e->arg[0] = perms;
    e->arg[1] = current_owns(read_ptr(file, OFF_FILE_INODE));
    e->data_len = put_path(e, (void *)key.dentry, (void *)key.mnt);
    event_send(e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat) { return open_enter(args->flags); }
TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return open_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_open) { return open_enter(args->flags); }
TRACEPOINT_PROBE(syscalls, sys_exit_open) { return open_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_creat) { return open_enter(FLAG_CREAT | FLAG_TRUNC | 1); }
TRACEPOINT_PROBE(syscalls, sys_exit_creat) { return open_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_openat2) {
    u64 flags = 0;  // struct open_how starts with the u64 flags (UAPI)
    bpf_probe_read_user(&flags, sizeof(flags), (void *)args->how);
    return open_enter(flags);
}
TRACEPOINT_PROBE(syscalls, sys_exit_openat2) { return open_exit(args->ret); }
