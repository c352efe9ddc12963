/* Runtime robustness: threads, vfork, signal handlers, and a program that
 * closes or replaces descriptors under the runtime's sink.
 *
 *   stress threads N M     N threads each call open("/nonexistent/...") M times
 *   stress vfork           vfork(); the child runs /bin/echo vfork-child-ran
 *   stress signal          a SIGUSR1 handler calls open() while main is in a loop of open()
 *   stress dup2-sink       dup2() /dev/null over descriptors 1000..1009, then open()
 *   stress close-all       close every descriptor above 2, then open()
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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
    } else {
        fprintf(stderr, "usage: %s threads N M | vfork | signal | dup2-sink | close-all\n", argv[0]);
        return 2;
    }
    return 0;
}
