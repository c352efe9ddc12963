/* The same system calls many times (issue 11: the backstop's cost in steady
 * state). Usage: many_calls N. Makes N getppid() and N write()s of one byte
 * to /dev/null through libc, whose `syscall` sites trap the first time and
 * are rewritten then (or were rewritten at patch time), then prints "done". */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    int fd = open("/dev/null", O_WRONLY);
    long sum = 0;
    for (long i = 0; i < n; i++) {
        sum += getppid() > 0;
        sum += write(fd, "x", 1);
    }
    printf("%s\n", sum == 2 * n ? "done" : "calls failed");
    return 0;
}
