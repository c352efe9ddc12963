/* Doors around the rewritten code (issue 11): system calls made by code
 * dfpatch never saw, which only the backstop (Syscall User Dispatch) sees,
 * and what a program may do to signals that the backstop must keep working
 * under. Usage: escapes MODE [LIBRARY]. Each mode prints what happened.
 *
 *   jit-exec       JIT code (RW page filled, made RX, called) makes execve
 *   jit-connect    JIT code makes connect to a loopback listener of ours
 *   jit-thread     a thread the program starts (pthread_create) makes a JIT execve
 *   jit-fork       a fork child makes a JIT execve; the parent reports its status
 *   jit-setuid     JIT code makes setuid to the uid it has (issue 12's doors)
 *   jit-chmod      JIT code makes chmod of a file it made (escapes-chmod), 04755
 *   lib-exec       a dlopen'ed library's raw execve
 *   lib-vfork      a dlopen'ed library's raw vfork; the child's raw execve
 *   lib-thread     a thread of a dlopen'ed library makes a raw execve
 *   ctor-thread    a thread started by a library constructor does
 *   dlmopen-exec   a library loaded by dlmopen (new namespace): raw execve
 *   own-sigsys     the program's own SIGSYS handler: kept, read back, called
 *   mask-all       every signal blocked, then JIT system calls
 *   handler-calls  a handler blocking every signal makes system calls
 *   prctl-off      tries to switch Syscall User Dispatch off, then JIT execve
 *   vfork-reset    a vfork child puts a signal back to its default (as
 *                  posix_spawn does); the parent's handler must still run
 *   prctl-wide     prctl with the option's upper half set (the kernel reads
 *                  an int) through syscall(), then JIT execve
 *   suspend-full   sigsuspend with every signal but SIGUSR1 blocked; the
 *                  handler makes a JIT system call
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char *echo_argv[] = {"/bin/echo", "escaped", NULL};

/* mov eax, NR; syscall; ret: a three-argument system call, written at run time. */
static long (*jit(int nr))(long, long, long) {
    unsigned char code[] = {0xb8, nr & 0xff, (nr >> 8) & 0xff, 0, 0, 0x0f, 0x05, 0xc3};
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    memcpy(p, code, sizeof code);
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC) != 0) {
        perror("mprotect");
        exit(2);
    }
    return (long (*)(long, long, long))p;
}

static void *library(const char *path, int new_namespace) {
    void *h = new_namespace ?
#ifdef __GLIBC__
                            dlmopen(LM_ID_NEWLM, path, RTLD_NOW)
#else
                            NULL
#endif
                            : dlopen(path, RTLD_NOW);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        exit(2);
    }
    return h;
}

static void *symbol(void *h, const char *name) {
    void *f = dlsym(h, name);
    if (!f) {
        fprintf(stderr, "dlsym %s: %s\n", name, dlerror());
        exit(2);
    }
    return f;
}

static volatile int handled;
static void on_signal(int sig) {
    /* System calls inside a handler that blocks every signal. */
    char msg[] = "handler wrote\n";
    write(1, msg, sizeof msg - 1);
    handled = sig;
}

static long (*handler_jit)(long, long, long);
static volatile long handler_pid;
static void on_usr1_jit(int sig) {
    (void)sig;
    handler_pid = handler_jit(0, 0, 0);
}

static long execve_jit(void) {
    return jit(59)((long)echo_argv[0], (long)echo_argv, (long)environ);
}

static void *jit_thread(void *arg) {
    (void)arg;
    printf("thread's execve returned %ld\n", execve_jit());
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: escapes MODE [LIBRARY]\n");
        return 2;
    }
    const char *mode = argv[1];
    const char *lib = argc > 2 ? argv[2] : "";
    if (!strcmp(mode, "jit-exec")) {
        printf("execve returned %ld\n", execve_jit());
    } else if (!strcmp(mode, "jit-connect")) {
        int l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
            getsockname(l, (struct sockaddr *)&a, &len)) {
            perror("listener");
            return 2;
        }
        int s = socket(AF_INET, SOCK_STREAM, 0);
        printf("connect returned %ld\n", jit(42)(s, (long)&a, sizeof a));
    } else if (!strcmp(mode, "jit-thread")) {
        pthread_t t;
        if (pthread_create(&t, NULL, jit_thread, NULL) == 0) pthread_join(t, NULL);
    } else if (!strcmp(mode, "jit-fork")) {
        pid_t pid = fork();
        if (pid == 0) {
            printf("child's execve returned %ld\n", execve_jit());
            _exit(1);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        printf("child exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    } else if (!strcmp(mode, "jit-setuid")) {
        printf("setuid returned %ld\n", jit(105)(getuid(), 0, 0));
    } else if (!strcmp(mode, "jit-chmod")) {
        FILE *f = fopen("escapes-chmod", "w");
        if (f) fclose(f);
        printf("chmod returned %ld\n", jit(90)((long)"escapes-chmod", 04755, 0));
    } else if (!strcmp(mode, "lib-exec")) {
        long (*f)(const char *, char **, char **) = symbol(library(lib, 0), "raw_execve");
        printf("execve returned %ld\n", f(echo_argv[0], echo_argv, environ));
    } else if (!strcmp(mode, "dlmopen-exec")) {
        long (*f)(const char *, char **, char **) = symbol(library(lib, 1), "raw_execve");
        printf("execve returned %ld\n", f(echo_argv[0], echo_argv, environ));
    } else if (!strcmp(mode, "lib-vfork")) {
        long (*f)(const char *, char **, char **) = symbol(library(lib, 0), "raw_vfork_execve");
        long pid = f(echo_argv[0], echo_argv, environ);
        int st = 0;
        if (pid <= 0 || waitpid(pid, &st, 0) != pid) {
            printf("vfork returned %ld\n", pid);
            return 1;
        }
        printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    } else if (!strcmp(mode, "lib-thread")) {
        long (*f)(const char *, char **, char **) = symbol(library(lib, 0), "thread_execve");
        printf("thread's execve returned %ld\n", f(echo_argv[0], echo_argv, environ));
    } else if (!strcmp(mode, "ctor-thread")) {
        setenv("ESCAPES_CTOR_THREAD", "1", 1);
        long (*f)(void) = symbol(library(lib, 0), "ctor_thread_result");
        printf("constructor thread's execve returned %ld\n", f());
    } else if (!strcmp(mode, "own-sigsys")) {
        struct sigaction sa = {.sa_handler = on_signal}, old;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSYS, &sa, NULL) || sigaction(SIGSYS, NULL, &old)) {
            perror("sigaction");
            return 2;
        }
        printf("read back: %s\n", old.sa_handler == on_signal ? "same" : "other");
        raise(SIGSYS);
        printf("own handler ran: %s\n", handled == SIGSYS ? "yes" : "no");
        printf("execve returned %ld\n", execve_jit());
    } else if (!strcmp(mode, "mask-all")) {
        sigset_t all, old;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, NULL);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
        sigprocmask(SIG_BLOCK, NULL, &old);
        printf("SIGUSR1 blocked: %s\n", sigismember(&old, SIGUSR1) ? "yes" : "no");
        printf("getpid same: %s\n", jit(39)(0, 0, 0) == getpid() ? "yes" : "no");
        printf("execve returned %ld\n", execve_jit());
    } else if (!strcmp(mode, "handler-calls")) {
        struct sigaction sa = {.sa_handler = on_signal};
        sigfillset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
        raise(SIGUSR1);
        printf("handled: %s\n", handled == SIGUSR1 ? "yes" : "no");
        printf("execve returned %ld\n", execve_jit());
    } else if (!strcmp(mode, "prctl-off")) {
        int r = prctl(59 /* PR_SET_SYSCALL_USER_DISPATCH */, 0 /* OFF */, 0, 0, 0);
        printf("prctl returned %d\n", r);
        printf("execve returned %ld\n", execve_jit());
    } else if (!strcmp(mode, "prctl-wide")) {
        long r = syscall(157 /* prctl */, 0x10000003bL, 0L, 0L, 0L, 0L);
        printf("prctl returned %ld\n", r);
        printf("execve returned %ld\n", execve_jit());
    } else if (!strcmp(mode, "suspend-full")) {
        handler_jit = jit(39);
        struct sigaction sa = {.sa_handler = on_usr1_jit};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
        sigset_t usr1, all;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        sigprocmask(SIG_BLOCK, &usr1, NULL);
        raise(SIGUSR1);
        sigfillset(&all);
        sigdelset(&all, SIGUSR1);
        sigsuspend(&all);
        printf("handler getpid same: %s\n", handler_pid == getpid() ? "yes" : "no");
        printf("execve returned %ld\n", execve_jit());
    } else if (!strcmp(mode, "vfork-reset")) {
        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
        pid_t pid = vfork();
        if (pid == 0) {
            signal(SIGUSR1, SIG_DFL);
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        raise(SIGUSR1);
        printf("handled: %s\n", handled == SIGUSR1 ? "yes" : "no");
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
