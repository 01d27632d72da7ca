// Network: each distinct (family, type, protocol) of the sockets a target creates, and
// of the sockets it connects (which may have been inherited or passed to it). Called
// from the sys_enter dispatcher (dispatch.c).

#define SOCK_TYPE_MASK 0xf

static __always_inline int report_socket(u32 target, u32 family, u32 type, u32 protocol) {
    struct net_key key = {.target = target, .family = family,
                          .type = type & SOCK_TYPE_MASK, .protocol = protocol};
    if (seen_networks.lookup(&key))
        return 0;
    u8 one = 1;
    seen_networks.update(&key, &one);
    struct event *e = event_start(EV_NETWORK, target);
    if (!e)
        return 0;
    e->arg[0] = key.family;
    e->arg[1] = key.type;
    e->arg[2] = key.protocol;
    event_send(e);
    return 0;
}

static __always_inline int connect_on_enter(u32 target, u64 fd) {
    void *file = current_fd_file(fd);
    if (!file)
        return 0;
    void *sock = read_ptr(file, OFF_FILE_PRIVATE_DATA);  // struct socket of a socket file
    if (!sock)
        return 0;
    u16 type = 0, family = 0, protocol = 0;
    bpf_probe_read_kernel(&type, sizeof(type), sock + OFF_SOCKET_TYPE);
    void *sk = read_ptr(sock, OFF_SOCKET_SK);
    if (!sk)
        return 0;
    bpf_probe_read_kernel(&family, sizeof(family), sk + OFF_SOCK_FAMILY);
    bpf_probe_read_kernel(&protocol, sizeof(protocol), sk + OFF_SOCK_PROTOCOL);
    return report_socket(target, family, type, protocol);
}

static __always_inline int network_on_enter(u32 target, long nr, struct syscall_args *a) {
    count(CNT_OBSERVED);
    if (nr == SYSNR_CONNECT)
        return connect_on_enter(target, a->arg[0]);
    return report_socket(target, a->arg[0], a->arg[1], a->arg[2]);  // socket, socketpair
}
