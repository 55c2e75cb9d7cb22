/* memfdexec NAME SRC [ARG...]: fileless exec. memfd_create(NAME), copy the file SRC into it,
 * then fexecve the memfd with argv = NAME ARG... The kernel names the file "memfd:NAME".
 * On failure: "memfdexec: fexecve: strerror" on stderr, exit 126, as a shell would.
 * Test helper for tests/vm (static: built by tests/vm/mkinitramfs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

extern char **environ;

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: memfdexec NAME SRC [ARG...]\n");
		return 2;
	}
	const char *name = argv[1], *src = argv[2];
	/* MFD_EXEC (6.3+) keeps newer kernels from warning; older ones reject it: retry. */
	int mfd = memfd_create(name, MFD_CLOEXEC | MFD_EXEC);
	if (mfd < 0 && errno == EINVAL)
		mfd = memfd_create(name, MFD_CLOEXEC);
	if (mfd < 0) {
		fprintf(stderr, "memfdexec: memfd_create %s: %s\n", name, strerror(errno));
		return 1;
	}
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		fprintf(stderr, "memfdexec: open %s: %s\n", src, strerror(errno));
		return 1;
	}
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(mfd, buf + off, n - off);
			if (w < 0) {
				fprintf(stderr, "memfdexec: write: %s\n", strerror(errno));
				return 1;
			}
			off += w;
		}
	}
	if (n < 0) {
		fprintf(stderr, "memfdexec: read %s: %s\n", src, strerror(errno));
		return 1;
	}
	close(in);
	argv[2] = (char *)name;
	fexecve(mfd, argv + 2, environ);
	fprintf(stderr, "memfdexec: fexecve: %s\n", strerror(errno));
	return 126;
}
