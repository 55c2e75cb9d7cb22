/* fexec MODE PATH [ARG...]: open PATH, then execute the open file through its descriptor.
 * MODE: fexecve  glibc fexecve(fd, ...)
 *       atempty  execveat(fd, "", ..., AT_EMPTY_PATH) (what fexecve does on Linux)
 *       devfd    execve("/dev/fd/N", ...), N the descriptor (needs /dev/fd -> /proc/self/fd)
 * The new program gets argv = PATH ARG...; the pid stays ours. On failure: "fexec: MODE:
 * strerror" on stderr, exit 126 (127 for ENOENT), as a shell reports a failed exec.
 * Test helper for tests/vm (static: built by tests/vm/mkinitramfs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: fexec fexecve|atempty|devfd PATH [ARG...]\n");
		return 2;
	}
	const char *mode = argv[1], *path = argv[2];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "fexec: open %s: %s\n", path, strerror(errno));
		return 127;
	}
	char **args = argv + 2;
	if (strcmp(mode, "fexecve") == 0) {
		fexecve(fd, args, environ);
	} else if (strcmp(mode, "atempty") == 0) {
		syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH);
	} else if (strcmp(mode, "devfd") == 0) {
		char p[64];
		/* Without O_CLOEXEC: the kernel resolves the path before closing anything, but a
		 * #! script would need the descriptor afterwards. */
		int fd2 = dup(fd);
		snprintf(p, sizeof p, "/dev/fd/%d", fd2);
		execve(p, args, environ);
	} else {
		fprintf(stderr, "fexec: unknown mode %s\n", mode);
		return 2;
	}
	int e = errno;
	fprintf(stderr, "fexec: %s: %s\n", mode, strerror(e));
	return e == ENOENT ? 127 : 126;
}
