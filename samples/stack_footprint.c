/* How much of the program's stack a hook writes. The runtime runs on stacks
 * of its own (runtime/src/stacks.rs), claimed before the hook saves anything:
 * a patched program writes no more below its stack pointer than the
 * unpatched one, but for the return address of the call into a `syscall`
 * trampoline (below the red zone, 136 bytes down).
 *
 *   stack_footprint syscall FILE   openat(FILE) by a `syscall` in this file
 *   stack_footprint call FILE      a call of open(FILE) (when it is refused,
 *                                  nothing of libc's runs)
 *   stack_footprint trap FILE      openat(FILE) by JIT code (the backstop)
 *   stack_footprint signal         JIT code sends itself SIGUSR1, whose
 *                                  handler only returns
 *   stack_footprint flags FILE     openat(FILE) by a `syscall` in this file,
 *                                  with the arithmetic flags and DF all set,
 *                                  then all clear: prints "flags kept", or
 *                                  "flags X became Y"
 *
 * Each makes 100 such calls on its own stack first (a stack of the runtime's
 * not given back would show: there are 64), then one with the stack pointer
 * at the top of a 64 KiB buffer filled with a pattern, and prints
 * "depth N result R": N bytes below that top were written; R is what the
 * call returned (a descriptor, or a negative errno). Exits 2 on a usage or
 * set-up error. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SIZE 65536
#define PATTERN 0xa5
static unsigned char area[SIZE] __attribute__((aligned(16)));

/* A signal handler that writes nothing: `ret` to the restorer. */
void noop_handler(int);
__asm__(".text\n.globl noop_handler\n.type noop_handler,@function\nnoop_handler:\n\tret\n");

/* JIT code: `mov $nr, %eax; syscall; ret`. */
static void *jit(unsigned nr) {
    unsigned char code[] = {0xb8, nr & 0xff, (nr >> 8) & 0xff, 0, 0, 0x0f, 0x05, 0xc3};
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memcpy(p, code, sizeof code);
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC) != 0)
        return NULL;
    return p;
}

/* openat(AT_FDCWD, path, O_RDONLY) by a `syscall` here, with %rsp = top. */
static long raw_openat(unsigned char *top, const char *path) {
    long r;
    register long r10 __asm__("r10") = 0;
    __asm__ volatile("mov %%rsp, %%r12\n\t"
                     "mov %[top], %%rsp\n\t"
                     "mov $257, %%eax\n\t"
                     "syscall\n\t"
                     "mov %%r12, %%rsp"
                     : "=&a"(r)
                     : [top] "r"(top), "D"(-100L), "S"(path), "d"((long)O_RDONLY), "r"(r10)
                     : "rcx", "r11", "r12", "memory");
    return r;
}

/* open(path, O_RDONLY), called with %rsp = top (16-aligned, as at a call). */
static long call_open(unsigned char *top, const char *path) {
    long r;
    __asm__ volatile("mov %%rsp, %%r12\n\t"
                     "mov %[top], %%rsp\n\t"
                     "mov %[path], %%rdi\n\t"
                     "xor %%esi, %%esi\n\t"
                     "xor %%eax, %%eax\n\t"
                     "call open@PLT\n\t"
                     "mov %%r12, %%rsp\n\t"
                     "cltq"
                     : "=&a"(r)
                     : [top] "r"(top), [path] "r"(path)
                     : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "memory", "cc", "xmm0", "xmm1",
                       "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                       "xmm13", "xmm14", "xmm15");
    return r < 0 ? -1 : r;
}

/* code(a, b, c) with %r10 = 0 and %rsp = top: JIT code's system call. */
static long call_jit(unsigned char *top, void *code, long a, long b, long c) {
    long r;
    register long r10 __asm__("r10") = 0;
    __asm__ volatile("mov %%rsp, %%r12\n\t"
                     "mov %[top], %%rsp\n\t"
                     "call *%[code]\n\t"
                     "mov %%r12, %%rsp"
                     : "=&a"(r)
                     : [top] "r"(top), [code] "r"(code), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "r12", "memory");
    return r;
}

/* The flags a `syscall` here sees are the ones it leaves (the kernel
 * restores them from %r11): set them to `set` just before it, read them just
 * after. (Stepping over the red zone: the caller may keep locals there.) */
static unsigned long flags_around(unsigned long set, const char *path) {
    unsigned long after;
    register long r10 __asm__("r10") = 0;
    __asm__ volatile("lea -128(%%rsp), %%rsp\n\t"
                     "push %[set]\n\t"
                     "popfq\n\t"
                     "mov $257, %%eax\n\t"
                     "syscall\n\t"
                     "pushfq\n\t"
                     "pop %[after]\n\t"
                     "cld\n\t"
                     "lea 128(%%rsp), %%rsp"
                     : [after] "=&r"(after)
                     : [set] "r"(set), "D"(-100L), "S"(path), "d"((long)O_RDONLY), "r"(r10)
                     : "rax", "rcx", "r11", "memory", "cc");
    return after;
}

static unsigned char own[SIZE] __attribute__((aligned(16)));

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "signal") != 0 && argc < 3)) {
        fprintf(stderr, "usage: stack_footprint syscall|call|trap|flags FILE | signal\n");
        return 2;
    }
    const char *mode = argv[1], *path = argc > 2 ? argv[2] : "";
    if (strcmp(mode, "flags") == 0) {
        /* OF DF SF ZF AF PF CF; bit 1 is always set. */
        const unsigned long mask = 0xcd5, sets[] = {0xcd7, 0x2};
        for (int i = 0; i < 2; i++) {
            unsigned long after = flags_around(sets[i], path);
            if ((after & mask) != (sets[i] & mask)) {
                printf("flags %#lx became %#lx\n", sets[i] & mask, after & mask);
                return 0;
            }
        }
        printf("flags kept\n");
        return 0;
    }
    void *code = NULL;
    long a = -100, b = (long)path, c = O_RDONLY;
    if (strcmp(mode, "trap") == 0)
        code = jit(SYS_openat);
    else if (strcmp(mode, "signal") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = noop_handler;
        if (sigaction(SIGUSR1, &sa, NULL) != 0)
            return 2;
        code = jit(SYS_tgkill);
        a = getpid(), b = syscall(SYS_gettid), c = SIGUSR1;
    } else if (strcmp(mode, "syscall") != 0 && strcmp(mode, "call") != 0) {
        fprintf(stderr, "stack_footprint: unknown mode %s\n", mode);
        return 2;
    }
    if ((strcmp(mode, "trap") == 0 || strcmp(mode, "signal") == 0) && code == NULL) {
        perror("jit");
        return 2;
    }
    long r = 0;
    for (int i = 0; i <= 100; i++) {
        unsigned char *top = i < 100 ? own + SIZE : area + SIZE;
        if (i == 100)
            memset(area, PATTERN, SIZE);
        if (strcmp(mode, "syscall") == 0)
            r = raw_openat(top, path);
        else if (strcmp(mode, "call") == 0)
            r = call_open(top, path);
        else
            r = call_jit(top, code, a, b, c);
        if (r >= 0 && strcmp(mode, "signal") != 0)
            close((int)r);
    }
    size_t low = 0;
    while (low < SIZE && area[low] == PATTERN)
        low++;
    printf("depth %zu result %ld\n", (size_t)SIZE - low, r);
    return 0;
}
