/* A library whose code dfpatch never sees: loaded by dlopen or dlmopen after
 * start-up, it makes its system calls with its own `syscall` instructions
 * (samples/escapes.c). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>

static long raw3(long nr, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

/* getppid as most libraries' wrappers make a system call: `mov $110, %eax;
 * syscall`, which the backstop rewrites when it first traps (aligned, so the
 * `mov` lies in one 8-byte word). */
long raw_getppid(void) {
    long r;
    __asm__ volatile(".p2align 3\n\tmov $110, %%eax\n\tsyscall" : "=a"(r) : : "rcx", "r11", "memory");
    return r;
}

long raw_execve(const char *path, char **argv, char **envp) {
    return raw3(59, (long)path, (long)argv, (long)envp);
}

/* vfork, then in the child execve; the child exits with the error number
 * when execve fails. Returns the child's pid. */
long raw_vfork_execve(const char *path, char **argv, char **envp) {
    long pid;
    __asm__ volatile("syscall" : "=a"(pid) : "a"(58L) : "rcx", "r11", "memory");
    if (pid == 0) {
        long r;
        __asm__ volatile("syscall" : "=a"(r) : "a"(59L), "D"(path), "S"(argv), "d"(envp) : "rcx", "r11", "memory");
        __asm__ volatile("syscall" : : "a"(60L), "D"(-r) : "rcx", "r11", "memory");
        __builtin_unreachable();
    }
    return pid;
}

struct job {
    const char *path;
    char **argv, **envp;
    long result;
};

static void *run(void *p) {
    struct job *j = p;
    j->result = raw_execve(j->path, j->argv, j->envp);
    return NULL;
}

long thread_execve(const char *path, char **argv, char **envp) {
    struct job j = {path, argv, envp, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, run, &j))
        return -1000;
    pthread_join(t, NULL);
    return j.result;
}

static char *echo_argv[] = {"/bin/echo", "escaped", NULL};
static struct job ctor_job;
static pthread_t ctor_thread;
static int ctor_started;
extern char **environ;

__attribute__((constructor)) static void start_thread(void) {
    if (!getenv("ESCAPES_CTOR_THREAD"))
        return;
    ctor_job = (struct job){echo_argv[0], echo_argv, environ, 0};
    ctor_started = pthread_create(&ctor_thread, NULL, run, &ctor_job) == 0;
}

long ctor_thread_result(void) {
    if (!ctor_started)
        return -1000;
    pthread_join(ctor_thread, NULL);
    return ctor_job.result;
}
