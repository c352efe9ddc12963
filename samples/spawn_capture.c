/* posix_spawn with the child's stderr redirected into a pipe the program
 * reads: what the child writes there is program output, which a patched
 * program must not change (no event of ours may land in it).
 *   cc -O2 -o spawn_capture spawn_capture.c */
#include <spawn.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>

extern char **environ;

int main(void) {
    int p[2];
    if (pipe(p) != 0) return 1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    char *argv[] = {"sh", "-c", "echo child-err >&2", 0};
    pid_t pid;
    int r = posix_spawn(&pid, "/bin/sh", &fa, 0, argv, environ);
    close(p[1]);
    char buf[8192];
    ssize_t n, t = 0;
    while ((n = read(p[0], buf + t, sizeof buf - 1 - t)) > 0) t += n;
    buf[t] = 0;
    waitpid(pid, 0, 0);
    printf("spawn=%d captured=[%s]\n", r, buf);
    return 0;
}
