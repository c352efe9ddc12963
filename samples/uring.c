/* One io_uring request, made the way a program that bypasses libc would:
 * the ring set up with raw system calls, the request carried out by the
 * kernel (tests/e2e/doors.rs: a ring may not do what the policy refuses).
 *
 *   uring open PATH        IORING_OP_OPENAT of PATH for reading
 *   uring connect PORT     IORING_OP_CONNECT of a TCP socket to 127.0.0.1:PORT
 *   uring own-open PATH    the same OPENAT on a ring that asked for
 *                          IORING_SETUP_R_DISABLED and registered restrictions
 *                          of its own allowing it, then enabled itself
 *
 * Prints "setup=FD errno=N", then "result=RES" (the completion's result: a
 * descriptor or 0, or -errno: -13 is EACCES, a request the ring's
 * restrictions leave out), then "done". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NR_SETUP 425
#define NR_ENTER 426
#define NR_REGISTER 427
#define SETUP_R_DISABLED 64
#define ENTER_GETEVENTS 1
#define OP_NOP 0
#define OP_CONNECT 16
#define OP_OPENAT 18
#define REGISTER_RESTRICTIONS 11
#define REGISTER_ENABLE_RINGS 12

struct params {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd, resv[3];
    struct { uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1; uint64_t user_addr; } sq;
    struct { uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1; uint64_t user_addr; } cq;
};

struct sqe {
    uint8_t opcode, flags;
    uint16_t ioprio;
    int32_t fd;
    uint64_t off, addr;
    uint32_t len, op_flags;
    uint64_t user_data;
    uint16_t buf_index, personality;
    int32_t file_index;
    uint64_t pad[2];
};

struct restriction {
    uint16_t opcode;
    uint8_t op;
    uint8_t resv;
    uint32_t resv2[3];
};

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s open|connect|own-open ARG\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int own = !strcmp(mode, "own-open");
    struct params p;
    memset(&p, 0, sizeof p);
    if (own) p.flags = SETUP_R_DISABLED;
    long fd = syscall(NR_SETUP, 4, &p);
    printf("setup=%ld errno=%d\n", fd, fd < 0 ? errno : 0);
    fflush(stdout);
    if (fd < 0) {
        printf("done\n");
        return 0;
    }
    if (own) {
        /* Restrictions of the program's own: NOP and OPENAT, any flags. */
        struct restriction r[3];
        memset(r, 0, sizeof r);
        r[0].opcode = 1, r[0].op = OP_NOP;
        r[1].opcode = 1, r[1].op = OP_OPENAT;
        r[2].opcode = 2, r[2].op = 0xff;
        long a = syscall(NR_REGISTER, fd, REGISTER_RESTRICTIONS, r, 3);
        long b = syscall(NR_REGISTER, fd, REGISTER_ENABLE_RINGS, NULL, 0);
        printf("restrictions=%ld enable=%ld\n", a, b);
    }
    char *sq = mmap(NULL, p.sq.array + p.sq_entries * 4, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    char *cq = mmap(NULL, p.cq.cqes + p.cq_entries * 16, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                    0x8000000);
    struct sqe *sqes = mmap(NULL, p.sq_entries * sizeof(struct sqe), PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_POPULATE, fd, 0x10000000);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    struct sqe *e = &sqes[0];
    memset(e, 0, sizeof *e);
    if (!strcmp(mode, "connect")) {
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons(atoi(argv[2]));
        e->opcode = OP_CONNECT;
        e->fd = socket(AF_INET, SOCK_STREAM, 0);
        e->addr = (uint64_t)&sa;
        e->off = sizeof sa;
    } else {
        e->opcode = OP_OPENAT;
        e->fd = AT_FDCWD;
        e->addr = (uint64_t)argv[2];
        e->op_flags = O_RDONLY;
    }
    e->user_data = 7;
    uint32_t *tail = (uint32_t *)(sq + p.sq.tail), mask = *(uint32_t *)(sq + p.sq.ring_mask);
    uint32_t t = *tail;
    ((uint32_t *)(sq + p.sq.array))[t & mask] = 0;
    __atomic_store_n(tail, t + 1, __ATOMIC_RELEASE);
    long n = syscall(NR_ENTER, fd, 1, 1, ENTER_GETEVENTS, NULL, 0);
    uint32_t head = __atomic_load_n((uint32_t *)(cq + p.cq.head), __ATOMIC_ACQUIRE);
    uint32_t cmask = *(uint32_t *)(cq + p.cq.ring_mask);
    int32_t res = *(int32_t *)(cq + p.cq.cqes + (head & cmask) * 16 + 8);
    printf("enter=%ld result=%d\n", n, res);
    printf("done\n");
    return 0;
}
