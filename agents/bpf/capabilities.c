// Capabilities: each distinct capability a target uses, once per target. Only granted
// checks count: AppArmor's hook runs after the capability bits allow the use. And only
// checks made through the LSM layer (security_capable) count: the kernel also calls
// cap_capable directly, e.g. for CAP_SYS_ADMIN on every mmap of a root task
// (security_vm_enough_memory_mm), which AppArmor never sees. The caller is told by the
// return addresses on the kernel stack, looked at only for a not yet seen capability.

#define CAP_STACK_FRAMES 6

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
    u32 target = current_target();
    if (!target)
        return 0;
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
    if (!via_security_capable(ctx)) {
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
