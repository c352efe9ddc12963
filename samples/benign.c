/* A benign control: it does a bit of everything a well-behaved program does
 * and that the default policy allows (reading files, memory, formatting,
 * sorting, environment, a pipe), and prints deterministic output. A patched
 * and an unpatched build must print exactly the same thing. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) {
    return *(const int *)a - *(const int *)b;
}

int main(int argc, char **argv) {
    int v[64];
    unsigned x = 12345;
    for (int i = 0; i < 64; i++) {
        x = x * 1103515245u + 12345u;
        v[i] = (int)(x >> 16) % 1000;
    }
    qsort(v, 64, sizeof v[0], cmp);
    printf("sorted: %d %d %d ... %d\n", v[0], v[1], v[2], v[63]);

    char *heap = malloc(1 << 20);
    memset(heap, 'a', 1 << 20);
    printf("heap: %c%c %zu\n", heap[0], heap[(1 << 20) - 1], strlen(strndup(heap, 100)));
    free(heap);

    void *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(m, "mapped");
    printf("mmap: %s\n", (char *)m);
    munmap(m, 8192);

    int fd = open(argv[0], O_RDONLY);
    char magic[4] = {0};
    if (fd >= 0 && read(fd, magic, 4) == 4) printf("self: %c%c%c\n", magic[1], magic[2], magic[3]);
    close(fd);
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int lines = 0;
    while (f && fgets(line, sizeof line, f)) lines++;
    if (f) fclose(f);
    printf("status lines > 10: %s\n", lines > 10 ? "yes" : "no");

    int p[2];
    if (pipe(p) == 0) {
        write(p[1], "piped", 5);
        char buf[8] = {0};
        read(p[0], buf, 5);
        printf("pipe: %s\n", buf);
    }
    printf("env HOME set: %s\n", getenv("HOME") ? "yes" : "no");
    printf("args: %d\n", argc);
    return 0;
}
