// One program per syscall hook, dispatching to the concerns by syscall number: a program
// invocation costs more than the switch, and these two run on every syscall of the node.
// Other tasks cost one per-CPU memo check; targets are handled by syscalls.c (names),
// files.c (opens), paths.c (operations on names) and descriptors.c (on open files) at
// exit, network.c, mounts.c and namespaces.c at entry. ptrace is looked at for
// every task, because a task that is not a target may ask its target parent to trace it.

RAW_TRACEPOINT_PROBE(sys_enter) {
    // TP_PROTO(struct pt_regs *regs, long id)
    long nr = (long)ctx->args[1];
    struct task_memo *memo = current_memo();
    if (!memo)
        return 0;
    u32 target = memo->target;
    if (nr == SYSNR_PTRACE) {
        struct syscall_args a = {};
        read_syscall_args((void *)ctx->args[0], &a);
        ptrace_on_enter(target, &a);
    }
    if (!target)
        return 0;
    memo->regs = (u64)ctx->args[0];
    if (!memo->compat && (nr == SYSNR_CLONE || nr == SYSNR_CLONE3 || nr == SYSNR_UNSHARE ||
                          nr == SYSNR_SETNS)) {
        // named with their namespace flags by namespaces.c, not by syscalls.c
        struct syscall_args a = {};
        read_syscall_args((void *)ctx->args[0], &a);
        return namespaces_on_enter(target, nr, &a);
    }
    syscall_seen(memo, nr);
    if (memo->compat)
        return 0;  // the numbers below are x86_64 ones
    switch (nr) {
    case SYSNR_SOCKET:
    case SYSNR_SOCKETPAIR:
    case SYSNR_CONNECT: {
        struct syscall_args a = {};
        read_syscall_args((void *)ctx->args[0], &a);
        return network_on_enter(target, nr, &a);
    }
    case SYSNR_MOUNT:
    case SYSNR_UMOUNT2:
    case SYSNR_PIVOT_ROOT: {
        struct syscall_args a = {};
        read_syscall_args((void *)ctx->args[0], &a);
        return mounts_on_enter(target, nr, &a);
    }
    }
    return 0;
}

// The syscalls some concern looks at on exit (files.c, descriptors.c, paths.c). The exit
// hook runs on every syscall of a target, most of them reads, writes and polls: those
// leave after reading one register, before the others are read and a map is looked up.
static __always_inline int wanted_at_exit(long nr) {
    switch (nr) {
    case SYSNR_OPEN: case SYSNR_OPENAT: case SYSNR_OPENAT2: case SYSNR_CREAT:
    case SYSNR_MMAP: case SYSNR_FLOCK: case SYSNR_FCNTL: case SYSNR_FCHMOD: case SYSNR_FCHOWN:
    case SYSNR_MKDIR: case SYSNR_MKDIRAT: case SYSNR_RMDIR: case SYSNR_UNLINK:
    case SYSNR_UNLINKAT: case SYSNR_RENAME: case SYSNR_RENAMEAT: case SYSNR_RENAMEAT2:
    case SYSNR_LINK: case SYSNR_LINKAT: case SYSNR_SYMLINK: case SYSNR_SYMLINKAT:
    case SYSNR_CHMOD: case SYSNR_FCHMODAT: case SYSNR_FCHMODAT2: case SYSNR_CHOWN:
    case SYSNR_LCHOWN: case SYSNR_FCHOWNAT: case SYSNR_TRUNCATE: case SYSNR_MKNOD:
    case SYSNR_MKNODAT: case SYSNR_BIND: case SYSNR_CONNECT:
        return 1;
    }
    return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit) {
    // TP_PROTO(struct pt_regs *regs, long ret)
    struct task_memo *memo = current_memo();
    if (!memo || !memo->target)
        return 0;
    long ret = (long)ctx->args[1];
    if (ret < 0 || memo->compat)  // failed; or i386 numbers and registers (see docs)
        return 0;
    u64 nr = 0;
    bpf_probe_read_kernel(&nr, sizeof(nr), (void *)ctx->args[0] + OFF_PT_REGS_R10 +
                          offsetof(struct exit_regs, orig_ax));
    if (!wanted_at_exit((long)nr))
        return 0;
    struct exit_regs regs = {};
    bpf_probe_read_kernel(&regs, sizeof(regs), (void *)ctx->args[0] + OFF_PT_REGS_R10);
    switch (regs.orig_ax) {
    case SYSNR_OPEN:
    case SYSNR_OPENAT:
    case SYSNR_OPENAT2:
    case SYSNR_CREAT:
        return files_on_exit(memo->target, &regs, ret);
    case SYSNR_MMAP:
    case SYSNR_FLOCK:
    case SYSNR_FCNTL:
    case SYSNR_FCHMOD:
    case SYSNR_FCHOWN:
        return descriptors_on_exit(memo->target, &regs);
    }
    return paths_on_exit(memo->target, &regs);
}
