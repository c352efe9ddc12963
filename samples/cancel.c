/* pthread_cancel of a thread blocked in read(): musl (and glibc 2.34+) act on
 * it only while the interrupted address lies between two labels around the
 * system call, so that system call must not be moved (issue 3), and the
 * backstop's hop for musl's cancellable call must not lose a cancellation
 * (issue 11).
 *
 *   cancel          the thread's read() is the program's first cancellable call
 *   cancel warm     100 cancellable calls (write) come first: the read goes
 *                   through the runtime's hop, rewritten at the first of them
 *   cancel race N   N rounds of: a thread reading a pipe one byte at a time
 *                   while the main thread feeds it, cancelled in the middle
 *                   (a cancellation may come at any point of the hop)
 *
 * Prints cancelled=1 when every cancelled thread ended as cancelled; exits 3
 * if the program hangs for 20 seconds (a cancellation was lost). */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fds[2];

static void *blocker(void *a) {
    char c;
    read(fds[0], &c, 1);
    return a;
}

static void *reader(void *a) {
    char c;
    for (;;)
        read(fds[0], &c, 1);
    return a;
}

static void hung(int sig) {
    (void)sig;
    static const char msg[] = "hung: a cancellation was lost\n";
    write(2, msg, sizeof msg - 1);
    _exit(3);
}

int main(int argc, char **argv) {
    signal(SIGALRM, hung);
    alarm(20);
    if (pipe(fds) != 0)
        return 2;
    int all = 1;
    if (argc > 2 && strcmp(argv[1], "race") == 0) {
        fcntl(fds[1], F_SETFL, O_NONBLOCK);
        for (int round = 0, n = atoi(argv[2]); round < n; round++) {
            pthread_t t;
            pthread_create(&t, 0, reader, 0);
            for (int i = 0; i < 20000 + round * 37; i++) {
                write(fds[1], "x", 1);
                if (i == 10000 + round * 37)
                    pthread_cancel(t);
            }
            void *r;
            pthread_join(t, &r);
            all &= r == PTHREAD_CANCELED;
            /* Drain what the cancelled reader left. */
            char buf[4096];
            fcntl(fds[0], F_SETFL, O_NONBLOCK);
            while (read(fds[0], buf, sizeof buf) > 0) {
            }
            fcntl(fds[0], F_SETFL, 0);
        }
    } else {
        if (argc > 1 && strcmp(argv[1], "warm") == 0) {
            int null = open("/dev/null", O_WRONLY);
            for (int i = 0; i < 100; i++)
                write(null, "x", 1);
        }
        pthread_t t;
        pthread_create(&t, 0, blocker, 0);
        usleep(100000);
        pthread_cancel(t);
        void *r;
        pthread_join(t, &r);
        all = r == PTHREAD_CANCELED;
    }
    printf("cancelled=%d\n", all);
    return 0;
}
