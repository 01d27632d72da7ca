// Processes: the executables a target runs, and which pids belong to a target.
// Children join their parent's target at fork (so they stay attributed if they leave the
// mount namespace, and while exiting, when their nsproxy is gone); the entry is removed
// when the task is freed, after its last signal, rather than at exit.

RAW_TRACEPOINT_PROBE(sched_process_exec) {
    // TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
    u32 target = current_target();
    if (!target)
        return 0;
    bump_generation();  // the new image may use the other syscall ABI
    count(CNT_OBSERVED);
    void *bprm = (void *)ctx->args[2];
    void *file = read_ptr(bprm, OFF_BPRM_FILE);
    if (!file)
        return 0;
    void *dentry = read_ptr(file, OFF_FILE_PATH + OFF_PATH_DENTRY);
    void *mnt = read_ptr(file, OFF_FILE_PATH + OFF_PATH_MNT);
    if (!dentry || !mnt)
        return 0;
    struct event *e = event_start(EV_EXEC, target);
    if (!e)
        return 0;
    // The path is walked before the dedup check, not only for a new file: renaming a
    // directory above the executable keeps its dentry but changes the path AppArmor
    // checks, so the identity includes a hash of the walked path (leaf first: its first
    // HASHED_NAME bytes hold the file's name and nearest directories) and its length.
    // An exec costs hundreds of microseconds; the walk, a few hundred nanoseconds.
    u32 len = put_path(e, dentry, mnt);
    struct file_key key = {};
    key.target = target;
    key.dentry = (u64)dentry;
    key.mnt = (u64)mnt;
    key.path_hash = name_hash(e, len < HASHED_NAME ? len : HASHED_NAME) ^ len;
    if (seen_execs.lookup(&key))
        return 0;
    u8 one = 1;
    seen_execs.update(&key, &one);
    e->data_len = len;
    event_send(e);
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_process_fork) {
    // TP_PROTO(struct task_struct *parent, struct task_struct *child)
    bump_generation();  // the child may reuse the address of a task a memo still names
    u32 target = current_target();
    if (!target)
        return 0;
    void *child = (void *)ctx->args[1];
    u32 pid = 0, tgid = 0;
    bpf_probe_read_kernel(&pid, sizeof(pid), child + OFF_TASK_PID);
    bpf_probe_read_kernel(&tgid, sizeof(tgid), child + OFF_TASK_TGID);
    if (pid == tgid)  // a new process, not a thread of an already known one
        pid_targets.update(&tgid, &target);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_free) {
    u32 pid = args->pid;
    pid_targets.delete(&pid);
    return 0;
}

// A task that changed namespaces may have left (or joined) a target's mount namespace.
TRACEPOINT_PROBE(syscalls, sys_exit_unshare) {
    bump_generation();
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_setns) {
    bump_generation();
    return 0;
}
