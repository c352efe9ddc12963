/* pthread_cancel of a thread blocked in read(): musl (and glibc 2.34+) act on
 * it only while the interrupted address lies between two labels around the
 * system call, so that system call must not be moved (issue 3). Prints
 * cancelled=1. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static int fds[2];
static void *blocker(void *a) { char c; read(fds[0], &c, 1); return a; }
int main(void) {
    pipe(fds);
    pthread_t t;
    pthread_create(&t, 0, blocker, 0);
    usleep(100000);
    pthread_cancel(t);
    void *r;
    pthread_join(t, &r);
    printf("cancelled=%d\n", r == PTHREAD_CANCELED);
    return 0;
}
