/* The C side of the ~40 MB benchmark executable (see big.S): calls system,
 * mmap and open through the PLT, and big_probe (an mmap through a GOT call
 * site deep inside the big .text). Prints one line per result and exits 0
 * when everything worked, so run.sh can check that the patched program still
 * runs. Under a policy that alerts on exec, file and memory, the patched
 * program writes four events: system, mmap (PROT_EXEC), open, mmap (probe). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

void *big_probe(void);
void big_code(void);

/* Keeps big_code referenced (the linker would keep it anyway). */
void (*volatile big_code_ref)(void) = big_code;

int main(void)
{
    int rc = system("true");
    void *x = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int fd = open("/proc/self/exe", O_RDONLY);
    void *p = big_probe();
    printf("system=%d mmap=%s open=%s probe=%s\n", rc, x == MAP_FAILED ? "fail" : "ok",
           fd < 0 ? "fail" : "ok", p == MAP_FAILED ? "fail" : "ok");
    return rc == 0 && x != MAP_FAILED && fd >= 0 && p != MAP_FAILED ? 0 : 1;
}
