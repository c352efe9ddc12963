/* The same system calls many times (issue 11: the backstop's cost in steady
 * state). Usage: many_calls N [LIBRARY]. Makes N getppid() and N write()s of
 * one byte to /dev/null through libc (whose `syscall` sites were rewritten
 * at patch time), then, with LIBRARY (samples/escape_lib.c, built as a
 * shared library), N of its raw_getppid(), whose `syscall` dfpatch never saw:
 * it traps the first time and is rewritten then. Prints "done". */
#include <dlfcn.h>
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
    if (argc > 2) {
        void *lib = dlopen(argv[2], RTLD_NOW);
        long (*raw_getppid)(void) = lib ? (long (*)(void))dlsym(lib, "raw_getppid") : NULL;
        if (!raw_getppid) {
            fprintf(stderr, "dlopen %s: %s\n", argv[2], dlerror());
            return 2;
        }
        for (long i = 0; i < n; i++)
            sum += raw_getppid() > 0;
        n += n / 2;
    }
    printf("%s\n", sum == 2 * n ? "done" : "calls failed");
    return 0;
}
