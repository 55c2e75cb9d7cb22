// SPDX-License-Identifier: GPL-2.0-only
/*
 * execloop: the exec-cost probe of minerguard's benchmark (bench/run). Static, no libraries.
 *
 *   execloop N PROGRAM [ARGS...]   fork+exec PROGRAM N times, waiting for each; prints
 *                                  "execs=N fails=F ns=TOTAL ns_per_exec=X start=T0 end=T1"
 *                                  (CLOCK_MONOTONIC ns;
 *                                  under QEMU -icount shift=0 a guest nanosecond is one
 *                                  guest instruction, so these are instructions per exec).
 *   execloop now                   prints CLOCK_MONOTONIC in nanoseconds.
 *   execloop stamp FILE PROG [ARGS...]
 *                                  writes CLOCK_MONOTONIC ns to FILE, then execs PROG in
 *                                  place (same pid): times a daemon's start without a fork.
 *
 * A child that cannot exec or exits non-zero counts as a fail (e.g. an exec the agent denied).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int usage(void)
{
	fputs("usage: execloop N PROGRAM [ARGS...] | execloop now | execloop stamp FILE PROGRAM [ARGS...]\n",
	      stderr);
	return 2;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "now") == 0) {
		printf("%llu\n", now_ns());
		return 0;
	}
	if (argc >= 4 && strcmp(argv[1], "stamp") == 0) {
		FILE *f = fopen(argv[2], "w");

		if (!f) {
			perror(argv[2]);
			return 1;
		}
		fprintf(f, "%llu\n", now_ns());
		fclose(f);
		execv(argv[3], &argv[3]);
		perror(argv[3]);
		return 127;
	}
	if (argc < 3)
		return usage();

	char *end;
	long n = strtol(argv[1], &end, 10);

	if (*end || n <= 0)
		return usage();

	long fails = 0;
	unsigned long long t0 = now_ns();

	for (long i = 0; i < n; i++) {
		pid_t pid = fork();
		int status;

		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			execv(argv[2], &argv[2]);
			_exit(127);
		}
		if (waitpid(pid, &status, 0) < 0) {
			perror("waitpid");
			return 1;
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fails++;
	}
	unsigned long long ns = now_ns() - t0;

	printf("execs=%ld fails=%ld ns=%llu ns_per_exec=%llu start=%llu end=%llu\n", n, fails, ns, ns / n,
	       t0, t0 + ns);
	return 0;
}
