/* unlinkedexec tmpfile|deleted SRC [ARG...]: execute a copy of SRC that has no name on disk.
 *   tmpfile  an O_TMPFILE file in /tmp (never linked: its dentry is "#<inode>")
 *   deleted  a file copied to /tmp, opened, then unlinked
 * Either way the copy is reopened read-only (exec refuses a file open for writing) and run
 * with execveat(fd, "", ..., AT_EMPTY_PATH); argv = SRC ARG...; the pid stays ours. On
 * failure: "unlinkedexec: MODE: strerror" on stderr, exit 126, as a shell reports a failed
 * exec. Test helper for tests/vm (static: built by tests/vm/mkinitramfs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

static int die(const char *what)
{
	fprintf(stderr, "unlinkedexec: %s: %s\n", what, strerror(errno));
	return 126;
}

static int copy(int from, int to)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(from, buf, sizeof(buf))) > 0)
		if (write(to, buf, n) != n)
			return -1;
	return n < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: unlinkedexec tmpfile|deleted SRC [ARG...]\n");
		return 2;
	}
	const char *mode = argv[1], *src = argv[2];
	char path[64], proc[64];
	int in = open(src, O_RDONLY), rw, ro;

	if (in < 0)
		return die("open source");
	if (strcmp(mode, "tmpfile") == 0) {
		rw = open("/tmp", O_TMPFILE | O_RDWR, 0755);
	} else if (strcmp(mode, "deleted") == 0) {
		snprintf(path, sizeof(path), "/tmp/mg-deleted-%d", getpid());
		rw = open(path, O_CREAT | O_EXCL | O_RDWR, 0755);
	} else {
		fprintf(stderr, "unlinkedexec: unknown mode %s\n", mode);
		return 2;
	}
	if (rw < 0)
		return die("create");
	if (copy(in, rw) < 0)
		return die("copy");
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", rw);
	ro = open(proc, O_RDONLY | O_CLOEXEC);
	if (ro < 0)
		return die("reopen read-only");
	close(rw);
	close(in);
	if (strcmp(mode, "deleted") == 0 && unlink(path) < 0)
		return die("unlink");
	syscall(SYS_execveat, ro, "", argv + 2, environ, AT_EMPTY_PATH);
	return die(mode);
}
