// mground MODE SECONDS: floating-point work for SECONDS, in one of three ways, then exit 0.
//   randomx  sets the SSE rounding mode (MXCSR bits 13-14) to a pseudo-random one of the
//            four every few hundred operations, as RandomX's CFROUND does (the pattern
//            minerguard's behaviour layer looks for); prints "hashing" first
//   steady   sets one non-default mode (round up, as interval arithmetic does) and keeps it
//   plain    leaves the default mode (round to nearest): ordinary floating-point work
// Busy throughout, never yielding: a context switch happens only when the kernel preempts it.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint32_t get_mxcsr(void)
{
	uint32_t v;
	__asm__ volatile("stmxcsr %0" : "=m"(v));
	return v;
}

static void set_rounding(uint32_t rc)
{
	uint32_t v = (get_mxcsr() & ~(3u << 13)) | ((rc & 3) << 13);
	__asm__ volatile("ldmxcsr %0" : : "m"(v));
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "randomx") && strcmp(argv[1], "steady") && strcmp(argv[1], "plain"))) {
		fprintf(stderr, "usage: mground randomx|steady|plain SECONDS\n");
		return 2;
	}
	int cycle = !strcmp(argv[1], "randomx");
	double seconds = atof(argv[2]), end = now() + seconds;
	volatile double x = 1.000001, acc = 0;
	uint64_t lcg = 0x9e3779b97f4a7c15ull;

	if (!strcmp(argv[1], "steady"))
		set_rounding(2); /* round up (toward +inf) */
	if (cycle) {
		printf("hashing\n");
		fflush(stdout);
	}
	while (now() < end) {
		for (int i = 0; i < 100000; i++) {
			if (cycle && i % 256 == 0) {
				lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
				set_rounding(lcg >> 62);
			}
			acc = acc * x + 0.5;
			if (acc > 1e6)
				acc = acc / 3.0;
		}
	}
	set_rounding(0);
	printf("done %g\n", (double)acc);
	return 0;
}
