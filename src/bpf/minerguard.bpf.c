// SPDX-License-Identifier: GPL-2.0-only
/*
 * minerguard's only kernel program: on every exec, look up the two names the
 * exec carries in the policy's names map and, on a match, deny (enforce) or
 * allow (audit), reporting either over a ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "minerguard.h"

#define EPERM 1
#define MAX_ERRNO 4095

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_NAMES);
	/* Memory follows the policy's size, not the bound. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_name);
	__type(value, enum mg_name_kind);
} mg_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_config);
} mg_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MG_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} mg_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} mg_events SEC(".maps");

/*
 * Map keys must be zero-padded, and the path does not fit on the 512-byte
 * stack beside them, so both live in per-CPU scratch memory.
 */
struct mg_scratch {
	struct mg_name file_name;
	struct mg_name process_name;
	char path[MG_PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_scratch);
} mg_scratch SEC(".maps");

/* Not inlined, so that enum mg_stat is in the BTF the skeleton is generated from. */
static __noinline void count(enum mg_stat stat)
{
	__u32 key = stat;
	__u64 *n = bpf_map_lookup_elem(&mg_stats, &key);

	if (n)
		*n += 1;
}

static __always_inline enum mg_name_kind lookup(const struct mg_name *key)
{
	enum mg_name_kind *kind = bpf_map_lookup_elem(&mg_names, key);

	return kind ? *kind : 0;
}

/* The name of the file really executed: a symlink neither hides nor renames it. */
static __always_inline enum mg_name_kind match_file(struct linux_binprm *bprm, struct mg_name *key)
{
	struct dentry *dentry = BPF_CORE_READ(bprm, file, f_path.dentry);
	__u32 len = BPF_CORE_READ(dentry, d_name.len);

	__builtin_memset(key, 0, sizeof(*key));
	if (len >= MG_NAME_LEN)
		return 0; /* longer than any listed name */
	bpf_probe_read_kernel_str(key->name, sizeof(key->name), BPF_CORE_READ(dentry, d_name.name));
	return lookup(key);
}

/*
 * The name the new process will carry: the kernel sets comm from the basename
 * of bprm->filename. Reads the path in windows that overlap by MG_NAME_LEN, so
 * that for a path longer than the buffer the last window still holds any
 * basename short enough to be listed.
 */
static __always_inline enum mg_name_kind match_process_name(struct linux_binprm *bprm, struct mg_scratch *s)
{
	const char *filename = BPF_CORE_READ(bprm, filename);
	const __u32 step = MG_PATH_LEN - MG_NAME_LEN;
	long len = 0;
	__u32 base = 0;
	int i;

	__builtin_memset(&s->process_name, 0, sizeof(s->process_name));
#pragma clang loop unroll(disable)
	for (i = 0; i < 16; i++) {
		len = bpf_probe_read_kernel_str(s->path, sizeof(s->path), filename + i * step);
		if (len < (long)sizeof(s->path))
			break;
	}
	if (len <= 1)
		return 0;
	/* Scan back from the end: the cost is the basename's length, not the path's. */
#pragma clang loop unroll(disable)
	for (i = 0; i < MG_PATH_LEN; i++) {
		long at = len - 2 - i;

		if (at < 0)
			break;
		if (s->path[at & (MG_PATH_LEN - 1)] == '/') {
			base = at + 1;
			break;
		}
	}
	if (len - 1 - base >= MG_NAME_LEN)
		return 0;
	bpf_probe_read_kernel_str(s->process_name.name, sizeof(s->process_name.name),
				  &s->path[base & (MG_PATH_LEN - 1)]);
	return lookup(&s->process_name);
}

/* Not inlined, so that struct mg_event and its enums are in the skeleton's BTF. */
static __noinline void fill_event(struct mg_event *e, struct linux_binprm *bprm,
				  struct mg_scratch *s, enum mg_mode mode, enum mg_match matched_on)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 uid_gid;

	uid_gid = bpf_get_current_uid_gid();
	e->boot_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->action = mode == MG_MODE_ENFORCE ? MG_ACTION_BLOCKED : MG_ACTION_AUDITED;
	e->mode = mode;
	e->matched_on = matched_on;
	e->reserved = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memcpy(e->matched_name,
			 matched_on & MG_MATCH_FILE ? s->file_name.name : s->process_name.name,
			 MG_NAME_LEN);
	__builtin_memcpy(e->file_name, s->file_name.name, MG_NAME_LEN);
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
}

static __always_inline void report(struct linux_binprm *bprm, struct mg_scratch *s,
				   enum mg_mode mode, enum mg_match matched_on)
{
	struct mg_event *e = bpf_ringbuf_reserve(&mg_events, sizeof(*e), 0);

	if (!e) {
		count(MG_STAT_LOST);
		return;
	}
	fill_event(e, bprm, s, mode, matched_on);
	bpf_ringbuf_submit(e, 0);
}

SEC("lsm/bprm_check_security")
int BPF_PROG(mg_bprm_check, struct linux_binprm *bprm, int ret)
{
	enum mg_name_kind file_kind, name_kind;
	enum mg_match matched_on = 0;
	struct mg_config *config;
	struct mg_scratch *s;
	enum mg_mode mode;
	__u32 zero = 0;

	/* An earlier BPF LSM program denied: keep its answer, bounded as the verifier requires. */
	if (ret != 0) {
		if (ret < -MAX_ERRNO)
			return -EPERM;
		barrier_var(ret);
		if (ret > 0)
			return -EPERM;
		return ret;
	}

	s = bpf_map_lookup_elem(&mg_scratch, &zero);
	if (!s)
		return 0;
	count(MG_STAT_CHECKED);

	file_kind = match_file(bprm, &s->file_name);
	name_kind = match_process_name(bprm, s);
	if (!file_kind && !name_kind)
		return 0;
	/* The daemon's probe proves the hook is live; it is not a policy decision. */
	if (file_kind == MG_NAME_PROBE || name_kind == MG_NAME_PROBE)
		return -EPERM;

	if (file_kind)
		matched_on |= MG_MATCH_FILE;
	if (name_kind)
		matched_on |= MG_MATCH_PROCESS_NAME;

	config = bpf_map_lookup_elem(&mg_config, &zero);
	mode = config ? config->mode : MG_MODE_ENFORCE;
	if (mode == MG_MODE_AUDIT) {
		count(MG_STAT_AUDITED);
		report(bprm, s, MG_MODE_AUDIT, matched_on);
		return 0;
	}
	/* Enforcement never waits on the ring buffer: report() only counts a loss. */
	count(MG_STAT_BLOCKED);
	report(bprm, s, MG_MODE_ENFORCE, matched_on);
	return -EPERM;
}
