/* mgopen PATH r|w: opens PATH for reading or for writing (never writes), then closes it.
 * Exit status 0 if the open succeeded, else its errno (EPERM 1, ENXIO 6, EACCES 13), with
 * the error on stderr: the behaviour layer's MSR and huge-page checks deny the open itself.
 * Test helper for tests/vm (static: built by tests/vm/mkinitramfs). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int fd;

	if (argc != 3 || (strcmp(argv[2], "r") && strcmp(argv[2], "w"))) {
		fprintf(stderr, "usage: mgopen PATH r|w\n");
		return 100;
	}
	fd = open(argv[1], argv[2][0] == 'w' ? O_WRONLY : O_RDONLY);
	if (fd < 0) {
		int e = errno;

		fprintf(stderr, "mgopen: %s: %s\n", argv[1], strerror(e));
		return e;
	}
	close(fd);
	return 0;
}
