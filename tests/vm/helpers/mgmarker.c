/* mgmarker ARGS...: the first thing it does is create /tmp/mg-ran (holding its arguments),
 * so that a process killed before its first instruction leaves none: the argument layer's
 * proof. Test helper for tests/vm (static: built by tests/vm/mkinitramfs). */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int fd = open("/tmp/mg-ran", O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return 1;
	for (int i = 1; i < argc; i++) {
		if (write(fd, argv[i], strlen(argv[i])) < 0 || write(fd, "\n", 1) < 0)
			return 1;
	}
	close(fd);
	return 0;
}
