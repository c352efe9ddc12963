/* Calls for bench/matchers.sh: `open PATH N` opens and closes PATH N times;
 * `sendto N` sends N datagrams to 127.0.0.1:9 (discard). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "open")) {
        for (long i = atol(argv[3]); i > 0; i--) {
            int fd = open(argv[2], O_RDONLY);
            if (fd >= 0)
                close(fd);
        }
    } else if (argc == 3 && !strcmp(argv[1], "sendto")) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        for (long i = atol(argv[2]); i > 0; i--)
            sendto(fd, "x", 1, 0, (struct sockaddr *)&a, sizeof a);
    } else {
        return 2;
    }
    return 0;
}
