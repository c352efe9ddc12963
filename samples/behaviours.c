/* Each sensitive behaviour dfpatch monitors, one per sub-command, printing
 * what happened on stdout as "name=result errno=NAME" so tests can check that
 * a behaviour happened (monitor mode) or was refused (enforce mode) and that
 * the program went on to the end ("done" is printed last).
 *
 *   behaviours system MARKER        system("touch MARKER")
 *   behaviours popen                popen("echo popen-ran", "r")
 *   behaviours execve|execv|execvp|execvpe|execl|execle|execlp|fexecve
 *                                   in a child: run /bin/echo exec-ran-NAME ...
 *   behaviours posix_spawn|posix_spawnp   spawn /bin/echo spawn-ran
 *   behaviours connect PORT         connect to 127.0.0.1:PORT
 *   behaviours bind                 bind a TCP socket to 127.0.0.1:0
 *   behaviours listen               bind, then listen
 *   behaviours open|open64|openat|openat64|creat|fopen|fopen64 PATH   create PATH
 *   behaviours mmap-exec | mprotect-exec | mmap-plain
 *   behaviours dlopen               dlopen("libm.so.6")
 *   behaviours ptrace               PTRACE_TRACEME in a child
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *errname(int e) {
    switch (e) {
    case 0: return "0";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    default: return "other";
    }
}

static void report(const char *name, long result, int err) {
    printf("%s=%ld errno=%s\n", name, result, errname(err));
    fflush(stdout);
}

/* Runs one exec variant in a child; the parent reports how the child ended. */
static int exec_in_child(const char *how) {
    char tag[64];
    snprintf(tag, sizeof tag, "exec-ran-%s", how);
    char *argv[] = {"echo", tag, NULL};
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        errno = 0;
        int r = -2;
        if (!strcmp(how, "execve")) r = execve("/bin/echo", argv, environ);
        else if (!strcmp(how, "execv")) r = execv("/bin/echo", argv);
        else if (!strcmp(how, "execvp")) r = execvp("echo", argv);
        else if (!strcmp(how, "execvpe")) r = execvpe("echo", argv, environ);
        /* Eight variadic arguments: the last ones are passed on the stack. */
        else if (!strcmp(how, "execl")) r = execl("/bin/echo", "echo", tag, "a2", "a3", "a4", "a5", "a6", (char *)NULL);
        else if (!strcmp(how, "execle")) r = execle("/bin/echo", "echo", tag, (char *)NULL, environ);
        else if (!strcmp(how, "execlp")) r = execlp("echo", "echo", tag, (char *)NULL);
        else if (!strcmp(how, "fexecve")) {
            int fd = open("/bin/echo", O_RDONLY | O_CLOEXEC);
            r = fexecve(fd, argv, environ);
        }
        report(how, r, errno);
        _exit(3);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf("child-exit=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 0;
}

static int loopback(int port, struct sockaddr_in *sa) {
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return socket(AF_INET, SOCK_STREAM, 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s BEHAVIOUR [ARG]\n", argv[0]);
        return 2;
    }
    const char *b = argv[1];
    const char *arg = argc > 2 ? argv[2] : "";
    errno = 0;
    if (!strcmp(b, "system")) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "touch '%s'", arg);
        int r = system(cmd);
        report("system", r, errno);
    } else if (!strcmp(b, "popen")) {
        FILE *p = popen("echo popen-ran", "r");
        int e = errno;
        if (p) {
            char line[64] = "";
            if (fgets(line, sizeof line, p)) fputs(line, stdout);
            pclose(p);
        }
        report("popen", p != NULL, e);
    } else if (!strncmp(b, "exec", 4) || !strcmp(b, "fexecve")) {
        exec_in_child(b);
    } else if (!strcmp(b, "posix_spawn") || !strcmp(b, "posix_spawnp")) {
        char *av[] = {"echo", "spawn-ran", NULL};
        pid_t pid;
        fflush(stdout);
        int r = !strcmp(b, "posix_spawn") ? posix_spawn(&pid, "/bin/echo", NULL, NULL, av, environ)
                                          : posix_spawnp(&pid, "echo", NULL, NULL, av, environ);
        if (r == 0) waitpid(pid, NULL, 0);
        report(b, r, r);
    } else if (!strcmp(b, "connect")) {
        struct sockaddr_in sa;
        int s = loopback(atoi(arg), &sa);
        int r = connect(s, (struct sockaddr *)&sa, sizeof sa);
        report("connect", r, r ? errno : 0);
    } else if (!strcmp(b, "bind") || !strcmp(b, "listen")) {
        struct sockaddr_in sa;
        int s = loopback(0, &sa);
        int r = bind(s, (struct sockaddr *)&sa, sizeof sa);
        report("bind", r, r ? errno : 0);
        if (!strcmp(b, "listen")) {
            errno = 0;
            r = listen(s, 7);
            report("listen", r, r ? errno : 0);
        }
    } else if (!strcmp(b, "open")) {
        int r = open(arg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        report(b, r >= 0 ? 0 : r, r < 0 ? errno : 0);
    } else if (!strcmp(b, "open64")) {
        int r = open64(arg, O_WRONLY | O_CREAT, 0600);
        report(b, r >= 0 ? 0 : r, r < 0 ? errno : 0);
    } else if (!strcmp(b, "openat") || !strcmp(b, "openat64")) {
        int r = !strcmp(b, "openat") ? openat(AT_FDCWD, arg, O_RDWR | O_CREAT | O_CLOEXEC, 0640)
                                     : openat64(AT_FDCWD, arg, O_RDWR | O_CREAT, 0640);
        report(b, r >= 0 ? 0 : r, r < 0 ? errno : 0);
    } else if (!strcmp(b, "creat")) {
        int r = creat(arg, 0600);
        report(b, r >= 0 ? 0 : r, r < 0 ? errno : 0);
    } else if (!strcmp(b, "fopen") || !strcmp(b, "fopen64")) {
        FILE *f = !strcmp(b, "fopen") ? fopen(arg, "w") : fopen64(arg, "w");
        int e = errno;
        if (f) fclose(f);
        report(b, f != NULL, f ? 0 : e);
    } else if (!strcmp(b, "mmap-exec") || !strcmp(b, "mmap-plain")) {
        int prot = !strcmp(b, "mmap-exec") ? PROT_READ | PROT_EXEC : PROT_READ | PROT_WRITE;
        void *p = mmap(NULL, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        report(b, p != MAP_FAILED, p == MAP_FAILED ? errno : 0);
    } else if (!strcmp(b, "mprotect-exec")) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        int r = mprotect(p, 4096, PROT_READ | PROT_EXEC);
        report(b, r, r ? errno : 0);
    } else if (!strcmp(b, "dlopen")) {
        void *h = dlopen("libm.so.6", RTLD_NOW);
        const char *why = h ? NULL : dlerror();
        printf("dlopen=%d dlerror=%s\n", h != NULL, why ? why : "(none)");
    } else if (!strcmp(b, "ptrace")) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            errno = 0;
            long r = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
            report("ptrace", r, r ? errno : 0);
            _exit(0);
        }
        waitpid(pid, NULL, 0);
    } else {
        fprintf(stderr, "unknown behaviour %s\n", b);
        return 2;
    }
    printf("done\n");
    return 0;
}
