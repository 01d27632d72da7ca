// pq_nsprobe MODE [ARG]: one namespace request, printed as "MODE ok" or "MODE errno=N".
//   unshare HEX   unshare(flags)
//   clone HEX     raw clone(flags | SIGCHLD)
//   clone3 HEX    clone3 with flags
//   mount DIR     mount a tmpfs on DIR
// Built static so that it needs nothing but a handful of syscalls under a filter.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int report(const char *mode, long ret) {
    if (ret < 0)
        printf("%s errno=%d\n", mode, errno);
    else
        printf("%s ok\n", mode);
    fflush(stdout);
    return 0;
}

static long reap(long pid) {
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    const char *mode = argv[1];
    unsigned long flags = strtoul(argv[2], NULL, 16);
    if (!strcmp(mode, "unshare"))
        return report(mode, unshare((int)flags));
    if (!strcmp(mode, "clone"))
        return report(mode, reap(syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0)));
    if (!strcmp(mode, "clone3")) {
        struct clone_args args;
        memset(&args, 0, sizeof(args));
        args.flags = flags;
        args.exit_signal = SIGCHLD;
        return report(mode, reap(syscall(SYS_clone3, &args, sizeof(args))));
    }
    if (!strcmp(mode, "mount"))
        return report(mode, mount("none", argv[2], "tmpfs", 0, NULL));
    return 2;
}
