// Descriptors: what a target does to files it already holds open that AppArmor checks
// again: mapping one executable (m), locking it (k; an exclusive lock also asks for w),
// fchmod and fchown (w). AppArmor names the open file by its path, as at open.
//
// Called from the sys_exit dispatcher, for successful calls only. The file behind the
// descriptor is known, so repeats are recognised by the file itself: its dentry and
// mount, its name's hash and length (d_name.hash_len) and its parent dentry, which tells
// a freed and reused dentry of another name apart; the path is walked for new ones only.
// Known limit: a file reached again after a directory above its parent was renamed is
// taken for the one seen before.

#define PROT_EXEC_BIT 4
#define MAP_ANONYMOUS_BIT 0x20
#define LOCK_SH_OP 1
#define LOCK_EX_OP 2
#define F_SETLK_CMD 6
#define F_SETLKW_CMD 7
#define F_OFD_SETLK_CMD 37
#define F_OFD_SETLKW_CMD 38
#define F_RDLCK_TYPE 0
#define F_WRLCK_TYPE 1

static __always_inline int descriptor_op(u32 target, u64 fd, u32 perms) {
    count(CNT_OBSERVED);
    void *file = current_fd_file(fd);
    if (!file)
        return 0;
    void *dentry = read_ptr(file, OFF_FILE_PATH + OFF_PATH_DENTRY);
    void *mnt = read_ptr(file, OFF_FILE_PATH + OFF_PATH_MNT);
    if (!dentry || !mnt)
        return 0;
    u64 hash_len = 0;
    bpf_probe_read_kernel(&hash_len, sizeof(hash_len), dentry + OFF_DENTRY_NAME);
    u64 fingerprint = mix64((u64)dentry) ^ mix64((u64)mnt + hash_len) ^
                      mix64((u64)read_ptr(dentry, OFF_DENTRY_PARENT)) ^
                      mix64(((u64)target << 32) | (perms << 8) | 0x5a);
    fingerprint |= 1;
    u32 slot = seen_set(fingerprint);
    if (seen_before(fingerprint, slot))
        return 0;
    remember(fingerprint, slot);
    struct event *e = event_start(EV_FILE, target);
    if (!e)
        return 0;
    void *inode = read_ptr(file, OFF_FILE_INODE);
    e->arg[0] = perms;
    e->arg[1] = current_owns(inode);
    e->arg[2] = inode_kind(inode);
    e->data_len = put_path(e, dentry, mnt);
    event_send(e);
    return 0;
}

// The AppArmor request of a lock: k, and w too for an exclusive (write) lock.
static __always_inline u32 lock_perms(u32 exclusive) {
    return exclusive ? PERM_LOCK | PERM_WRITE : PERM_LOCK;
}

static __always_inline int descriptors_on_exit(u32 target, struct exit_regs *regs) {
    switch (regs->orig_ax) {
    case SYSNR_MMAP: {
        // mmap(addr, length, prot, flags, fd, offset): a file mapped executable.
        if (!(regs->dx & PROT_EXEC_BIT) || (regs->r10 & MAP_ANONYMOUS_BIT))
            return 0;
        return descriptor_op(target, (u32)regs->r8, PERM_MMAP_EXEC);
    }
    case SYSNR_FLOCK: {
        u64 op = regs->si;
        if (!(op & (LOCK_SH_OP | LOCK_EX_OP)))
            return 0;  // LOCK_UN
        return descriptor_op(target, (u32)regs->di, lock_perms(op & LOCK_EX_OP));
    }
    case SYSNR_FCNTL: {
        u64 cmd = regs->si;
        if (cmd != F_SETLK_CMD && cmd != F_SETLKW_CMD && cmd != F_OFD_SETLK_CMD &&
            cmd != F_OFD_SETLKW_CMD)
            return 0;
        short type = -1;  // struct flock starts with short l_type (UAPI)
        bpf_probe_read_user(&type, sizeof(type), (void *)regs->dx);
        if (type != F_RDLCK_TYPE && type != F_WRLCK_TYPE)
            return 0;  // F_UNLCK
        return descriptor_op(target, (u32)regs->di, lock_perms(type == F_WRLCK_TYPE));
    }
    case SYSNR_FCHMOD:
    case SYSNR_FCHOWN:
        return descriptor_op(target, (u32)regs->di, PERM_WRITE);
    }
    return 0;
}
