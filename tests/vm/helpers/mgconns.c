/* mgconns PORT idle N SECONDS: open N connections to 127.0.0.1:PORT without waiting for them
 * to be accepted, send half a request head on every other one, hold them all SECONDS, exit.
 * mgconns PORT endless MIB: one connection, a request line, then one header line of MIB
 * MiB that never ends; stops when the server closes. Prints what it did.
 * A local user's attacks on the metrics endpoint, in one process (scenario 42).
 * Test helper for tests/vm (static: built by tests/vm/mkinitramfs). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int connect_to(int port, int nonblock)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: mgconns PORT idle N SECONDS | mgconns PORT endless MIB\n");
		return 2;
	}
	int port = atoi(argv[1]);
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(argv[2], "idle") == 0 && argc == 5) {
		int n = atoi(argv[3]), opened = 0;
		struct rlimit rl = { n + 64, n + 64 };
		setrlimit(RLIMIT_NOFILE, &rl);
		for (int i = 0; i < n; i++) {
			int fd = connect_to(port, 1);
			if (fd < 0)
				continue;
			opened++;
			if (i % 2 == 0) {
				/* Written once the handshake is done; until then it may fail: fine. */
				usleep(100);
				(void)!write(fd, "GET /metrics HTTP/1.1\r\nHost:", 28);
			}
		}
		printf("mgconns: %d of %d idle connections open\n", opened, n);
		fflush(stdout);
		sleep(atoi(argv[4]));
		return 0;
	}
	if (strcmp(argv[2], "endless") == 0) {
		long mib = atol(argv[3]), sent = 0;
		int fd = connect_to(port, 0);
		if (fd < 0) {
			perror("mgconns: connect");
			return 1;
		}
		static char chunk[1 << 16];
		memset(chunk, 'a', sizeof(chunk));
		if (write(fd, "GET /metrics HTTP/1.1\r\nX-Long: ", 31) != 31)
			return 1;
		while (sent < (mib << 20)) {
			ssize_t w = write(fd, chunk, sizeof(chunk));
			if (w <= 0)
				break; /* the server closed the connection */
			sent += w;
		}
		printf("mgconns: sent %ld KiB of one header line\n", sent >> 10);
		return 0;
	}
	fprintf(stderr, "mgconns: unknown mode %s\n", argv[2]);
	return 2;
}
