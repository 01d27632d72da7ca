// Shared by every armorflow BPF program: the event record, the target and dedup maps,
// the drop counters, and helpers that read kernel structs at offsets taken from the
// running kernel's BTF (OFF_* defines, see loader.py). The header tree BCC compiles
// against does not match the running kernel, so no struct field is dereferenced by name.

#include <uapi/linux/ptrace.h>

// Event kinds (mirrored in records.py).
#define EV_EXEC 1
#define EV_FILE 2
#define EV_SYSCALL 3
#define EV_CAPABILITY 4
#define EV_NETWORK 5
#define EV_SIGNAL 6
#define EV_PTRACE 7
#define EV_MOUNT 8

// Counter slots (mirrored in records.py).
#define CNT_OBSERVED 0    // behaviours of targets seen by a program, before dedup
#define CNT_EMITTED 1     // records written to the ring buffer
#define CNT_DROPPED 2     // records lost because the ring buffer was full
#define CNT_TRUNCATED 3   // paths cut short (too deep or too long)
#define CNT_UNMEDIATED 4  // capability checks AppArmor does not see (not via the LSM)
#define N_COUNTERS 5

#define EVENT_FLAG_TRUNCATED 1
#define EVENT_FLAG_COMPAT 2
#define EVENT_FLAG_NS_FLAGS 4  // EV_SYSCALL: arg[1] holds the call's namespace flags
// EV_FILE: data holds names as passed (paths.c), not one walked path; see records.py
#define EVENT_FLAG_NAMED 8

// EV_FILE permissions (arg[0]), AppArmor's rule letters (mirrored in convert.py).
#define PERM_READ 1
#define PERM_WRITE 2
#define PERM_APPEND 4
#define PERM_MMAP_EXEC 8
#define PERM_LINK 16
#define PERM_LOCK 32

// EV_FILE object kinds (arg[2]): AppArmor names a directory with a trailing "/".
#define FILE_KIND_FILE 0     // anything but a directory
#define FILE_KIND_DIR 1
#define FILE_KIND_UNKNOWN 2  // only the name is known (chmod, chown, rename): user space looks

#define S_IFMT_BITS 0170000
#define S_IFDIR_BITS 0040000

#define COMM_LEN 16
#define NAME_LIMIT 256    // NAME_MAX + 1
#define POS_MASK 4095     // path bytes written before the last name
// A power of two, so that a length masked with DATA_SIZE - 1 is provably in bounds.
#define DATA_SIZE 8192
#define PATH_DEPTH 48

struct event {
    u32 kind;
    u32 target;
    u32 tgid;
    u32 tid;
    u64 ts;
    char comm[COMM_LEN];
    u64 arg[4];
    u32 data_len;
    u32 flags;
    char data[DATA_SIZE];
};
#define EVENT_HEADER_SIZE (sizeof(struct event) - DATA_SIZE)

// What a target has already reported, for the kinds small enough to be a bitmap.
struct target_state {
    u64 syscalls[8];          // x86_64 syscall numbers 0..511
    u64 compat_syscalls[8];   // i386 numbers of 32-bit tasks
    u64 caps[2];
};

// Identity of an executed file: its dentry and mount, plus a hash of its walked path, so
// that neither a freed and reused dentry nor a renamed directory above the file is taken
// for what was seen before.
struct file_key {
    u32 target;
    u32 perms;
    u64 dentry;
    u64 mnt;
    u64 path_hash;
};

struct net_key {
    u32 target;
    u32 family;
    u32 type;
    u32 protocol;
};

struct signal_key {
    u32 sender;
    u32 receiver;
    u32 sig;
    u32 pad;
};

// mount namespace inode -> target id (filled by the agent)
BPF_HASH(mntns_targets, u32, u32, MAX_TARGETS);
// tgid -> target id: processes added by pid, and every child of a target (fallback for
// tasks whose nsproxy is already gone at exit, and for children that leave the mntns)
BPF_HASH(pid_targets, u32, u32, MAX_PIDS);
// indexed by target id modulo MAX_TARGETS (a power of two); ids are never reused and a
// slot is zeroed when a new target takes it
BPF_ARRAY(target_state, struct target_state, MAX_TARGETS);
BPF_TABLE("lru_hash", struct file_key, u8, seen_execs, SEEN_EXECS);
BPF_TABLE("lru_hash", struct net_key, u8, seen_networks, SEEN_SMALL);
BPF_TABLE("lru_hash", struct signal_key, u8, seen_signals, SEEN_SMALL);
BPF_PERCPU_ARRAY(scratch, struct event, 1);
BPF_PERCPU_ARRAY(counters, u64, N_COUNTERS);
BPF_RINGBUF_OUTPUT(events, RING_PAGES);

static __always_inline void count(u32 slot) {
    u64 *value = counters.lookup(&slot);
    if (value)
        *value += 1;
}

static __always_inline void *read_ptr(void *base, u64 offset) {
    void *value = NULL;
    bpf_probe_read_kernel(&value, sizeof(value), base + offset);
    return value;
}

static __always_inline u32 task_mntns(void *task) {
    void *nsproxy = read_ptr(task, OFF_TASK_NSPROXY);
    if (!nsproxy)
        return 0;
    void *mnt_ns = read_ptr(nsproxy, OFF_NSPROXY_MNT_NS);
    if (!mnt_ns)
        return 0;
    u32 inum = 0;
    bpf_probe_read_kernel(&inum, sizeof(inum), mnt_ns + OFF_MNT_NS_INUM);
    return inum;
}

static __always_inline u32 task_target(void *task, u32 tgid) {
    u32 mntns = task_mntns(task);
    if (mntns) {
        u32 *target = mntns_targets.lookup(&mntns);
        if (target)
            return *target;
    }
    u32 *by_pid = pid_targets.lookup(&tgid);
    return by_pid ? *by_pid : 0;
}

// Per-CPU memo of the last task's target: the full lookup costs three kernel reads and
// two hash lookups, and would run on every syscall of every process on the node (helper
// calls are what costs here). The memo is valid while the task pointer is the same and the
// generation has not moved. The generation is bumped by the agent when targets change, and
// by the programs on every fork (a new task may reuse a freed task's address), when a task
// changes namespaces (unshare, setns), and when a target executes a new image.
struct task_memo {
    u64 task;
    u64 generation;
    u32 target;
    u32 compat;
    // The task's saved user registers (its struct pt_regs, at a fixed place on its
    // kernel stack), set at each syscall entry of a target; 0 after every refill. A
    // memo can outlive a migration (a task that enters a syscall on one CPU and wakes up
    // on another, idle one finds its own memo there, from long ago), so what the task is
    // doing now is read from these registers, never remembered here.
    u64 regs;
};
BPF_PERCPU_ARRAY(task_memos, struct task_memo, 1);
BPF_ARRAY(generation, u64, 1);

static __always_inline u64 current_generation(void) {
    u32 zero = 0;
    u64 *value = generation.lookup(&zero);
    return value ? *value : 0;
}

static __always_inline void bump_generation(void) {
    u32 zero = 0;
    u64 *value = generation.lookup(&zero);
    if (value)
        __sync_fetch_and_add(value, 1);
}

static __always_inline struct task_memo *current_memo(void) {
    u32 zero = 0;
    struct task_memo *memo = task_memos.lookup(&zero);
    if (!memo)
        return NULL;
    u64 task = bpf_get_current_task();
    u64 gen = current_generation();
    if (memo->task == task && memo->generation == gen)
        return memo;
    u32 status = 0;
    bpf_probe_read_kernel(&status, sizeof(status), (void *)task + OFF_TASK_TI_STATUS);
    memo->target = task_target((void *)task, bpf_get_current_pid_tgid() >> 32);
    memo->compat = status & TS_COMPAT_BIT;
    // A new generation may mean a new task at a freed one's address, with another stack.
    memo->regs = 0;
    memo->task = task;
    memo->generation = gen;
    return memo;
}

static __always_inline u32 current_target(void) {
    struct task_memo *memo = current_memo();
    return memo ? memo->target : 0;
}

static __always_inline struct event *event_start(u32 kind, u32 target) {
    u32 zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (!e)
        return NULL;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    e->kind = kind;
    e->target = target;
    e->tgid = pid_tgid >> 32;
    e->tid = (u32)pid_tgid;
    e->ts = bpf_ktime_get_ns();
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    e->arg[0] = 0;
    e->arg[1] = 0;
    e->arg[2] = 0;
    e->arg[3] = 0;
    e->data_len = 0;
    e->flags = 0;
    return e;
}

static __always_inline void event_send(struct event *e) {
    u32 len = e->data_len & (DATA_SIZE - 1);
    if (events.ringbuf_output(e, EVENT_HEADER_SIZE + len, 0) == 0)
        count(CNT_EMITTED);
    else
        count(CNT_DROPPED);
}

// The six syscall arguments of x86_64 (di, si, dx, r10, r8, r9 in the saved registers).
struct syscall_args {
    u64 arg[6];
};

static __always_inline void read_syscall_args(void *pt_regs, struct syscall_args *a) {
    // pt_regs order: ... r10 (7), r9 (8), r8 (9), ax, cx, dx (12), si (13), di (14) ...
    u64 regs[8] = {};
    bpf_probe_read_kernel(regs, sizeof(regs), pt_regs + OFF_PT_REGS_R10);
    a->arg[0] = regs[7];  // di
    a->arg[1] = regs[6];  // si
    a->arg[2] = regs[5];  // dx
    a->arg[3] = regs[0];  // r10
    a->arg[4] = regs[2];  // r8
    a->arg[5] = regs[1];  // r9
}

// Copy a short user string (at most NAME_LIMIT bytes) into the event's data at `pos`;
// returns the new end (after the NUL).
static __always_inline u32 put_user_name(struct event *e, u32 pos, const void *src) {
    long n = bpf_probe_read_user_str(&e->data[pos & POS_MASK], NAME_LIMIT, src);
    if (n <= 0) {
        e->data[pos & POS_MASK] = 0;
        return pos + 1;
    }
    return pos + n;
}

// The file's path as AppArmor sees it (relative to the task's mount namespace root),
// written from data[start] on as NUL-terminated names leaf first; user space reverses
// and joins them. Returns the end of what was written (e->data_len).
static __always_inline u32 put_path_at(struct event *e, u32 start, void *dentry, void *vfsmnt) {
    void *mnt = vfsmnt - OFF_MOUNT_MNT;  // the struct mount around this vfsmount
    int reached_root = 0;
    if (start > POS_MASK) {  // no room left after a long name (paths.c)
        e->flags |= EVENT_FLAG_TRUNCATED;
        count(CNT_TRUNCATED);
        return e->data_len = start;
    }
    // The write position lives in e->data_len and is read back through memory at every
    // level: the verifier then sees the same "some offset up to POS_MASK" each time and
    // prunes, where a register would carry a new range per name length and level (the
    // walk alone had cost over 900,000 of its one million instructions).
    e->data_len = start;
    for (int i = 0; i < PATH_DEPTH; i++) {
        void *mnt_root = read_ptr(mnt, OFF_MOUNT_MNT + OFF_VFSMOUNT_ROOT);
        void *parent = read_ptr(dentry, OFF_DENTRY_PARENT);
        if (dentry == mnt_root || dentry == parent) {
            void *mnt_parent = read_ptr(mnt, OFF_MOUNT_PARENT);
            if (!mnt_parent || mnt_parent == mnt) {
                reached_root = 1;
                break;
            }
            // Continue from the mount point in the parent mount.
            dentry = read_ptr(mnt, OFF_MOUNT_MOUNTPOINT);
            mnt = mnt_parent;
            continue;
        }
        void *name = read_ptr(dentry, OFF_DENTRY_NAME + 8);  // qstr: u64 hash_len, name
        u32 pos = *(volatile u32 *)&e->data_len & POS_MASK;
        long n = bpf_probe_read_kernel_str(&e->data[pos], NAME_LIMIT, name);
        if (n <= 0)
            break;
        *(volatile u32 *)&e->data_len = pos + (u32)n;
        if (pos + (u32)n > POS_MASK)
            break;
        dentry = parent;
    }
    if (!reached_root) {
        e->flags |= EVENT_FLAG_TRUNCATED;
        count(CNT_TRUNCATED);
    }
    return e->data_len;
}

static __always_inline u32 put_path(struct event *e, void *dentry, void *vfsmnt) {
    return put_path_at(e, 0, dentry, vfsmnt);
}

#define HASHED_NAME 256  // bytes of a name or path the kernel hashes (see name_hash)

// A 64-bit hash of a name of at most HASHED_NAME bytes in the scratch buffer (bytes past
// the end masked), one word at a time. Each word is mixed (multiply, then fold the high
// half down) before it enters, and the result is finalised the same way: with a plain
// FNV step per word, a difference in a word's top byte only reaches the top of the hash,
// and two such differences cancel (/data/06/chunk_2 and /data/08/chunk_0 collided, and
// the second one was never reported).
//
// The verifier walks this loop once for every possible length, and everything after it
// once per length again: over all 4096 bytes of PATH_MAX that came to 97% of its
// one-million-instruction budget. Longer names are not deduplicated here (files_on_exit).
static __always_inline u64 mix64(u64 x) {
    x *= 0x9e3779b97f4a7c15ULL;
    return x ^ (x >> 32);
}

static __always_inline u64 name_hash(struct event *e, u32 len) {
    u64 hash = len;
    for (u32 i = 0; i < HASHED_NAME / 8; i++) {
        u32 at = i * 8;
        if (at >= len)
            break;
        u64 word = *(u64 *)&e->data[at & POS_MASK];
        u32 left = len - at;
        if (left < 8)
            word &= (1ULL << (left * 8)) - 1;
        hash = mix64(hash ^ mix64(word));
    }
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdULL;
    return hash ^ (hash >> 33);
}

// The struct file behind descriptor `fd` of the current task.
static __always_inline void *current_fd_file(u64 fd) {
    void *task = (void *)bpf_get_current_task();
    void *files = read_ptr(task, OFF_TASK_FILES);
    if (!files)
        return NULL;
    void *fdt = read_ptr(files, OFF_FILES_FDT);
    if (!fdt)
        return NULL;
    void *fd_array = read_ptr(fdt, OFF_FDTABLE_FD);
    if (!fd_array)
        return NULL;
    return read_ptr(fd_array, fd * sizeof(void *));
}

static __always_inline u32 current_fsuid(void) {
    void *cred = read_ptr((void *)bpf_get_current_task(), OFF_TASK_CRED);
    u32 fsuid = 0;
    bpf_probe_read_kernel(&fsuid, sizeof(fsuid), cred + OFF_CRED_FSUID);
    return fsuid;
}

// True when the inode's owner is the current task's fsuid (AppArmor's "owner").
static __always_inline u32 current_owns(void *inode) {
    u32 uid = 0;
    bpf_probe_read_kernel(&uid, sizeof(uid), inode + OFF_INODE_UID);
    return current_fsuid() == uid;
}

// FILE_KIND_DIR for a directory inode, else FILE_KIND_FILE.
static __always_inline u32 inode_kind(void *inode) {
    u16 mode = 0;
    bpf_probe_read_kernel(&mode, sizeof(mode), inode + OFF_INODE_MODE);
    return (mode & S_IFMT_BITS) == S_IFDIR_BITS ? FILE_KIND_DIR : FILE_KIND_FILE;
}

// Saved user registers at syscall exit, r10 .. orig_ax in pt_regs order, read in one go
// (loader.PT_REGS_BLOCK checks the layout). x86_64 arguments: di, si, dx, r10, r8, r9.
struct exit_regs {
    u64 r10;
    u64 r9;
    u64 r8;
    u64 ax;
    u64 cx;
    u64 dx;
    u64 si;
    u64 di;
    u64 orig_ax;
};
