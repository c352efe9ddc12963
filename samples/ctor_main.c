/* Linked against ctor_lib.c; see there. */
#include <stdio.h>
int ctor_lib_value(void);
int main(void) {
    printf("main: %d\n", ctor_lib_value());
    return 0;
}
