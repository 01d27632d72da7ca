// Network: each distinct (family, type, protocol) of the sockets a target creates, and
// of the sockets it connects (which may have been inherited or passed to it).

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

TRACEPOINT_PROBE(syscalls, sys_enter_socket) {
    u32 target = current_target();
    if (!target)
        return 0;
    count(CNT_OBSERVED);
    return report_socket(target, args->family, args->type, args->protocol);
}

TRACEPOINT_PROBE(syscalls, sys_enter_socketpair) {
    u32 target = current_target();
    if (!target)
        return 0;
    count(CNT_OBSERVED);
    return report_socket(target, args->family, args->type, args->protocol);
}

TRACEPOINT_PROBE(syscalls, sys_enter_connect) {
    u32 target = current_target();
    if (!target)
        return 0;
    count(CNT_OBSERVED);
    void *file = current_fd_file(args->fd);
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
