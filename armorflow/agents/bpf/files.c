// Files: every distinct (name, AppArmor permission set) a target opens successfully
// (paths.c: operations on names; descriptors.c: on open files).
//
// Called from the sys_exit dispatcher (dispatch.c) for every syscall of a target; it
// serves open, openat, openat2 and creat: the arguments are still in the saved user
// registers at exit, so no entry program or pending map is needed, and a failed open
// costs nothing more. Already-seen opens are recognised by a
// hash of the name as passed (plus the working directory or directory descriptor for
// relative names), which is cheap; for a new one the struct file behind the returned
// descriptor is found and its path walked in the kernel, so the event carries the
// absolute path AppArmor mediates (symlinks, "..", bind mounts resolved).

#define FLAG_ACCMODE 3
#define FLAG_CREAT 0100
#define FLAG_TRUNC 01000
#define FLAG_APPEND 02000
#define FLAG_PATH 010000000
#define AT_FDCWD_VALUE -100

// Opens already reported: a two-way set-associative cache of 64-bit fingerprints of
// (target, perms, name); paths.c and descriptors.c keep their fingerprints here too.
// This runs on every successful open of a target, and an array
// lookup is inlined by the verifier where an LRU hash map costs a helper call, a jhash
// and an LRU list update. A third name in the same set evicts the older of two, which is
// then reported once more: harmless, the model's union is idempotent.
#define SEEN_WAYS 2
BPF_ARRAY(seen_names, u64, SEEN_FILES);

// The set's first slot for a fingerprint (SEEN_FILES is a power of two).
static __always_inline u32 seen_set(u64 fingerprint) {
    return (u32)(fingerprint >> 32) & (SEEN_FILES - SEEN_WAYS);
}

static __always_inline int seen_before(u64 fingerprint, u32 slot) {
    u64 *first = seen_names.lookup(&slot);
    if (!first)
        return 0;
    if (*first == fingerprint)
        return 1;
    slot += 1;
    u64 *second = seen_names.lookup(&slot);
    return second && *second == fingerprint;
}

// Most recent first: the set's first slot moves to the second.
static __always_inline void remember(u64 fingerprint, u32 slot) {
    u64 *first = seen_names.lookup(&slot);
    slot += 1;
    u64 *second = seen_names.lookup(&slot);
    if (!first || !second)
        return;
    *second = *first;
    *first = fingerprint;
}

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

// The directory a relative name is resolved from: the working directory for AT_FDCWD,
// else the directory descriptor's file. Its dentry identifies it (the dedup key);
// paths.c also walks it.
static __always_inline void base_directory_path(s64 dfd, void **dentry, void **mnt) {
    *dentry = NULL;
    *mnt = NULL;
    if (dfd == AT_FDCWD_VALUE) {
        void *fs = read_ptr((void *)bpf_get_current_task(), OFF_TASK_FS);
        if (fs) {
            *dentry = read_ptr(fs, OFF_FS_PWD + OFF_PATH_DENTRY);
            *mnt = read_ptr(fs, OFF_FS_PWD + OFF_PATH_MNT);
        }
    } else {
        void *dir = current_fd_file(dfd);
        if (dir) {
            *dentry = read_ptr(dir, OFF_FILE_PATH + OFF_PATH_DENTRY);
            *mnt = read_ptr(dir, OFF_FILE_PATH + OFF_PATH_MNT);
        }
    }
}

static __always_inline u64 base_directory(s64 dfd) {
    void *dentry, *mnt;
    base_directory_path(dfd, &dentry, &mnt);
    return (u64)dentry;
}

static __always_inline int files_on_exit(u32 target, struct exit_regs *regs, long ret) {
    s64 dfd = AT_FDCWD_VALUE;
    const void *name;
    u64 flags;
    switch (regs->orig_ax) {
    case SYSNR_OPENAT:
        dfd = (s64)(int)regs->di;
        name = (const void *)regs->si;
        flags = regs->dx;
        break;
    case SYSNR_OPEN:
        name = (const void *)regs->di;
        flags = regs->si;
        break;
    case SYSNR_CREAT:
        name = (const void *)regs->di;
        flags = FLAG_CREAT | FLAG_TRUNC | 1;
        break;
    case SYSNR_OPENAT2:
        dfd = (s64)(int)regs->di;
        name = (const void *)regs->si;
        flags = 0;  // struct open_how starts with the u64 flags (UAPI)
        bpf_probe_read_user(&flags, sizeof(flags), (void *)regs->dx);
        break;
    default:
        return 0;
    }
    count(CNT_OBSERVED);
    u32 perms = open_perms(flags);
    if (!perms)
        return 0;
    u32 zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    long len = bpf_probe_read_user_str(&e->data[0], POS_MASK + 1, name);
    if (len <= 0)
        return 0;
    // Names of at most HASHED_NAME bytes (nearly all) are recognised by a hash of the name
    // as passed, plus the directory a relative one starts from. Longer ones are reported
    // on every open (the agent's own cache drops the repeats): the opened file's dentry
    // would not do as their identity, since renaming any directory above it changes the
    // path AppArmor checks and not the dentry.
    u64 fingerprint = 0;
    u32 slot = 0;
    if (len <= HASHED_NAME) {
        fingerprint = name_hash(e, (u32)len);
        if (e->data[0] != '/')
            fingerprint ^= mix64(base_directory(dfd));
        fingerprint ^= mix64(((u64)target << 8) | perms);
        fingerprint |= 1;  // never 0, the value of an empty slot
        slot = seen_set(fingerprint);
        if (seen_before(fingerprint, slot))
            return 0;
    }
    void *file = current_fd_file(ret);
    if (!file)
        return 0;
    void *dentry = read_ptr(file, OFF_FILE_PATH + OFF_PATH_DENTRY);
    void *mnt = read_ptr(file, OFF_FILE_PATH + OFF_PATH_MNT);
    if (!dentry || !mnt)
        return 0;
    if (fingerprint)
        remember(fingerprint, slot);
    e = event_start(EV_FILE, target);
    if (!e)
        return 0;
    void *inode = read_ptr(file, OFF_FILE_INODE);
    e->arg[0] = perms;
    e->arg[1] = current_owns(inode);
    e->arg[2] = inode_kind(inode);  // O_DIRECTORY or not: AppArmor looks at the inode
    e->data_len = put_path(e, dentry, mnt);
    event_send(e);
    return 0;
}
