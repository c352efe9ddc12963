/* A reported call that has returned must not hide a later one. `first`
 * calls system(); its return address stays on the stack below main's frame
 * after it returns. `second` then runs with a frame over that place which it
 * never writes (an unused buffer), and calls wordexp, which reaches
 * posix_spawn inside libc: that call is not inside system() and must be
 * reported.
 *   cc -O2 -o stale_nest stale_nest.c */
#include <stdio.h>
#include <stdlib.h>
#include <wordexp.h>

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

int main(int argc, char **argv) {
    char word[4200];
    snprintf(word, sizeof word, "$(touch '%s')", argc > 1 ? argv[1] : "stale-made");
    int a = first("true");
    int b = second(word);
    printf("system=%d wordexp=%d\ndone\n", a, b);
    return 0;
}
