// pingpong ROUND_TRIPS [up]: two processes pass one byte back and forth over two pipes,
// ROUND_TRIPS times (two context switches each, when they share a CPU); prints the
// nanoseconds per round trip. The context-switch microbenchmark of the behaviour layer.
// "up": both run in a non-default rounding mode (round up, kept), the layer's slow path.
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int ab[2], ba[2];
	char c = 'x';
	struct timespec t0, t1;

	if (argc > 2) {
		unsigned int mxcsr;
		__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
		mxcsr = (mxcsr & ~(3u << 13)) | (2u << 13);
		__asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
	}
	if (pipe(ab) || pipe(ba))
		return 1;
	pid_t child = fork();
	if (child == 0) {
		for (long i = 0; i < n; i++)
			if (read(ab[0], &c, 1) != 1 || write(ba[1], &c, 1) != 1)
				_exit(1);
		_exit(0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++)
		if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
			return 1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	waitpid(child, NULL, 0);
	printf("%.0f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n);
	return 0;
}
