// SPDX-License-Identifier: GPL-2.0-only
/*
 * The floor (bench/peers/floor.*): an empty BPF-LSM program on bprm_check_security. What
 * every BPF-LSM agent pays on each exec before its own logic: the LSM hook's trampoline and
 * one program run. It reads nothing, so it needs no CO-RE relocation: the loader resolves
 * the hook's BTF id on the running kernel (5.10, 6.1, 6.12 alike).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

/* Returns the constant 0 (allow): 6.12's verifier wants an LSM program's return value
 * provably in [-4095, 0]. */
SEC("lsm/bprm_check_security")
int BPF_PROG(floor_bprm, struct linux_binprm *bprm)
{
	return 0;
}

/* LSM programs must be GPL-compatible. */
char LICENSE[] SEC("license") = "GPL";
