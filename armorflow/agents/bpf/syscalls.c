// Syscalls: each distinct syscall number a target makes, once per target (a bitmap in
// target_state), in the task's own ABI (i386 numbers for 32-bit tasks). Called from the
// sys_enter dispatcher (dispatch.c) for every syscall of a target but the namespace ones
// of 64-bit tasks (clone, clone3, unshare, setns), which namespaces.c reports with their
// flags.

static __always_inline void syscall_seen(struct task_memo *memo, long nr) {
    if (nr < 0 || nr >= 512)
        return;
    u32 target = memo->target;
    count(CNT_OBSERVED);
    u32 slot = target & (MAX_TARGETS - 1);
    struct target_state *state = target_state.lookup(&slot);
    if (!state)
        return;
    // The ABI is taken when the memo is filled: a task does not switch between 64- and
    // 32-bit syscalls without an exec, which renews the memo.
    u32 compat = memo->compat;
    u32 word = (nr >> 6) & 7;
    u64 bit = 1ULL << (nr & 63);
    u64 *bits = compat ? &state->compat_syscalls[word] : &state->syscalls[word];
    if (*bits & bit)
        return;
    __sync_fetch_and_or(bits, bit);
    struct event *e = event_start(EV_SYSCALL, target);
    if (!e)
        return;
    e->arg[0] = nr;
    if (compat)
        e->flags |= EVENT_FLAG_COMPAT;
    event_send(e);
}
