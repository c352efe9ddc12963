/* Each call that changes the ids of every thread, made once with three
 * other threads running: libc has each of them make the same system call
 * in a signal handler (glibc's SIGSETXID, musl's __synccall), and those are
 * part of the one call (tests/e2e/doors.rs). The ids are set to what they
 * are. Prints "NAME=RESULT" per call, then "done". */
#define _GNU_SOURCE
#include <grp.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static void *idle(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

int main(void) {
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, idle, NULL);
    gid_t groups[256];
    int n = getgroups(256, groups);
    printf("setuid=%d\n", setuid(getuid()));
    printf("setgid=%d\n", setgid(getgid()));
    printf("setreuid=%d\n", setreuid(-1, -1));
    printf("setregid=%d\n", setregid(-1, -1));
    printf("setresuid=%d\n", setresuid(-1, -1, -1));
    printf("setresgid=%d\n", setresgid(-1, -1, -1));
    printf("setgroups=%d\n", setgroups(n < 0 ? 0 : n, groups));
    printf("done\n");
    return 0;
}
