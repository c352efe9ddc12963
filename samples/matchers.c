/* Issue 13's rule matchers: one step per argument, each printing
 * `NAME=ok` or `NAME=errno:N`, so a test can tell what a policy let
 * through from what it refused (EPERM) and from what simply failed.
 *
 *   open:PATH          open(PATH, O_RDONLY)
 *   write:PATH         open(PATH, O_WRONLY|O_CREAT, 0644)
 *   fopen:PATH:MODE    fopen(PATH, MODE)
 *   cd:DIR             chdir(DIR)
 *   openat:DIR:REL     openat(open(DIR, O_DIRECTORY), REL, O_RDONLY)
 *   exec:PATH          fork, execv(PATH, {PATH, "ok"}) in the child; ok when it exits 0
 *   execvp:NAME        the same with execvp
 *   spawnp:NAME        posix_spawnp(NAME, {NAME, "ok"}); ok when it exits 0
 *   rename:OLD:NEW     rename(OLD, NEW)
 *   ids                prints ids=UID:EUID
 *   keep:PATH          opens PATH for writing and keeps it open
 *   wait:PATH          waits (up to 30 s) until PATH exists
 *   system:CMD         system(CMD); ok when it exits 0
 *   connect:IP:PORT    a TCP connect; a refused connection (nobody listens) is "refused"
 *   udp:IP:PORT        a UDP sendto
 *   lib:CMD            system(CMD) made by libmatchers.so (a library), when linked
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#ifdef WITH_LIB
int lib_system(const char *cmd);
#endif

static void report(const char *name, int ok, int err) {
    if (ok)
        printf("%s=ok\n", name);
    else if (err == ECONNREFUSED)
        printf("%s=refused\n", name);
    else
        printf("%s=errno:%d\n", name, err);
    fflush(stdout);
}

/* Splits "a:b" at the first ':' (in place); returns b, or "" when there is none. */
static char *after(char *s) {
    char *c = strchr(s, ':');
    if (!c)
        return s + strlen(s);
    *c = 0;
    return c + 1;
}

static void status(const char *name, int st) {
    if (st == -1)
        report(name, 0, errno);
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        report(name, 1, 0);
    else if (WIFEXITED(st) && WEXITSTATUS(st) >= 100)
        report(name, 0, WEXITSTATUS(st) - 100);
    else
        printf("%s=status:%d\n", name, st);
}

static void run_exec(const char *name, const char *path, int by_name) {
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {(char *)path, "ok", NULL};
        if (by_name)
            execvp(path, argv);
        else
            execv(path, argv);
        _exit(100 + errno);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        st = -1;
    status(name, st);
}

static void net(const char *name, char *ip, int port, int type) {
    int v6 = strchr(ip, ':') != NULL;
    int fd = socket(v6 ? AF_INET6 : AF_INET, type, 0);
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    struct sockaddr *sa = v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4;
    socklen_t len = v6 ? sizeof a6 : sizeof a4;
    if (v6)
        inet_pton(AF_INET6, ip, &a6.sin6_addr);
    else
        inet_pton(AF_INET, ip, &a4.sin_addr);
    int r = type == SOCK_STREAM ? connect(fd, sa, len) : (int)sendto(fd, "x", 1, 0, sa, len);
    report(name, r >= 0, errno);
    close(fd);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char *op = argv[i];
        char *arg = after(op);
        errno = 0;
        if (!strcmp(op, "open")) {
            int fd = open(arg, O_RDONLY);
            report(op, fd >= 0, errno);
            if (fd >= 0)
                close(fd);
        } else if (!strcmp(op, "write")) {
            int fd = open(arg, O_WRONLY | O_CREAT, 0644);
            report(op, fd >= 0, errno);
            if (fd >= 0)
                close(fd);
        } else if (!strcmp(op, "fopen")) {
            char *mode = after(arg);
            FILE *f = fopen(arg, mode);
            report(op, f != NULL, errno);
            if (f)
                fclose(f);
        } else if (!strcmp(op, "cd")) {
            int r = chdir(arg);
            report(op, r == 0, errno);
        } else if (!strcmp(op, "openat")) {
            char *rel = after(arg);
            int dir = open(arg, O_RDONLY | O_DIRECTORY);
            int fd = openat(dir, rel, O_RDONLY);
            report(op, fd >= 0, errno);
            if (fd >= 0)
                close(fd);
            close(dir);
        } else if (!strcmp(op, "exec")) {
            run_exec(op, arg, 0);
        } else if (!strcmp(op, "execvp")) {
            run_exec(op, arg, 1);
        } else if (!strcmp(op, "spawnp")) {
            pid_t pid;
            char *args[] = {arg, "ok", NULL};
            int err = posix_spawnp(&pid, arg, NULL, NULL, args, environ);
            int st = 0;
            if (err == 0 && waitpid(pid, &st, 0) < 0)
                st = -1;
            if (err)
                report(op, 0, err);
            else
                status(op, st);
        } else if (!strcmp(op, "rename")) {
            char *to = after(arg);
            int r = rename(arg, to);
            report(op, r == 0, errno);
        } else if (!strcmp(op, "system")) {
            status(op, system(arg));
        } else if (!strcmp(op, "connect") || !strcmp(op, "udp")) {
            /* The port is after the last ':' (an IPv6 address has colons). */
            char *colon = strrchr(arg, ':');
            int port = colon ? atoi(colon + 1) : 0;
            if (colon)
                *colon = 0;
            net(op, arg, port, !strcmp(op, "udp") ? SOCK_DGRAM : SOCK_STREAM);
        } else if (!strcmp(op, "keep")) {
            int fd = open(arg, O_WRONLY | O_CREAT, 0644);
            printf("keep=%d\n", fd);
        } else if (!strcmp(op, "wait")) {
            int n = 0;
            while (access(arg, F_OK) != 0 && n++ < 3000)
                usleep(10000);
            report(op, n <= 3000, ETIMEDOUT);
        } else if (!strcmp(op, "ids")) {
            printf("ids=%d:%d\n", (int)getuid(), (int)geteuid());
        } else if (!strcmp(op, "lib")) {
#ifdef WITH_LIB
            status(op, lib_system(arg));
#else
            printf("lib=absent\n");
#endif
        } else {
            printf("%s=unknown\n", op);
        }
    }
    printf("done\n");
    return 0;
}
