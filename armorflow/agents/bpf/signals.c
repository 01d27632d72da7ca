// Peers: signals a target sends or receives, and ptrace requests it makes. Signals the
// kernel raises itself (SIGCHLD at exit, faults) are not mediated by AppArmor and skipped.

#define SI_KERNEL_CODE 0x80

RAW_TRACEPOINT_PROBE(signal_generate) {
    // TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
    //          int result)
    u64 info = ctx->args[1];
    int code = 0;  // SEND_SIG_NOINFO (0): from user space
    if (info == 1)  // SEND_SIG_PRIV
        code = SI_KERNEL_CODE;
    else if (info > 1)  // si_code follows si_signo and si_errno (UAPI siginfo layout)
        bpf_probe_read_kernel(&code, sizeof(code), (void *)(info + 8));
    if (code > 0)
        return 0;
    u32 sender = current_target();
    void *task = (void *)ctx->args[2];
    u32 receiver_tgid = 0;
    bpf_probe_read_kernel(&receiver_tgid, sizeof(receiver_tgid), task + OFF_TASK_TGID);
    u32 receiver = task_target(task, receiver_tgid);
    if (!sender && !receiver)
        return 0;
    count(CNT_OBSERVED);
    struct signal_key key = {.sender = sender, .receiver = receiver, .sig = (u32)ctx->args[0]};
    if (seen_signals.lookup(&key))
        return 0;
    u8 one = 1;
    seen_signals.update(&key, &one);
    struct event *e = event_start(EV_SIGNAL, sender ? sender : receiver);
    if (!e)
        return 0;
    e->arg[0] = key.sig;
    e->arg[1] = sender;
    e->arg[2] = receiver;
    e->arg[3] = receiver_tgid;
    event_send(e);
    return 0;
}

#define REQ_TRACEME 0
#define REQ_ATTACH 16
#define REQ_SEIZE 0x4206

// Called from the sys_enter dispatcher (dispatch.c) for every ptrace call on the node: a
// task that is not a target may ask to be traced by a parent that is one.
static __always_inline int ptrace_on_enter(u32 target, struct syscall_args *a) {
    long request = a->arg[0];
    if (request != REQ_TRACEME && request != REQ_ATTACH && request != REQ_SEIZE)
        return 0;
    void *task = (void *)bpf_get_current_task();
    u32 peer_target = 0;
    u32 peer_tgid = 0;
    if (request == REQ_TRACEME) {
        // The tracer is the parent.
        void *parent = read_ptr(task, OFF_TASK_REAL_PARENT);
        bpf_probe_read_kernel(&peer_tgid, sizeof(peer_tgid), parent + OFF_TASK_TGID);
        peer_target = task_target(parent, peer_tgid);
    }
    if (!target && !peer_target)
        return 0;
    count(CNT_OBSERVED);
    struct event *e = event_start(EV_PTRACE, target ? target : peer_target);
    if (!e)
        return 0;
    e->arg[0] = request;
    e->arg[1] = a->arg[1];  // the pid, in the caller's pid namespace; user space maps it
    e->arg[2] = peer_target;
    e->arg[3] = peer_tgid;
    e->flags = target;  // the caller's own target (0 when only the parent is one)
    event_send(e);
    return 0;
}
