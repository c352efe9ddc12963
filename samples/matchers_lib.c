/* The library of samples/matchers.c: a command run by a library, for
 * issue 13's `caller` rules. */
#include <stdlib.h>

int lib_system(const char *cmd) {
    int st = system(cmd);
    return st;
}
