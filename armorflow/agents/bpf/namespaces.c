// Namespaces: the CLONE_NEW* flags a target passes to clone, clone3, unshare and setns,
// once per target, syscall and distinct flag set (the Seccomp renderer allows exactly
// these sets). These four syscalls of 64-bit tasks are reported here, with their flags,
// instead of by syscalls.c: a flagless report as well would read as "also called
// without namespace flags". Called from the sys_enter dispatcher (dispatch.c).

// The namespace bits (linux/sched.h; armorflow/nsflags.py holds the same table).
#define NS_FLAGS_ALL 0x7E020080ULL  // NEWNS, NEWCGROUP..NEWNET, NEWTIME
#define NS_CLONE_TIME 0x80ULL        // in clone(2)'s flags this bit is the exit signal's

struct nsflags_key {
    u32 target;
    u32 nr;
    u64 flags;
};

BPF_TABLE("lru_hash", struct nsflags_key, u8, seen_nsflags, SEEN_SMALL);

static __always_inline int namespaces_on_enter(u32 target, long nr, struct syscall_args *a) {
    u64 flags = 0;
    if (nr == SYSNR_CLONE3) {
        // clone3(struct clone_args *args, size_t size): the flags are in user memory.
        // A failed read (a bad pointer, which fails the call with EFAULT anyway, or a
        // page not present) leaves 0: the call is recorded as without namespace flags.
        bpf_probe_read_user(&flags, sizeof(flags), (void *)a->arg[0] + OFF_CLONE_ARGS_FLAGS);
        flags &= NS_FLAGS_ALL;
    } else if (nr == SYSNR_SETNS) {
        flags = a->arg[1] & NS_FLAGS_ALL;  // setns(fd, nstype); nstype 0 means "any"
    } else if (nr == SYSNR_CLONE) {
        flags = a->arg[0] & NS_FLAGS_ALL & ~NS_CLONE_TIME;
    } else {
        flags = a->arg[0] & NS_FLAGS_ALL;  // unshare(flags)
    }
    count(CNT_OBSERVED);
    struct nsflags_key key = {};
    key.target = target;
    key.nr = nr;
    key.flags = flags;
    if (seen_nsflags.lookup(&key))
        return 0;
    u8 one = 1;
    seen_nsflags.update(&key, &one);
    struct event *e = event_start(EV_SYSCALL, target);
    if (!e)
        return 0;
    e->arg[0] = nr;
    e->arg[1] = flags;
    e->flags |= EVENT_FLAG_NS_FLAGS;
    event_send(e);
    return 0;
}
