/* A library whose constructor marks the moment it runs with a getppid()
 * system call, so a test can see (under strace) whether the dfpatch runtime
 * started before library constructors: its start-up reads /proc/self/exe. */
#include <stdio.h>
#include <unistd.h>

__attribute__((constructor)) static void ctor(void) {
    getppid();
    printf("ctor ran\n");
}

int ctor_lib_value(void) { return 42; }
