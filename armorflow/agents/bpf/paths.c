// Paths: every distinct (name, AppArmor permission set) of a successful operation on a
// name: mkdir, rmdir, unlink, rename (both names), link (the new name, with its target),
// symlink, chmod, chown, truncate, mknod, and unix sockets bound or connected by path.
//
// Called from the sys_exit dispatcher (dispatch.c), like the opens (files.c): the
// arguments are still in the saved user registers and a failed call costs nothing more.
// No descriptor names the object afterwards (after unlink or rmdir there is none), so
// the event carries the name as passed; a relative name also carries the path of the
// directory it is resolved from (the working directory or the *at directory
// descriptor), walked in the kernel, and user space joins the two (convert.py).
// Repeats are dropped with files.c's fingerprint cache, keyed by the names as passed
// (plus the directories relative ones start from), the permissions and the operation.

#define AT_REMOVEDIR_FLAG 0x200
#define RENAME_EXCHANGE_FLAG 2
#define AF_UNIX_FAMILY 1
#define SUN_PATH_OFFSET 2  // struct sockaddr_un: u16 sun_family, char sun_path[108]
#define SUN_PATH_MAX 108

// One operation: what AppArmor checks, on which names.
struct name_op {
    const char *name;   // the name AppArmor checks first
    const char *name2;  // rename's new name or link's target, else NULL
    s64 dfd;            // the directories relative names start from
    s64 dfd2;
    u32 max;            // bytes name may span (a unix socket's sun_path is not terminated)
    u32 perms;          // PERM_* asked of name
    u32 perms2;         // of name2; 0 when name2 is name's old_path (a hard link's target)
    u32 kinds;          // FILE_KIND_* of name, and of name2 << 4
    u32 creates;        // name is created: AppArmor counts its creator as its owner
};
// The operation is described in map memory, not on the stack: the verifier does not
// track what a map holds, so the two dozen cases below meet in one state after the
// switch, where constants on the stack would have it verify what follows once per case.
BPF_PERCPU_ARRAY(name_ops, struct name_op, 1);

// The fingerprint of a name as passed (0: no usable name; 1: too long to hash here),
// read into the scratch event's data.
static __always_inline u32 name_span(u32 max) {
    return max > POS_MASK + 1 ? POS_MASK + 1 : (max ? max : 1);
}

static __always_inline u64 name_fingerprint(struct event *e, const char *name, u32 max, s64 dfd) {
    long len = bpf_probe_read_user_str(&e->data[0], name_span(max), name);
    if (len <= 1)  // unreadable, or "" (AT_EMPTY_PATH: an operation on a descriptor)
        return 0;
    if (len > HASHED_NAME)
        return 1;
    u64 hash = name_hash(e, (u32)len);
    if (e->data[0] != '/')
        hash ^= mix64(base_directory(dfd));
    return hash | 2;
}

// Write one name group at pos: the name as passed, then (for a relative one) the walked
// path of its base directory. Returns the new end.
static __always_inline u32 put_name(struct event *e, u32 pos, const char *name, u32 max, s64 dfd) {
    pos &= POS_MASK;
    long n = bpf_probe_read_user_str(&e->data[pos], name_span(max), name);
    if (n <= 1) {
        e->flags |= EVENT_FLAG_TRUNCATED;  // gone from user memory meanwhile: skip it
        return pos;
    }
    u32 end = pos + (u32)n;
    if (e->data[pos] == '/')
        return end;
    void *dentry, *mnt;
    base_directory_path(dfd, &dentry, &mnt);
    if (!dentry || !mnt) {
        e->flags |= EVENT_FLAG_TRUNCATED;
        return end;
    }
    return put_path_at(e, end, dentry, mnt);
}

static __always_inline int name_op_emit(u32 target, struct name_op *op) {
    count(CNT_OBSERVED);
    u32 zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    u64 fingerprint = name_fingerprint(e, op->name, op->max, op->dfd);
    if (!fingerprint)
        return 0;
    if (op->name2) {
        u64 second = name_fingerprint(e, op->name2, POS_MASK + 1, op->dfd2);
        if (!second)
            return 0;
        fingerprint = (fingerprint == 1 || second == 1) ? 1 : fingerprint ^ mix64(second);
    }
    u32 slot = 0;
    if (fingerprint != 1) {
        // The operation's letters and kinds, so that a chmod and an unlink of one name,
        // or a rename's two ends, never stand for each other.
        fingerprint ^= mix64(((u64)target << 32) | (op->perms << 16) | (op->perms2 << 8) |
                             op->kinds);
        fingerprint |= 1;
        slot = seen_set(fingerprint);
        if (seen_before(fingerprint, slot))
            return 0;
        remember(fingerprint, slot);
    }
    e = event_start(EV_FILE, target);
    if (!e)
        return 0;
    e->flags |= EVENT_FLAG_NAMED;
    e->arg[0] = op->perms;
    e->arg[1] = op->creates;
    e->arg[2] = op->kinds | ((u64)current_fsuid() << 32);
    e->arg[3] = op->perms2;
    u32 end = put_name(e, 0, op->name, op->max, op->dfd);
    if (op->name2) {
        // An empty string separates the groups (a walked name is never empty).
        if (end > POS_MASK) {
            e->flags |= EVENT_FLAG_TRUNCATED;
            count(CNT_TRUNCATED);
        } else {
            // Through memory, so that the compiler keeps the mask the verifier needs.
            *(volatile u32 *)&e->data_len = end;
            u32 at = *(volatile u32 *)&e->data_len & POS_MASK;
            e->data[at] = 0;
            end = put_name(e, at + 1, op->name2, POS_MASK + 1, op->dfd2);
        }
    }
    e->data_len = end;
    event_send(e);
    return 0;
}

// A unix socket address that names a file (not abstract, not unnamed).
static __always_inline int unix_socket_name(struct exit_regs *regs, struct name_op *op) {
    const char *addr = (const char *)regs->si;
    u64 len = regs->dx;
    u16 family = 0;
    if (len <= SUN_PATH_OFFSET || bpf_probe_read_user(&family, sizeof(family), addr))
        return 0;
    char first = 0;
    bpf_probe_read_user(&first, 1, addr + SUN_PATH_OFFSET);
    if (family != AF_UNIX_FAMILY || first == 0)
        return 0;
    u64 path_len = len - SUN_PATH_OFFSET;
    if (path_len > SUN_PATH_MAX)
        path_len = SUN_PATH_MAX;
    op->name = addr + SUN_PATH_OFFSET;
    op->max = (u32)path_len + 1;  // the helper keeps max - 1 bytes and adds the NUL
    return 1;
}

static __always_inline int paths_on_exit(u32 target, struct exit_regs *regs) {
    u32 zero = 0;
    struct name_op *found = name_ops.lookup(&zero);
    if (!found)
        return 0;
    struct name_op op = {};
    op.dfd = AT_FDCWD_VALUE;
    op.dfd2 = AT_FDCWD_VALUE;
    op.max = POS_MASK + 1;
    op.perms = PERM_WRITE;  // AppArmor's w: create, delete, chmod, chown, truncate
    switch (regs->orig_ax) {
    case SYSNR_MKDIRAT:
        op.dfd = (s64)(int)regs->di;
        op.name = (const char *)regs->si;
        op.kinds = FILE_KIND_DIR;
        op.creates = 1;
        break;
    case SYSNR_MKDIR:
        op.name = (const char *)regs->di;
        op.kinds = FILE_KIND_DIR;
        op.creates = 1;
        break;
    case SYSNR_RMDIR:
        op.name = (const char *)regs->di;
        op.kinds = FILE_KIND_DIR;
        break;
    case SYSNR_UNLINK:
        op.name = (const char *)regs->di;  // never a directory (EISDIR)
        break;
    case SYSNR_UNLINKAT:
        op.dfd = (s64)(int)regs->di;
        op.name = (const char *)regs->si;
        op.kinds = (regs->dx & AT_REMOVEDIR_FLAG) ? FILE_KIND_DIR : FILE_KIND_FILE;
        break;
    case SYSNR_RENAME:
        op.name = (const char *)regs->di;
        op.name2 = (const char *)regs->si;
        goto rename;
    case SYSNR_RENAMEAT:
    case SYSNR_RENAMEAT2:
        op.dfd = (s64)(int)regs->di;
        op.name = (const char *)regs->si;
        op.dfd2 = (s64)(int)regs->dx;
        op.name2 = (const char *)regs->r10;
    rename:
        // AppArmor: the old name is read, written and deleted, the new one created
        // (an exchange does both to both). Either may be a directory: user space looks.
        op.perms = PERM_READ | PERM_WRITE;
        op.perms2 = PERM_WRITE;
        if (regs->orig_ax == SYSNR_RENAMEAT2 && (regs->r8 & RENAME_EXCHANGE_FLAG))
            op.perms2 = PERM_READ | PERM_WRITE;
        op.kinds = FILE_KIND_UNKNOWN | (FILE_KIND_UNKNOWN << 4);
        break;
    case SYSNR_LINK:
        op.name = (const char *)regs->si;   // the new name carries the link permission
        op.name2 = (const char *)regs->di;  // the target, the rule's "-> TARGET"
        op.perms = PERM_LINK;
        break;
    case SYSNR_LINKAT:
        op.dfd = (s64)(int)regs->dx;
        op.name = (const char *)regs->r10;
        op.dfd2 = (s64)(int)regs->di;
        op.name2 = (const char *)regs->si;
        op.perms = PERM_LINK;
        break;
    case SYSNR_SYMLINK:  // the target is any text, not a path AppArmor checks
        op.name = (const char *)regs->si;
        op.creates = 1;
        break;
    case SYSNR_SYMLINKAT:
        op.dfd = (s64)(int)regs->si;
        op.name = (const char *)regs->dx;
        op.creates = 1;
        break;
    case SYSNR_CHMOD:
    case SYSNR_CHOWN:
    case SYSNR_LCHOWN:
        op.name = (const char *)regs->di;
        op.kinds = FILE_KIND_UNKNOWN;
        break;
    case SYSNR_FCHMODAT:
    case SYSNR_FCHMODAT2:
    case SYSNR_FCHOWNAT:
        op.dfd = (s64)(int)regs->di;
        op.name = (const char *)regs->si;
        op.kinds = FILE_KIND_UNKNOWN;
        break;
    case SYSNR_TRUNCATE:
        op.name = (const char *)regs->di;
        break;
    case SYSNR_MKNOD:
        op.name = (const char *)regs->di;
        op.creates = 1;
        break;
    case SYSNR_MKNODAT:
        op.dfd = (s64)(int)regs->di;
        op.name = (const char *)regs->si;
        op.creates = 1;
        break;
    case SYSNR_BIND:  // creates the socket file
        if (!unix_socket_name(regs, &op))
            return 0;
        op.creates = 1;
        break;
    case SYSNR_CONNECT:  // AppArmor asks rw of a path socket
        if (!unix_socket_name(regs, &op))
            return 0;
        op.perms = PERM_READ | PERM_WRITE;
        break;
    default:
        return 0;
    }
    __builtin_memcpy(found, &op, sizeof(op));
    return name_op_emit(target, found);
}
