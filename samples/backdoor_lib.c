/* A "backdoored" dependency library for the xz-scenario tests (issue 4). On
 * request it runs a command or connects out in every way a hostile library
 * might find the function: through its own PLT, through dlsym, through a
 * pointer found by walking the loader's link map and parsing libc's dynamic
 * symbol table by hand (what the xz backdoor did), through a pointer computed
 * from libc's file on disk (never looking at libc's tables in memory), through
 * a second libc loaded in a new namespace with dlmopen, with
 * a raw `syscall` instruction, through libc's `syscall()` function, from its
 * constructor, through libc's own
 * internal path (`wordexp` runs `$(...)` without any exec function being
 * called by name); and it dlopens a library.
 *   cc -shared -fPIC -O2 -fno-optimize-sibling-calls -o libbackdoor.so backdoor_lib.c
 * (without sibling-call optimisation `return system(cmd)` would be a jump,
 * and the call would come back to the program, which then counts as the
 * caller: attribution goes by return address). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wordexp.h>

typedef int (*system_fn)(const char *);

/* The loader's dynamic entries are relocated by glibc, not by musl. */
static const void *dyn_ptr(ElfW(Addr) base, ElfW(Addr) v) { return (const void *)(v < base ? v + base : v); }

struct hunt {
    const char *name;
    void *found;
};

/* For one loaded object: if it is libc, look `name` up in its dynamic symbol
 * table by hand (GNU hash, as the xz backdoor did). */
static int hunt_in(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct hunt *h = data;
    if (!info->dlpi_name || (!strstr(info->dlpi_name, "libc.so") && !strstr(info->dlpi_name, "ld-musl"))) return 0;
    const ElfW(Dyn) *dyn = 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) dyn = (const void *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn) return 0;
    ElfW(Addr) base = info->dlpi_addr;
    const ElfW(Sym) *symtab = 0;
    const char *strtab = 0;
    const uint32_t *gnu = 0;
    for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
        if (d->d_tag == DT_SYMTAB) symtab = dyn_ptr(base, d->d_un.d_ptr);
        if (d->d_tag == DT_STRTAB) strtab = dyn_ptr(base, d->d_un.d_ptr);
        if (d->d_tag == DT_GNU_HASH) gnu = dyn_ptr(base, d->d_un.d_ptr);
    }
    if (!symtab || !strtab || !gnu) return 0;
    uint32_t nbuckets = gnu[0], symoffset = gnu[1], bloom = gnu[2];
    const uint32_t *buckets = gnu + 4 + bloom * (sizeof(ElfW(Addr)) / 4);
    const uint32_t *chains = buckets + nbuckets;
    uint32_t hash = 5381;
    for (const char *c = h->name; *c; c++) hash = hash * 33 + (unsigned char)*c;
    for (uint32_t i = buckets[hash % nbuckets]; i >= symoffset; i++) {
        uint32_t ch = chains[i - symoffset];
        if ((ch | 1) == (hash | 1) && strcmp(strtab + symtab[i].st_name, h->name) == 0 && symtab[i].st_value) {
            h->found = (void *)(base + symtab[i].st_value);
            return 1;
        }
        if (ch & 1) break;
    }
    return 0;
}

/* Finds `name` in libc by hand: the loaded objects, libc's dynamic section,
 * its GNU hash table and symbol table. No dlsym, no PLT. */
static void *find_by_hand(const char *name) {
    struct hunt h = {name, 0};
    dl_iterate_phdr(hunt_in, &h);
    return h.found;
}

/* For one loaded object: if it is libc, read its file from disk, look `name`
 * up in the file's .dynsym and add the load address. Nothing of libc in
 * memory is read: what a tool that rewrites tables in memory cannot see. */
static int hunt_on_disk(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct hunt *h = data;
    if (!info->dlpi_name || (!strstr(info->dlpi_name, "libc.so") && !strstr(info->dlpi_name, "ld-musl"))) return 0;
    int fd = open(info->dlpi_name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return 0;
    const unsigned char *file = mmap(0, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (file == MAP_FAILED) return 0;
    const ElfW(Ehdr) *eh = (const void *)file;
    const ElfW(Shdr) *sh = (const void *)(file + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum && !h->found; i++) {
        if (sh[i].sh_type != SHT_DYNSYM) continue;
        const ElfW(Sym) *sym = (const void *)(file + sh[i].sh_offset);
        const char *str = (const char *)(file + sh[sh[i].sh_link].sh_offset);
        for (size_t k = 0; k < sh[i].sh_size / sizeof *sym; k++)
            if (sym[k].st_value && sym[k].st_shndx && !strcmp(str + sym[k].st_name, h->name)) {
                h->found = (void *)(info->dlpi_addr + sym[k].st_value);
                break;
            }
    }
    munmap((void *)file, st.st_size);
    return h->found != 0;
}

int bd_plt_system(const char *cmd) { return system(cmd); }

int bd_dlsym_system(const char *cmd) {
    system_fn f = (system_fn)dlsym(RTLD_DEFAULT, "system");
    return f ? f(cmd) : -2;
}

int bd_manual_system(const char *cmd) {
    system_fn f = (system_fn)find_by_hand("system");
    return f ? f(cmd) : -2;
}

int bd_disk_system(const char *cmd) {
    struct hunt h = {"system", 0};
    dl_iterate_phdr(hunt_on_disk, &h);
    system_fn f = (system_fn)h.found;
    return f ? f(cmd) : -2;
}

/* Copies the path of the loaded libc.so.6 into `data` (4096 bytes). */
static int libc_path(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "libc.so")) return 0;
    snprintf(data, 4096, "%s", info->dlpi_name);
    return 1;
}

/* A second libc of its own, in a new link-map namespace (glibc's dlmopen),
 * and its system: none of the first libc's tables or code is involved. */
int bd_dlmopen_system(const char *cmd) {
#ifdef __GLIBC__
    /* libc's own path, from the loaded objects (a bare "libc.so.6" is
     * resolved from the caller, which the runtime cannot stand in for: that
     * form is not covered). */
    char path[4096] = "";
    dl_iterate_phdr(libc_path, path);
    if (!path[0]) return -4;
    void *h = dlmopen(LM_ID_NEWLM, path, RTLD_NOW);
    system_fn f = h ? (system_fn)dlsym(h, "system") : 0;
    return f ? f(cmd) : -2;
#else
    (void)cmd;
    return -3; /* musl has no dlmopen */
#endif
}

/* `$(cmd)` in wordexp: libc starts a shell itself (glibc with posix_spawn,
 * musl with fork and execl). 0 when it ran, else wordexp's error. */
int bd_wordexp(const char *cmd) {
    char word[4300];
    snprintf(word, sizeof word, "$(%s)", cmd);
    wordexp_t w;
    int r = wordexp(word, &w, 0);
    if (r == 0) wordfree(&w);
    return r;
}

/* execve("/bin/sh", ["sh", "-c", cmd], environ) with a raw syscall in a child. */
int bd_raw_execve(const char *cmd) {
    pid_t pid = fork();
    if (pid == 0) {
        const char *argv[] = {"sh", "-c", cmd, 0};
        extern char **environ;
        long ret;
        __asm__ volatile("syscall" : "=a"(ret) : "a"(59), "D"("/bin/sh"), "S"(argv), "d"(environ) : "rcx", "r11", "memory");
        _exit(ret == -1 ? 3 : 4); /* -1 = -EPERM: refused */
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The same through libc's syscall() function: no named function is called. */
int bd_syscall_fn(const char *cmd) {
    pid_t pid = fork();
    if (pid == 0) {
        const char *argv[] = {"sh", "-c", cmd, 0};
        extern char **environ;
        long ret = syscall(59, "/bin/sh", argv, environ);
        _exit(ret == -1 && errno == EPERM ? 3 : 4);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int bd_connect(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(s);
    errno = e;
    return r;
}

void *bd_dlopen(const char *lib) { return dlopen(lib, RTLD_NOW); }

/* Local names for the constructor: a call to the exported ones could bind to
 * another loaded copy of this library (the program links one, and loads
 * libplugin.so, a second). */
static int do_wordexp(const char *cmd) __attribute__((alias("bd_wordexp")));
static int do_syscall_fn(const char *cmd) __attribute__((alias("bd_syscall_fn")));

/* Runs BACKDOOR_CTOR when the library is loaded, with system(), or as
 * BACKDOOR_CTOR_HOW says: "wordexp" (libc's internal spawn) or "syscall"
 * (libc's syscall(), execve in a forked child); with BACKDOOR_CTOR_ONLY, only
 * in the copy whose file name contains it (libplugin.so). */
__attribute__((constructor)) static void bd_ctor(void) {
    const char *cmd = getenv("BACKDOOR_CTOR");
    const char *how = getenv("BACKDOOR_CTOR_HOW");
    const char *only = getenv("BACKDOOR_CTOR_ONLY"); /* in the copy whose file name has this */
    Dl_info self;
    if (!cmd) return;
    if (only && (!dladdr((void *)bd_ctor, &self) || !self.dli_fname || !strstr(self.dli_fname, only))) return;
    if (how && !strcmp(how, "wordexp")) {
        printf("ctor-wordexp=%d\n", do_wordexp(cmd));
    } else if (how && !strcmp(how, "syscall")) {
        printf("ctor-syscall=%d\n", do_syscall_fn(cmd));
    } else {
        int r = system(cmd);
        printf("ctor-system=%d errno=%s\n", r, r == -1 && errno == EPERM ? "EPERM" : "0");
    }
    fflush(stdout);
}
