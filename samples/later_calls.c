/* Calls that look like part of an earlier reported call and are not: each
 * must be reported on its own (tests/e2e/one_event.rs).
 *
 *   later_calls wrapper FILE   open(FILE's folder) then creat(FILE), through one
 *                              wrapper that tail-calls a function pointer,
 *                              from one call site: the second call arrives
 *                              at the stack slot and with the return address
 *                              of the first, through another hook (and open
 *                              does not jump on to creat: a call of its own).
 *   later_calls fork-spawn     posix_spawn runs `true` with an argv; once it
 *                              has returned, a fork child runs `true` with
 *                              that same argv, from under a frame that leaves
 *                              the spawn's return address on the stack.
 *
 * And calls made through a thin wrapper that ends in a tail call, whose
 * function jumps on to another one: one call, one event.
 *
 *   later_calls wrapped FILE   creat(FILE, 0600) from a wrapper that tail-calls it
 *                              (musl's creat jumps on to open)
 *   later_calls wrapped-exec   execv("/bin/true") from a wrapper that tail-calls
 *                              it (execv jumps on to execve)
 *
 * Prints "NAME=A[,B]" (0: worked), then "done" (but a successful exec). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef int (*opener)(const char *, int, int);

__attribute__((noinline)) static int via(opener f, const char *path, int arg) {
    return f(path, arg, 0); /* a tail call: jmp *%reg */
}

static char *true_argv[] = {"true", NULL};

/* Returns the child's pid, or -1; waited for by the caller, so that no other
 * call of this function overwrites posix_spawn's return address. */
__attribute__((noinline)) static pid_t spawn_true(void) {
    pid_t pid;
    int r = posix_spawn(&pid, "/bin/true", NULL, NULL, true_argv, environ);
    __asm__ volatile("" ::: "memory");
    return r == 0 ? pid : -1;
}

__attribute__((noinline)) static int fork_true(void) {
    /* A frame over the place of spawn_true's call of posix_spawn, never written. */
    char unused[512];
    __asm__ volatile("" : : "r"(unused) : "memory");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execv("/bin/true", true_argv);
        _exit(127);
    }
    int status = -1;
    if (pid > 0) waitpid(pid, &status, 0);
    __asm__ volatile("" ::: "memory");
    return status;
}

__attribute__((noinline)) static int wrapped_creat(const char *path) {
    return creat(path, 0600); /* a tail call */
}

__attribute__((noinline)) static int wrapped_execv(const char *path) {
    return execv(path, true_argv); /* a tail call */
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "wrapper") && argc > 2) {
        opener fns[2] = {(opener)open, (opener)creat};
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", argv[2]);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        const char *paths[2] = {dir, argv[2]};
        int args[2] = {O_RDONLY, 0600};
        int r[2];
        /* One call site: a loop the compiler keeps (its count is not known
         * to it, and it is told not to unroll it). */
#pragma GCC unroll 1
        for (int i = 0; i < argc - 1; i++) r[i & 1] = via(fns[i & 1], paths[i & 1], args[i & 1]);
        printf("wrapper=%d,%d\n", r[0] < 0, r[1] < 0);
    } else if (!strcmp(argv[1], "wrapped") && argc > 2) {
        printf("wrapped=%d\n", wrapped_creat(argv[2]) < 0);
    } else if (!strcmp(argv[1], "wrapped-exec")) {
        fflush(stdout);
        printf("wrapped-exec=%d\n", wrapped_execv("/bin/true"));
    } else if (!strcmp(argv[1], "fork-spawn")) {
        pid_t spawned = spawn_true();
        int b = fork_true();
        int a = spawned > 0 && waitpid(spawned, NULL, 0) == spawned ? 0 : 1;
        printf("fork-spawn=%d,%d\n", a, b);
    } else {
        return 2;
    }
    printf("done\n");
    return 0;
}
