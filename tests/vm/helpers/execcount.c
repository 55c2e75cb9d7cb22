/* execcount STOPFILE PATH: fork and exec PATH (no arguments) again and again until STOPFILE
 * exists, then print "ATTEMPTS RAN": how many execs were tried and how many ran (the child
 * exited 0; a denied exec makes the child exit 126). Much faster than a shell loop, so a
 * short window in which an exec would be allowed is hit. Test helper for tests/vm (static:
 * built by tests/vm/mkinitramfs). */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long attempts = 0, ran = 0;
	int status;

	if (argc != 3) {
		fprintf(stderr, "usage: execcount STOPFILE PATH\n");
		return 2;
	}
	while (access(argv[1], F_OK) != 0) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("execcount: fork");
			return 1;
		}
		if (pid == 0) {
			char *args[] = { argv[2], NULL };

			execv(argv[2], args);
			_exit(126);
		}
		if (waitpid(pid, &status, 0) < 0) {
			perror("execcount: waitpid");
			return 1;
		}
		attempts++;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			ran++;
	}
	printf("%ld %ld\n", attempts, ran);
	return 0;
}
