/* mgsleep SECONDS: a static sleep (fractions allowed). A static stand-in for /bin/sleep in
 * the container's busybox rootfs, where a copy of busybox renamed xmrig would not run:
 * the seed's `cp /bin/sleep /tmp/xmrig; /tmp/xmrig 1` needs a real program.
 * Test helper for tests/vm (static: built by tests/vm/mkinitramfs). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: sleep SECONDS\n");
		return 1;
	}
	double s = strtod(argv[1], NULL);
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };
	while (nanosleep(&ts, &ts) != 0)
		;
	return 0;
}
