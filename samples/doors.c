/* The doors a policy must close besides connect and open (issue 12): one
 * per run, named on the command line. Prints "result=R errno=E" (E the
 * errno's number when R is -1) and the state the test checks, then "done":
 * the program goes on whether or not the call was refused.
 *
 *   doors udp PORT         sendto of one datagram to 127.0.0.1:PORT on an
 *                          unconnected UDP socket
 *   doors fastopen PORT    sendto(MSG_FASTOPEN) of "hi" on a fresh TCP
 *                          socket to 127.0.0.1:PORT: connects with no connect()
 *   doors packet           an AF_PACKET raw socket, then one Ethernet frame
 *                          sent on the loopback interface through it
 *   doors setuid UID       setuid(UID); prints "uid=" after
 *   doors chmod PATH       chmod(PATH, 04755): set-user-id
 *   doors rename FROM TO   rename(FROM, TO)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif
#define AF_PACKET_ 17
#define ETH_P_ALL_ 0x0003

/* struct sockaddr_ll, declared here for libcs without netpacket/packet.h. */
struct ll {
    unsigned short family, protocol;
    int ifindex;
    unsigned short hatype;
    unsigned char pkttype, halen, addr[8];
};

static void loopback(struct sockaddr_in *sa, int port) {
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa->sin_port = htons(port);
}

static void result(long r) {
    printf("result=%ld errno=%d\n", r, r == -1 ? errno : 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s udp|fastopen|packet|setuid|chmod|rename ...\n", argv[0]);
        return 2;
    }
    const char *door = argv[1];
    struct sockaddr_in sa;
    if (!strcmp(door, "udp") && argc > 2) {
        loopback(&sa, atoi(argv[2]));
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        result(sendto(s, "x", 1, 0, (struct sockaddr *)&sa, sizeof sa));
    } else if (!strcmp(door, "fastopen") && argc > 2) {
        loopback(&sa, atoi(argv[2]));
        int s = socket(AF_INET, SOCK_STREAM, 0);
        result(sendto(s, "hi", 2, MSG_FASTOPEN, (struct sockaddr *)&sa, sizeof sa));
    } else if (!strcmp(door, "packet")) {
        int s = socket(AF_PACKET_, SOCK_RAW, htons(ETH_P_ALL_));
        result(s);
        if (s >= 0) {
            struct ll to;
            memset(&to, 0, sizeof to);
            to.family = AF_PACKET_;
            to.protocol = htons(0x88b5); /* local experimental EtherType */
            to.ifindex = if_nametoindex("lo");
            to.halen = 6;
            unsigned char frame[60] = {0};
            frame[12] = 0x88, frame[13] = 0xb5;
            result(sendto(s, frame, sizeof frame, 0, (struct sockaddr *)&to, sizeof to));
        }
    } else if (!strcmp(door, "setuid") && argc > 2) {
        result(setuid(atoi(argv[2])));
        printf("uid=%d\n", (int)getuid());
    } else if (!strcmp(door, "chmod") && argc > 2) {
        result(chmod(argv[2], 04755));
    } else if (!strcmp(door, "rename") && argc > 3) {
        result(rename(argv[2], argv[3]));
    } else {
        fprintf(stderr, "unknown door %s\n", door);
        return 2;
    }
    printf("done\n");
    return 0;
}
