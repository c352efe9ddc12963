/* dfpatch benchmark driver for the doors of issue 12: N calls of one API
 * (bench/doors.sh counts their instructions with callgrind).
 *
 *   doors CALL N
 *
 * CALL, one per class, each cheap and harmless:
 *   sendto      sendto of one byte to 127.0.0.1:9 on an unconnected UDP
 *               socket (network: reported when watched)
 *   send        send of one byte on a connected UDP socket: the same system
 *               call with no address (network: never of interest)
 *   unlink      unlink("/nonexistent/dfpatch-bench"): ENOENT (file)
 *   setresuid   setresuid(-1, -1, -1): changes nothing (privilege)
 *   prctl-name  prctl(PR_GET_DUMPABLE): an option that changes nothing
 *               (privilege: never of interest)
 *   unshare     unshare(0): changes nothing (admin)
 *   pvm-read    process_vm_readv of the parent at address 0: EFAULT (debug)
 *   memfd       memfd_create("bench", MFD_CLOEXEC), then close (exec)
 *   uring       io_uring_setup(1), then close (io_uring)
 *
 * Prints "CALL N" when done. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static volatile long sink;

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CALL N\n", argv[0]);
        return 2;
    }
    const char *call = argv[1];
    long n = atol(argv[2]);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(9);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (!strcmp(call, "send")) connect(s, (struct sockaddr *)&sa, sizeof sa);
    pid_t parent = getppid();
    char buf[8];
    struct iovec l = {buf, sizeof buf}, r = {NULL, sizeof buf};
    uint32_t params[30];
    for (long i = 0; i < n; i++) {
        long v;
        if (!strcmp(call, "sendto")) v = sendto(s, "x", 1, 0, (struct sockaddr *)&sa, sizeof sa);
        else if (!strcmp(call, "send")) v = send(s, "x", 1, 0);
        else if (!strcmp(call, "unlink")) v = unlink("/nonexistent/dfpatch-bench");
        else if (!strcmp(call, "setresuid")) v = setresuid(-1, -1, -1);
        else if (!strcmp(call, "prctl-name")) v = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
        else if (!strcmp(call, "unshare")) v = unshare(0);
        else if (!strcmp(call, "pvm-read")) v = process_vm_readv(parent, &l, 1, &r, 1, 0);
        else if (!strcmp(call, "memfd")) v = close(memfd_create("bench", MFD_CLOEXEC));
        else if (!strcmp(call, "uring")) {
            memset(params, 0, sizeof params);
            v = close(syscall(425, 1, params));
        } else {
            fprintf(stderr, "unknown call %s\n", call);
            return 2;
        }
        sink = v;
    }
    printf("%s %ld\n", call, n);
    return 0;
}
