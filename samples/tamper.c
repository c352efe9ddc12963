/* Undoing the hooks (issue 11, tamper resistance): what a program or a
 * library it loads may try against the code dfpatch rewrote and the
 * runtime's own memory. Usage: tamper MODE. Each mode prints what its calls
 * returned, then "done".
 *
 *   mprotect-libc     mprotect(system's page, RWX), then back to R+X
 *   mprotect-exe      mprotect(main's page, RWX), then back to R+X
 *   madvise-libc      madvise(system's page, MADV_DONTNEED)
 *   mremap-libc       mremap of system's page to a new place (MREMAP_MAYMOVE)
 *   mmap-fixed        mmap(MAP_FIXED) of an anonymous page over a page of
 *                     the program's read-only data (code would be running)
 *   mem-self          open("/proc/self/mem", O_RDWR)
 *   mem-task          open("/proc/PID/task/TID/mem", O_WRONLY)
 *   mem-read          open("/proc/self/mem", O_RDONLY): not tampering
 *   pvm-self          process_vm_writev into this process
 *   restore-mem       the xz-style undo: system's original first bytes,
 *                     read from libc's file, written back through
 *                     /proc/self/mem; then system("echo escaped")
 *   restore-mprotect  the same through mprotect and memcpy
 *   benign            what every program does: munmap, madvise and mprotect
 *                     of its own memory, an open for writing of a file
 *   sealed            whether an executable mapping of the program's file
 *                     is sealed (mseal: "sl" in /proc/self/smaps)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static uintptr_t page_of(const void *p) {
    return (uintptr_t)p & ~(uintptr_t)4095;
}

static void said(const char *what, long r) {
    printf("%s returned %ld%s%s\n", what, r, r < 0 ? " " : "", r < 0 ? strerror(errno) : "");
}

/* Where `system`'s code is. In a dynamic program the name leads to
 * dfpatch's stub (its symbol layer rewrote libc's symbol), so, as an
 * attacker would, read the symbol's value from libc's file; in a static
 * one it is the function itself. `file`, `off`: where its first bytes are
 * in a file (NULL for a static program). */
static unsigned char *system_fn;
static const char *libc_file;
static off_t system_off;

/* A page of read-only data, which nothing reads. */
static const unsigned char guarded[3 * 4096] __attribute__((aligned(4096))) = {1};
#define GUARDED ((void *)(guarded + 4096))

int main(int argc, char **argv);

static void find_system(void) {
    Dl_info info, me;
    system_fn = (unsigned char *)(uintptr_t)system;
    if (!dladdr((void *)printf, &info) || !info.dli_fname || !dladdr((void *)main, &me) ||
        info.dli_fbase == me.dli_fbase)
        return;
    int fd = open(info.dli_fname, O_RDONLY);
    off_t size = fd < 0 ? 0 : lseek(fd, 0, SEEK_END);
    unsigned char *f = size > 0 ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    if (fd >= 0)
        close(fd);
    if (f == MAP_FAILED)
        return;
    Elf64_Ehdr *eh = (Elf64_Ehdr *)f;
    Elf64_Shdr *sh = (Elf64_Shdr *)(f + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM)
            continue;
        Elf64_Sym *sym = (Elf64_Sym *)(f + sh[i].sh_offset);
        const char *names = (const char *)(f + sh[sh[i].sh_link].sh_offset);
        for (size_t k = 0; k < sh[i].sh_size / sizeof *sym; k++) {
            if (strcmp(names + sym[k].st_name, "system") == 0 && sym[k].st_value) {
                system_fn = (unsigned char *)info.dli_fbase + sym[k].st_value;
                libc_file = info.dli_fname;
                /* glibc maps its code at file offset == address. */
                system_off = (off_t)sym[k].st_value;
                return;
            }
        }
    }
}

static int restore(int through_mem) {
    if (!libc_file) {
        printf("no libc file\n");
        return 1;
    }
    int fd = open(libc_file, O_RDONLY);
    unsigned char orig[16];
    if (fd < 0 || pread(fd, orig, sizeof orig, system_off) != (ssize_t)sizeof orig) {
        printf("cannot read %s\n", libc_file);
        return 1;
    }
    close(fd);
    printf("entry was %s\n", memcmp(orig, system_fn, sizeof orig) ? "rewritten" : "original");
    if (through_mem) {
        int m = open("/proc/self/mem", O_RDWR);
        said("open", m);
        if (m >= 0) {
            said("pwrite", pwrite(m, orig, sizeof orig, (off_t)(uintptr_t)system_fn));
            close(m);
        }
    } else {
        long r = mprotect((void *)page_of(system_fn), 8192, PROT_READ | PROT_WRITE | PROT_EXEC);
        said("mprotect", r);
        if (r == 0) {
            memcpy(system_fn, orig, sizeof orig);
            mprotect((void *)page_of(system_fn), 8192, PROT_READ | PROT_EXEC);
        }
    }
    fflush(stdout);
    /* Through the restored entry, not the name (which leads to the stub). */
    int (*entry)(const char *) = (int (*)(const char *))(void *)system_fn;
    said("system", entry("echo escaped"));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: tamper MODE\n");
        return 2;
    }
    const char *m = argv[1];
    find_system();
    void *libc_page = (void *)page_of(system_fn);
    if (!strcmp(m, "mprotect-libc")) {
        said("mprotect", mprotect(libc_page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC));
        mprotect(libc_page, 4096, PROT_READ | PROT_EXEC);
    } else if (!strcmp(m, "mprotect-exe")) {
        void *page = (void *)page_of((void *)main);
        said("mprotect", mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC));
        mprotect(page, 4096, PROT_READ | PROT_EXEC);
    } else if (!strcmp(m, "madvise-libc")) {
        said("madvise", madvise(libc_page, 4096, MADV_DONTNEED));
    } else if (!strcmp(m, "mremap-libc")) {
        void *r = mremap(libc_page, 4096, 4096, MREMAP_MAYMOVE);
        said("mremap", r == MAP_FAILED ? -1 : 0);
        if (r != MAP_FAILED) {
            /* Put it back where it was, so the program still runs. */
            mremap(r, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, libc_page);
        }
    } else if (!strcmp(m, "mmap-fixed")) {
        void *r = mmap(GUARDED, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        said("mmap", r == MAP_FAILED ? -1 : 0);
    } else if (!strcmp(m, "mem-self") || !strcmp(m, "mem-read")) {
        int fd = open("/proc/self/mem", !strcmp(m, "mem-self") ? O_RDWR : O_RDONLY);
        said("open", fd);
    } else if (!strcmp(m, "mem-task")) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/task/%ld/mem", getpid(), (long)syscall(SYS_gettid));
        said("open", open(path, O_WRONLY));
    } else if (!strcmp(m, "pvm-self")) {
        static char from[8] = "written", to[8];
        struct iovec l = {from, sizeof from}, r = {to, sizeof to};
        said("process_vm_writev", process_vm_writev(getpid(), &l, 1, &r, 1, 0));
    } else if (!strcmp(m, "restore-mem") || !strcmp(m, "restore-mprotect")) {
        if (restore(!strcmp(m, "restore-mem")))
            return 1;
    } else if (!strcmp(m, "benign")) {
        void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        said("mprotect", mprotect(p, 4096, PROT_READ));
        said("madvise", madvise((char *)p + 4096, 4096, MADV_DONTNEED));
        said("munmap", munmap(p, 1 << 20));
        char *big = malloc(8 << 20);
        free(big);
        int fd = open("/dev/null", O_WRONLY);
        said("open", fd >= 0 ? 0 : -1);
    } else if (!strcmp(m, "sealed")) {
        char exe[512], line[1024];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = 0;
        FILE *f = fopen("/proc/self/smaps", "r");
        int ours = 0, sealed = 0;
        while (f && fgets(line, sizeof line, f)) {
            /* A mapping's first line starts with its address (lower-case hex). */
            if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'))
                ours = strstr(line, " r-xp ") && strstr(line, exe);
            else if (ours && !strncmp(line, "VmFlags:", 8) && strstr(line, " sl"))
                sealed = 1;
        }
        printf("runtime sealed: %s\n", sealed ? "yes" : "no");
    } else {
        fprintf(stderr, "unknown mode %s\n", m);
        return 2;
    }
    printf("done\n");
    return 0;
}
