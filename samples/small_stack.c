/* A clone(CLONE_VM) child on a 4 KiB stack of the program's, as thread
 * libraries and sandboxes make them: the hook that reports its calls must not
 * need more stack than the call itself (the runtime runs on stacks of its own,
 * runtime/src/stacks.rs).
 *
 *   small_stack exec        the child makes a raw execve of /bin/true
 *   small_stack open FILE   the child calls open(FILE, O_CREAT)
 *
 * Prints "child exit N" (N: the child's exit status: 0, or the errno of the
 * refused call) or "child killed by signal N", and exits 0 unless clone or
 * waitpid failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *true_argv[] = {"/bin/true", NULL};
static char *no_env[] = {NULL};

static int raw_exec(void *unused) {
    (void)unused;
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(59L), "D"("/bin/true"), "S"(true_argv), "d"(no_env)
                     : "rcx", "r11", "memory");
    return (int)-r;
}

static int call_open(void *path) {
    int fd = open((const char *)path, O_WRONLY | O_CREAT, 0600);
    return fd >= 0 ? 0 : errno;
}

int main(int argc, char **argv) {
    static char stack[4096] __attribute__((aligned(16)));
    if (argc < 2) {
        fprintf(stderr, "usage: small_stack exec | open FILE\n");
        return 2;
    }
    int (*fn)(void *) = strcmp(argv[1], "exec") == 0 ? raw_exec : call_open;
    pid_t pid = clone(fn, stack + sizeof stack, CLONE_VM | SIGCHLD, argc > 2 ? argv[2] : NULL);
    if (pid < 0) {
        perror("clone");
        return 2;
    }
    int st;
    if (waitpid(pid, &st, 0) < 0) {
        perror("waitpid");
        return 2;
    }
    if (WIFSIGNALED(st))
        printf("child killed by signal %d\n", WTERMSIG(st));
    else
        printf("child exit %d\n", WEXITSTATUS(st));
    return 0;
}
