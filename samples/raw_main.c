/* A dynamic executable that makes a system call with its own `syscall`
 * instruction (inline assembly, as a vendored syscall wrapper would):
 * execve of `sh -c "touch FILE"` in a forked child. Prints raw=0 when the
 * command ran, raw=3 when the system call was refused (-EPERM).
 *   cc -O2 -o raw_main raw_main.c */
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "touch '%s'", argc > 1 ? argv[1] : "raw-made");
        const char *av[] = {"sh", "-c", cmd, 0};
        extern char **environ;
        long ret;
        __asm__ volatile("syscall" : "=a"(ret) : "a"(59), "D"("/bin/sh"), "S"(av), "d"(environ) : "rcx", "r11", "memory");
        _exit(ret == -1 ? 3 : 4);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    printf("raw=%d\ndone\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
