// Capabilities: each distinct capability a target uses, once per target. Only granted
// checks count: AppArmor's hook runs after the capability bits allow the use. And only
// checks made through the LSM layer (security_capable) count: the kernel also calls
// cap_capable directly, e.g. for CAP_SYS_ADMIN on every mmap of a root task
// (security_vm_enough_memory_mm), which AppArmor never sees. The caller is told by the
// return addresses on the kernel stack, looked at only for a not yet seen capability.

#define CAP_STACK_FRAMES 6

// Reading the stack costs microseconds here, and the direct CAP_SYS_ADMIN check runs on
// every accountable mapping a root task makes or copies at fork: inside these syscalls a
// CAP_SYS_ADMIN check is taken for that one without reading the stack (no LSM-mediated
// CAP_SYS_ADMIN check is made on their paths). Elsewhere (page faults growing the stack,
// other syscalls) the stack decides. The syscall in progress is the saved registers'
// orig_ax: a syscall's number while in one; a user page fault stores its error code there
// (small values with none of these numbers' bit patterns short of a reserved-bit fault),
// an interrupt a negative vector. 32-bit tasks have other numbers and get the stack check.
static __always_inline int memory_accounting_check(struct task_memo *memo, u32 cap) {
    if (cap != CAP_SYS_ADMIN_NUMBER || !memo->regs || memo->compat)
        return 0;
    s64 nr = -1;
    bpf_probe_read_kernel(&nr, sizeof(nr), (void *)memo->regs + OFF_PT_REGS_DX + 24);
    return nr == SYSNR_MMAP || nr == SYSNR_MPROTECT || nr == SYSNR_BRK || nr == SYSNR_MREMAP
        || nr == SYSNR_EXECVE || nr == SYSNR_EXECVEAT || nr == SYSNR_CLONE
        || nr == SYSNR_CLONE3 || nr == SYSNR_FORK || nr == SYSNR_VFORK;
}

static __always_inline int via_security_capable(struct bpf_raw_tracepoint_args *ctx) {
    u64 frames[CAP_STACK_FRAMES] = {};
    // frames: this program, bpf_trace_run5, cap_capable, then its caller
    if (bpf_get_stack(ctx, frames, sizeof(frames), 0) < 0)
        return 0;
    for (int i = 0; i < CAP_STACK_FRAMES; i++) {
        if (frames[i] >= SECURITY_CAPABLE_START && frames[i] < SECURITY_CAPABLE_END)
            return 1;
    }
    return 0;
}

RAW_TRACEPOINT_PROBE(cap_capable) {
    // TP_PROTO(const struct cred *cred, struct user_namespace *target_ns,
    //          const struct user_namespace *capable_ns, int cap, int ret)
    if ((int)ctx->args[4] != 0)
        return 0;
    struct task_memo *memo = current_memo();
    if (!memo || !memo->target)
        return 0;
    u32 target = memo->target;
    count(CNT_OBSERVED);
    u32 cap = (u32)ctx->args[3];
    if (cap >= 128)
        return 0;
    u32 slot = target & (MAX_TARGETS - 1);
    struct target_state *state = target_state.lookup(&slot);
    if (!state)
        return 0;
    u64 *bits = &state->caps[(cap >> 6) & 1];
    u64 bit = 1ULL << (cap & 63);
    if (*bits & bit)
        return 0;
    if (memory_accounting_check(memo, cap) || !via_security_capable(ctx)) {
        count(CNT_UNMEDIATED);
        return 0;
    }
    __sync_fetch_and_or(bits, bit);
    struct event *e = event_start(EV_CAPABILITY, target);
    if (!e)
        return 0;
    e->arg[0] = cap;
    event_send(e);
    return 0;
}
