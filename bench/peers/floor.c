// SPDX-License-Identifier: GPL-2.0-only
/*
 * The floor's loader (bench/peers/floor.*): floor OBJECT loads OBJECT's empty BPF-LSM
 * program, attaches it (a BPF link), prints "floor attached" and waits until killed.
 * It keeps the object, so the program fd stays open (the bench reads its run stats from
 * /proc/PID/fdinfo) and the link lives exactly as long as this process: killing it
 * detaches the program. Built statically (libbpf, libelf, zlib) so that the guest
 * needs no libraries. (bookworm's bpftool cannot attach an LSM program.)
 */
#include <bpf/libbpf.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct bpf_link *link;

	if (argc != 2) {
		fprintf(stderr, "usage: floor OBJECT\n");
		return 2;
	}
	/* 5.10 charges BPF memory to RLIMIT_MEMLOCK (later kernels to the memory cgroup). */
	setrlimit(RLIMIT_MEMLOCK, &unlimited);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "floor: cannot open %s\n", argv[1]);
		return 1;
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "floor: cannot load %s\n", argv[1]);
		return 1;
	}
	prog = bpf_object__find_program_by_name(obj, "floor_bprm");
	link = prog ? bpf_program__attach_lsm(prog) : NULL;
	if (!link) {
		fprintf(stderr, "floor: cannot attach floor_bprm\n");
		return 1;
	}
	printf("floor attached\n");
	fflush(stdout);
	for (;;)
		pause();
}
