/* The comparison point "the simplest LD_PRELOAD forwarding wrapper": for each
 * function calls.c measures, a wrapper that looks the real function up once
 * with dlsym(RTLD_NEXT), caches it in a static, and forwards every call.
 * It does nothing else (no filtering, no event): the cheapest interposition
 * a preload library can do.
 *
 *   cc -O2 -fPIC -shared -o preload.so preload.c -ldl
 *   LD_PRELOAD=./preload.so ./calls mmap
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

#define REAL(name, type)                                        \
    static type real_##name;                                    \
    if (__builtin_expect(real_##name == NULL, 0))               \
        real_##name = (type)dlsym(RTLD_NEXT, #name)

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    REAL(mmap, void *(*)(void *, size_t, int, int, int, off_t));
    return real_mmap(addr, len, prot, flags, fd, off);
}

int mprotect(void *addr, size_t len, int prot)
{
    REAL(mprotect, int (*)(void *, size_t, int));
    return real_mprotect(addr, len, prot);
}

int open(const char *path, int flags, ...)
{
    REAL(open, int (*)(const char *, int, ...));
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return real_open(path, flags, mode);
}
