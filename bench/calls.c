/* dfpatch benchmark driver: makes N calls of one chosen libc function and
 * prints how long they took.
 *
 *   calls CALL [N]        N defaults to 1000000
 *
 * CALL is one of
 *   mmap      mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)
 *             then munmap of that page (munmap is not a monitored function, so
 *             it is never hooked; it is there so the loop does not run out of
 *             address space). Non-exec: a hooked mmap takes the stub's
 *             PROT_EXEC filter and goes straight to libc ("allowed hooked call").
 *   mmap-einval
 *             mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS,
 *             -1, 1): the offset is not page aligned, so glibc's mmap returns
 *             MAP_FAILED with EINVAL before making any system call. A hooked
 *             call that never reaches the kernel: the cheapest, most stable
 *             libc call a monitored function offers, so the stub's (or a
 *             wrapper's) own cost is not hidden in system call noise.
 *   mprotect  mprotect(page, 4096, PROT_READ|PROT_WRITE) on one page that is
 *             already RW: a real but cheap system call, non-exec, so again the
 *             allowed path of the hook.
 *   open      open("/nonexistent/dfpatch-bench", O_RDONLY): fails with ENOENT
 *             (a cheap system call). With a policy whose rule alerts on
 *             `open`, every call enters the runtime and writes one event.
 *   getpid    getpid(): never monitored, never hooked; the cost of the
 *             cheapest system call, for reference.
 *   none      an empty loop (the loop and timing overhead itself).
 *
 * Output, one line on stdout:
 *   CALL N total_ns ns_per_call
 * The timed region is the loop only (clock_gettime(CLOCK_MONOTONIC) around it),
 * so process start-up, dynamic linking and dfpatch's own start-up are excluded.
 *
 * Every result is stored into a volatile sink and every call is separated by
 * a compiler barrier, so the compiler can neither remove nor merge calls.
 * Build with -O2 -U_FORTIFY_SOURCE so `open` stays a plain call to `open`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BARRIER() __asm__ __volatile__("" ::: "memory")

static volatile long sink;

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* noinline: each loop is its own function, easy to find in callgrind output. */
__attribute__((noinline)) static void loop_mmap(long n, void *unused)
{
    (void)unused;
    for (long i = 0; i < n; i++) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            exit(1);
        }
        sink = (long)p;
        munmap(p, 4096);
        BARRIER();
    }
}

__attribute__((noinline)) static void loop_mmap_einval(long n, void *unused)
{
    (void)unused;
    for (long i = 0; i < n; i++) {
        sink = (long)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 1);
        BARRIER();
    }
}

__attribute__((noinline)) static void loop_mprotect(long n, void *page)
{
    for (long i = 0; i < n; i++) {
        sink = mprotect(page, 4096, PROT_READ | PROT_WRITE);
        BARRIER();
    }
}

__attribute__((noinline)) static void loop_open(long n, void *unused)
{
    (void)unused;
    static const char path[] = "/nonexistent/dfpatch-bench";
    for (long i = 0; i < n; i++) {
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            close(fd);
        }
        sink = fd;
        BARRIER();
    }
}

/* write(2) of one byte to /dev/null: in a static musl program its system call
 * number reaches the `syscall` instruction in a register, so the rewritten
 * instruction enters the runtime, which lets it through. */
static int devnull = -1;
__attribute__((noinline)) static void loop_write(long n, void *unused)
{
    (void)unused;
    for (long i = 0; i < n; i++) {
        sink = write(devnull, "x", 1);
        BARRIER();
    }
}

__attribute__((noinline)) static void loop_getpid(long n, void *unused)
{
    (void)unused;
    for (long i = 0; i < n; i++) {
        sink = getpid();
        BARRIER();
    }
}

__attribute__((noinline)) static void loop_none(long n, void *unused)
{
    (void)unused;
    for (long i = 0; i < n; i++) {
        sink = i;
        BARRIER();
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s mmap|mmap-einval|mprotect|open|write|getpid|none [N]\n", argv[0]);
        return 2;
    }
    const char *call = argv[1];
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 1000000L;
    if (n <= 0) {
        fprintf(stderr, "N must be positive\n");
        return 2;
    }

    /* Set-up outside the timed region: the RW page for mprotect, and one
     * call of each function first, so lazy binding is resolved before timing. */
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(page, 1, 4096);

    void (*run)(long, void *);
    if (strcmp(call, "mmap") == 0) {
        loop_mmap(1, NULL);
        run = loop_mmap;
    } else if (strcmp(call, "mmap-einval") == 0) {
        loop_mmap_einval(1, NULL);
        if (errno != EINVAL || sink != (long)MAP_FAILED) {
            fprintf(stderr, "mmap with a misaligned offset did not fail with EINVAL\n");
            return 1;
        }
        run = loop_mmap_einval;
    } else if (strcmp(call, "mprotect") == 0) {
        loop_mprotect(1, page);
        run = loop_mprotect;
    } else if (strcmp(call, "open") == 0) {
        loop_open(1, NULL);
        run = loop_open;
    } else if (strcmp(call, "write") == 0) {
        devnull = open("/dev/null", O_WRONLY);
        loop_write(1, NULL);
        run = loop_write;
    } else if (strcmp(call, "getpid") == 0) {
        loop_getpid(1, NULL);
        run = loop_getpid;
    } else if (strcmp(call, "none") == 0) {
        run = loop_none;
    } else {
        fprintf(stderr, "unknown call %s\n", call);
        return 2;
    }

    long t0 = now_ns();
    run(n, page);
    long t1 = now_ns();
    printf("%s %ld %ld %.2f\n", call, n, t1 - t0, (double)(t1 - t0) / (double)n);
    return 0;
}
