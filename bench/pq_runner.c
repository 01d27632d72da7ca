// pq_runner STEPS: runs a workload's steps, one per line, fields separated by tabs, so
// that the traced command is the programs themselves (no shell, no interpreter):
//   run ARGV...        run and wait; fail unless it exits 0
//   out FILE ARGV...   the same, standard output to FILE
//   in FILE ARGV...    the same, standard input from FILE
//   bg ARGV...         start in the background (one at a time)
//   port N             wait until 127.0.0.1:N accepts a connection (20 s)
//   stop SIGNUM        signal the background process and wait for it
//   wait               wait for the background process to exit by itself
//   sleep MS
//   cd DIR
//   env NAME=VALUE
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t bg = -1;

static void msleep(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int spawn(char **argv, const char *out, const char *in, int wait_for) {
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (!wait_for)
            setpgid(0, 0);  // a server and its workers: one group to kill on failure
        if (out) {
            int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || dup2(fd, 1) < 0)
                _exit(126);
            close(fd);
        }
        if (in) {
            int fd = open(in, O_RDONLY);
            if (fd < 0 || dup2(fd, 0) < 0)
                _exit(126);
            close(fd);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (!wait_for) {
        bg = pid;
        return 0;
    }
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int wait_port(int port) {
    for (int i = 0; i < 400; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((unsigned short)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(s);
        if (ok)
            return 0;
        msleep(50);
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    FILE *f = fopen(argv[1], "r");
    if (!f)
        return 2;
    char line[8192];
    int lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        line[strcspn(line, "\n")] = 0;
        char *fields[256];
        int n = 0;
        for (char *tok = strtok(line, "\t"); tok && n < 255; tok = strtok(NULL, "\t"))
            fields[n++] = tok;
        fields[n] = NULL;
        if (n == 0)
            continue;
        int rc = 0;
        const char *op = fields[0];
        if (!strcmp(op, "run"))
            rc = spawn(fields + 1, NULL, NULL, 1);
        else if (!strcmp(op, "out"))
            rc = spawn(fields + 2, fields[1], NULL, 1);
        else if (!strcmp(op, "in"))
            rc = spawn(fields + 2, NULL, fields[1], 1);
        else if (!strcmp(op, "bg"))
            rc = spawn(fields + 1, NULL, NULL, 0);
        else if (!strcmp(op, "port"))
            rc = wait_port(atoi(fields[1]));
        else if (!strcmp(op, "stop") || !strcmp(op, "wait")) {
            int status = 0, sig = 0;
            if (!strcmp(op, "stop")) {
                sig = atoi(fields[1]);
                kill(bg, sig);
            }
            if (waitpid(bg, &status, 0) < 0)
                rc = 1;
            else if (WIFEXITED(status))
                rc = WEXITSTATUS(status);
            else
                rc = WTERMSIG(status) == sig ? 0 : 128 + WTERMSIG(status);
            bg = -1;
        } else if (!strcmp(op, "sleep"))
            msleep(atol(fields[1]));
        else if (!strcmp(op, "cd"))
            rc = chdir(fields[1]);
        else if (!strcmp(op, "env"))
            rc = putenv(strdup(fields[1]));
        else
            rc = 2;
        if (rc != 0) {
            fprintf(stderr, "pq_runner: line %d (%s) failed: %d\n", lineno, op, rc);
            if (bg > 0)
                kill(-bg, SIGKILL);
            return 1;
        }
    }
    return 0;
}
