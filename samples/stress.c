/* Runtime robustness: threads, vfork, signal handlers, and a program that
 * closes or replaces descriptors under the runtime's sink.
 *
 *   stress threads N M     N threads each call open("/nonexistent/...") M times
 *   stress vfork           vfork(); the child runs /bin/echo vfork-child-ran
 *   stress signal          a SIGUSR1 handler calls open() while main is in a loop of open()
 *   stress dup2-sink       dup2() /dev/null over descriptors 1000..1009, then open()
 *   stress close-all       close every descriptor above 2, then open()
 *   stress altstack SIZE   a SIGUSR1 handler on a SIZE-byte alternate stack calls open()
 *   stress seccomp         with process_vm_readv refused by seccomp, open() a bad pointer
 *   stress long-exec       execve a child with 60 arguments of 200 bytes (events get cut)
 *   stress long-system     system() with a 6000-byte command line
 *   stress reentrant N     N open() calls in a loop while a 50 µs interval timer's
 *                          SIGALRM handler also calls open(): handlers land inside
 *                          the runtime's own event path
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int per_thread;

static void *worker(void *arg) {
    long id = (long)arg;
    char path[64];
    for (int i = 0; i < per_thread; i++) {
        snprintf(path, sizeof path, "/nonexistent/t%ld-%d", id, i);
        int fd = open(path, O_RDONLY);
        if (fd != -1 || errno != ENOENT) {
            printf("thread %ld: unexpected open result %d errno %d\n", id, fd, errno);
        }
    }
    return NULL;
}

static volatile sig_atomic_t handled;

static void on_usr1(int sig) {
    (void)sig;
    int saved = errno;
    int fd = open("/nonexistent/from-signal-handler", O_RDONLY);
    if (fd == -1 && errno == ENOENT) handled++;
    errno = saved;
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig) {
    (void)sig;
    int saved = errno;
    if (open("/nonexistent/from-alarm", O_RDONLY) == -1 && errno == ENOENT) alarms++;
    errno = saved;
}

static void on_usr1_altstack(int sig) {
    (void)sig;
    int fd = open("/nonexistent/from-altstack", O_RDONLY);
    if (fd == -1) handled++;
}

/* Makes process_vm_readv fail with EPERM, as some container profiles do. */
static int refuse_process_vm_readv(void) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "threads")) {
        int n = argc > 2 ? atoi(argv[2]) : 8;
        per_thread = argc > 3 ? atoi(argv[3]) : 100;
        pthread_t t[256];
        if (n > 256) n = 256;
        for (long i = 0; i < n; i++) pthread_create(&t[i], NULL, worker, (void *)i);
        for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
        printf("threads done: %d x %d\n", n, per_thread);
    } else if (!strcmp(what, "vfork")) {
        fflush(stdout);
        pid_t pid = vfork();
        if (pid == 0) {
            char *av[] = {"echo", "vfork-child-ran", NULL};
            execve("/bin/echo", av, NULL);
            _exit(3);
        }
        int status;
        waitpid(pid, &status, 0);
        printf("vfork child exit=%d\n", WEXITSTATUS(status));
    } else if (!strcmp(what, "signal")) {
        signal(SIGUSR1, on_usr1);
        for (int i = 0; i < 200; i++) {
            errno = 0;
            int fd = open("/nonexistent/main-loop", O_RDONLY);
            if (fd != -1 || errno != ENOENT) printf("main: errno %d after open\n", errno);
            if (i % 20 == 0) raise(SIGUSR1);
        }
        printf("signals handled=%d\n", (int)handled);
    } else if (!strcmp(what, "dup2-sink") || !strcmp(what, "close-all")) {
        if (!strcmp(what, "dup2-sink")) {
            int null = open("/dev/null", O_WRONLY);
            for (int fd = 1000; fd < 1010; fd++) dup2(null, fd);
        } else {
            for (int fd = 3; fd < 65536; fd++) close(fd);
        }
        int fd = open("/nonexistent/after-sink-change", O_RDONLY);
        printf("open after %s: %d errno=%s\n", what, fd, errno == ENOENT ? "ENOENT" : "other");
    } else if (!strcmp(what, "reentrant")) {
        int n = argc > 2 ? atoi(argv[2]) : 20000;
        struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval t = {.it_interval = {0, 50}, .it_value = {0, 50}};
        setitimer(ITIMER_REAL, &t, NULL);
        int bad = 0;
        for (int i = 0; i < n; i++) {
            errno = 0;
            if (open("/nonexistent/main", O_RDONLY) != -1 || errno != ENOENT) bad++;
        }
        struct itimerval off = {0};
        setitimer(ITIMER_REAL, &off, NULL);
        printf("reentrant main=%d bad=%d\n", n, bad);
        fprintf(stderr, "alarms=%d\n", (int)alarms);
    } else if (!strcmp(what, "altstack")) {
        size_t size = argc > 2 ? strtoul(argv[2], NULL, 0) : 8192;
        stack_t ss = {.ss_sp = malloc(size), .ss_size = size, .ss_flags = 0};
        sigaltstack(&ss, NULL);
        struct sigaction sa = {.sa_handler = on_usr1_altstack, .sa_flags = SA_ONSTACK};
        sigaction(SIGUSR1, &sa, NULL);
        raise(SIGUSR1);
        printf("altstack %zu handled=%d\n", size, (int)handled);
    } else if (!strcmp(what, "seccomp")) {
        if (refuse_process_vm_readv()) {
            printf("seccomp unavailable\n");
            return 1;
        }
        errno = 0;
        int fd = open((const char *)16, O_RDONLY);
        printf("open bad pointer -> %d errno=%s\n", fd, errno == EFAULT ? "EFAULT" : "other");
        fd = open("/nonexistent/after-seccomp", O_RDONLY);
        printf("open good pointer -> %d\n", fd);
    } else if (!strcmp(what, "long-exec")) {
        static char args[60][201];
        char *av[62];
        av[0] = "true";
        for (int i = 0; i < 60; i++) {
            memset(args[i], 'a' + i % 26, 200);
            av[i + 1] = args[i];
        }
        av[61] = NULL;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            execve("/bin/true", av, NULL);
            _exit(3);
        }
        int status;
        waitpid(pid, &status, 0);
        printf("long-exec child exit=%d\n", WEXITSTATUS(status));
    } else if (!strcmp(what, "long-system")) {
        static char cmd[6100];
        memset(cmd, ' ', sizeof cmd);
        memcpy(cmd, "true", 4);
        strcpy(cmd + 6000, "; echo long-system-tail");
        int r = system(cmd);
        printf("system=%d\n", r);
    } else {
        fprintf(stderr, "usage: %s threads N M | vfork | signal | dup2-sink | close-all | altstack SIZE | seccomp | long-exec | long-system | reentrant N\n", argv[0]);
        return 2;
    }
    return 0;
}
