// Syscalls: each distinct syscall number a target makes, once per target (a bitmap in
// target_state), in the task's own ABI (i386 numbers for 32-bit tasks).

RAW_TRACEPOINT_PROBE(sys_enter) {
    // TP_PROTO(struct pt_regs *regs, long id)
    long nr = (long)ctx->args[1];
    if (nr < 0 || nr >= 512)
        return 0;
    struct task_memo *memo = current_memo();
    if (!memo || !memo->target)
        return 0;
    u32 target = memo->target;
    count(CNT_OBSERVED);
    u32 slot = target & (MAX_TARGETS - 1);
    struct target_state *state = target_state.lookup(&slot);
    if (!state)
        return 0;
    // The ABI is taken when the memo is filled: a task does not switch between 64- and
    // 32-bit syscalls without an exec, which renews the memo.
    u32 compat = memo->compat;
    u32 word = (nr >> 6) & 7;
    u64 bit = 1ULL << (nr & 63);
    u64 *bits = compat ? &state->compat_syscalls[word] : &state->syscalls[word];
    if (*bits & bit)
        return 0;
    __sync_fetch_and_or(bits, bit);
    struct event *e = event_start(EV_SYSCALL, target);
    if (!e)
        return 0;
    e->arg[0] = nr;
    if (compat)
        e->flags |= EVENT_FLAG_COMPAT;
    event_send(e);
    return 0;
}
