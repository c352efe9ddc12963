/* The comparison point "the simplest LD_PRELOAD forwarding wrapper": for each
 * function calls.c measures, a wrapper that looks the real function up once
 * with dlsym(RTLD_NEXT), caches it in a static, and forwards every call.
 * It does nothing else (no filtering, no event): the cheapest interposition
 * a preload library can do.
 *
 *   cc -O2 -fPIC -shared -o preload.so preload.c -ldl
 *   LD_PRELOAD=./preload.so ./calls mmap
 *
 * With -DRESOLVE_IN_CONSTRUCTOR (preload-ctor.so) the pointers are filled by a
 * constructor instead, and each wrapper is a single tail jump: the cheapest
 * forwarding a preload library can do, shown as a lower bound.
 *
 * open is variadic: the mode argument is only read when the flags need it,
 * as glibc's own open does.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/types.h>

/* One static pointer per function, of the function's own type. */
static __typeof__(&mmap) real_mmap;
static __typeof__(&mprotect) real_mprotect;
static __typeof__(&open) real_open;

#ifdef RESOLVE_IN_CONSTRUCTOR
/* Variant (preload-ctor.so): every pointer is filled once by a constructor,
 * so a wrapper is a bare tail jump. The lower bound for a preload wrapper;
 * not safe for calls made before the constructor runs. */
#define REAL(name) ((void)0)
__attribute__((constructor)) static void resolve(void)
{
    real_mmap = (__typeof__(&mmap))dlsym(RTLD_NEXT, "mmap");
    real_mprotect = (__typeof__(&mprotect))dlsym(RTLD_NEXT, "mprotect");
    real_open = (__typeof__(&open))dlsym(RTLD_NEXT, "open");
}
#else
/* The simplest wrapper (preload.so): looks the function up on its first call. */
#define REAL(name)                                              \
    if (__builtin_expect(real_##name == NULL, 0))               \
        real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)
#endif

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    REAL(mmap);
    return real_mmap(addr, len, prot, flags, fd, off);
}

int mprotect(void *addr, size_t len, int prot)
{
    REAL(mprotect);
    return real_mprotect(addr, len, prot);
}

int open(const char *path, int flags, ...)
{
    REAL(open);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return real_open(path, flags, mode);
}
