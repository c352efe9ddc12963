/* A library whose constructor checks whether the dfpatch runtime is already
 * running when library constructors run: with a `file:` sink the runtime opens
 * its event file at start-up and keeps it at descriptor 1000 or above. */
#include <fcntl.h>
#include <stdio.h>

__attribute__((constructor)) static void ctor(void) {
    int seen = 0;
    for (int fd = 1000; fd < 1010; fd++)
        if (fcntl(fd, F_GETFD) != -1) seen = 1;
    printf("ctor: runtime %s\n", seen ? "already running" : "not running yet");
}

int ctor_lib_value(void) { return 42; }
