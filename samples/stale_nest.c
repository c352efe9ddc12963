/* A reported call that has returned must not hide a later one. `first`
 * calls system(); its return address stays on the stack below main's frame
 * after it returns. `second` then runs with a frame over that place which it
 * never writes (an unused buffer), and calls wordexp, which reaches
 * posix_spawn inside libc: that call is not inside system() and must be
 * reported. `third` does the same with libc's syscall() function (connect
 * to a closed local port), which must be reported too.
 *   cc -O2 -o stale_nest stale_nest.c */
#include <stdio.h>
#include <stdlib.h>
#include <wordexp.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>

__attribute__((noinline)) static int first(const char *cmd) {
    int r = system(cmd);
    __asm__ volatile("" ::: "memory");
    return r;
}

__attribute__((noinline)) static int second(const char *word) {
    volatile char unused[512];
    (void)unused;
    wordexp_t w;
    int r = wordexp(word, &w, 0);
    if (r == 0) wordfree(&w);
    __asm__ volatile("" ::: "memory");
    return r;
}

__attribute__((noinline)) static long third(void) {
    volatile char unused[512];
    (void)unused;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    long r = syscall(SYS_connect, s, &a, sizeof a);
    close(s);
    __asm__ volatile("" ::: "memory");
    return r;
}

int main(int argc, char **argv) {
    char word[4200];
    snprintf(word, sizeof word, "$(touch '%s')", argc > 1 ? argv[1] : "stale-made");
    int a = first("true");
    int b = second(word);
    int a2 = first("true");
    long c = third();
    printf("system=%d wordexp=%d system=%d connect=%ld\ndone\n", a, b, a2, c);
    return 0;
}
