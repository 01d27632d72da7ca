// nsprobe: asks the kernel for namespaces the ways a workload can, and says what it got.
//
//   nsprobe work N          fork a child and start a thread (a plain workload), print N
//   nsprobe unshare-user    unshare(CLONE_NEWUSER)
//   nsprobe unshare-net     unshare(CLONE_NEWNET)
//   nsprobe clone-user      clone(CLONE_NEWUSER | SIGCHLD), the raw syscall
//   nsprobe clone3-user     clone3 with CLONE_NEWUSER
//   nsprobe clone3-plain    clone3 without namespace flags
//   nsprobe setns-net PATH  setns(open(PATH), CLONE_NEWNET)
//   nsprobe mount DIR       mount a tmpfs on DIR
//
// Each probe prints "PROBE ok" or "PROBE ERRNAME" and exits 0, so that a container's
// log says what each request got. Built static (gcc -static) to run in a busybox image.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
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

static int report(const char *probe, long ret) {
    if (ret < 0)
        printf("%s %s\n", probe, strerrorname_np(errno));
    else
        printf("%s ok\n", probe);
    fflush(stdout);
    return 0;
}

// A child made by a raw clone/clone3 runs on the parent's stack copy: leave at once.
static long reap(long pid) {
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

static void *thread_main(void *arg) { return arg; }

static int work(const char *n) {
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    if (child < 0 || waitpid(child, NULL, 0) < 0)
        return report("work-fork", -1);
    pthread_t thread;
    errno = pthread_create(&thread, NULL, thread_main, NULL);
    if (errno)
        return report("work-thread", -1);
    pthread_join(thread, NULL);
    printf("work %s ok\n", n);
    return 0;
}

static long clone3_with(uint64_t flags) {
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    return reap(syscall(SYS_clone3, &args, sizeof(args)));
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    const char *probe = argv[1];
    if (!strcmp(probe, "work") && argc == 3)
        return work(argv[2]);
    if (!strcmp(probe, "unshare-user"))
        return report(probe, unshare(CLONE_NEWUSER));
    if (!strcmp(probe, "unshare-net"))
        return report(probe, unshare(CLONE_NEWNET));
    if (!strcmp(probe, "clone-user"))
        return report(probe, reap(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)));
    if (!strcmp(probe, "clone3-user"))
        return report(probe, clone3_with(CLONE_NEWUSER));
    if (!strcmp(probe, "clone3-plain"))
        return report(probe, clone3_with(0));
    if (!strcmp(probe, "setns-net") && argc == 3) {
        int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
        return report(probe, fd < 0 ? -1 : setns(fd, CLONE_NEWNET));
    }
    if (!strcmp(probe, "mount") && argc == 3)
        return report(probe, mount("none", argv[2], "tmpfs", 0, NULL));
    return 2;
}
