// SPDX-License-Identifier: GPL-2.0-only
/*
 * minerguard's only kernel program: on every exec, look up the two names the
 * exec carries in the policy's maps and, on a match, deny (enforce) or allow
 * (audit), reporting either over a ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "minerguard.h"

#define EPERM 1
#define MAX_ERRNO 4095
/* The kernel names a memfd's dentry "memfd:<name chosen by its creator>". */
#define MEMFD_PREFIX "memfd:"
#define MEMFD_PREFIX_LEN (sizeof(MEMFD_PREFIX) - 1)

char LICENSE[] SEC("license") = "GPL";

/*
 * Never read or written. BTF keeps only the types that maps, globals and
 * non-inlined functions use; these globals carry the rest of the contract
 * (the event, the limits, the counters' indexes) into the object's BTF, from
 * which the skeleton generates the daemon's types (the libbpf-rs examples'
 * pattern). They cost one small .bss map.
 */
struct mg_event mg_contract_event;
enum mg_limit mg_contract_limit;
enum mg_stat mg_contract_stat;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_NAMES);
	/* Memory follows the policy's size, not the bound. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_name);
	__type(value, enum mg_name_kind);
} mg_names SEC(".maps");

/* Prefix patterns ("xmrig*"): one longest-prefix lookup, whatever their number. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MG_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_prefix);
	__type(value, __u32); /* the pattern's length in bytes */
} mg_prefixes SEC(".maps");

/* memfd names allowed to exec when memfd execs are blocked (runc's own, ...). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_MEMFD_ALLOW);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_name);
	__type(value, __u32);
} mg_memfd_allow SEC(".maps");

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
 * stack beside them, so all live in per-CPU scratch memory. The names sit in
 * prefix keys so that the same bytes serve the hash and the trie lookups.
 */
struct mg_scratch {
	struct mg_prefix file_name;
	struct mg_prefix process_name;
	char path[MG_PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_scratch);
} mg_scratch SEC(".maps");

/* What one name of the exec matched. */
struct mg_hit {
	enum mg_name_kind kind;
	__u32 prefix_len; /* non-zero: matched a prefix pattern this long */
};

static __always_inline void count(enum mg_stat stat)
{
	__u32 key = stat;
	__u64 *n = bpf_map_lookup_elem(&mg_stats, &key);

	if (n)
		*n += 1;
}

static __always_inline struct mg_hit lookup(struct mg_prefix *key, enum mg_config_flag flags)
{
	struct mg_hit hit = {};
	enum mg_name_kind *kind = bpf_map_lookup_elem(&mg_names, &key->name);
	__u32 *len;

	if (kind) {
		hit.kind = *kind;
		return hit;
	}
	if (!(flags & MG_CONFIG_PREFIXES))
		return hit;
	key->prefixlen = MG_NAME_LEN * 8;
	len = bpf_map_lookup_elem(&mg_prefixes, key);
	if (len) {
		hit.kind = MG_NAME_LISTED;
		hit.prefix_len = *len;
	}
	return hit;
}

static __always_inline bool has_memfd_prefix(const char *name)
{
	const char prefix[] = MEMFD_PREFIX;
	int i;

	for (i = 0; i < MEMFD_PREFIX_LEN; i++)
		if (name[i] != prefix[i])
			return false;
	return true;
}

/*
 * The name of the file really executed: a symlink neither hides nor renames
 * it. A memfd's name is "memfd:" plus whatever its creator chose; that chosen
 * part is what is matched. Sets *memfd_denied when memfd execs are blocked and
 * this one is not allowed. Returns false when the name is too long to be listed.
 * (Direct loads: the hook's arguments are BTF pointers, walked without helpers.)
 */
static __always_inline bool read_file_name(struct linux_binprm *bprm, struct mg_prefix *key,
					   enum mg_config_flag flags, bool *memfd_denied)
{
	struct dentry *dentry = bprm->file->f_path.dentry;
	const unsigned char *name = dentry->d_name.name;
	__u32 len = dentry->d_name.len;

	__builtin_memset(&key->name, 0, sizeof(key->name));
	bpf_probe_read_kernel_str(key->name.name, sizeof(key->name.name), name);
	if (has_memfd_prefix(key->name.name) && dentry->d_inode->__i_nlink == 0) {
		if (flags & MG_CONFIG_MEMFD_BLOCK)
			*memfd_denied = len >= MG_NAME_LEN ||
					!bpf_map_lookup_elem(&mg_memfd_allow, &key->name);
		name += MEMFD_PREFIX_LEN;
		len -= MEMFD_PREFIX_LEN;
		__builtin_memset(&key->name, 0, sizeof(key->name));
		bpf_probe_read_kernel_str(key->name.name, sizeof(key->name.name), name);
	}
	return len < MG_NAME_LEN;
}

/*
 * The name the new process will carry: the kernel sets comm from the basename
 * of bprm->filename. Reads the path in windows that overlap by MG_NAME_LEN, so
 * that for a path longer than the buffer the last window still holds any
 * basename short enough to be listed. Returns false when there is none.
 */
static __always_inline bool read_process_name(struct linux_binprm *bprm, struct mg_scratch *s)
{
	const char *filename = bprm->filename;
	const __u32 step = MG_PATH_LEN - MG_NAME_LEN;
	long len = 0;
	__u32 base = 0;
	int i;

	__builtin_memset(&s->process_name.name, 0, sizeof(s->process_name.name));
#pragma clang loop unroll(disable)
	for (i = 0; i < 16; i++) {
		len = bpf_probe_read_kernel_str(s->path, sizeof(s->path), filename + i * step);
		if (len < (long)sizeof(s->path))
			break;
	}
	if (len <= 1)
		return false;
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
		return false;
	bpf_probe_read_kernel_str(s->process_name.name.name, sizeof(s->process_name.name.name),
				  &s->path[base & (MG_PATH_LEN - 1)]);
	return true;
}

/* Most execs carry one name twice (no symlink): then one lookup answers for both. */
static __always_inline bool same_name(const struct mg_name *a, const struct mg_name *b)
{
	const __u32 *x = (const __u32 *)a->name, *y = (const __u32 *)b->name;
	int i;

	for (i = 0; i < MG_NAME_LEN / 4; i++)
		if (x[i] != y[i])
			return false;
	return true;
}

static __always_inline __u32 mnt_ns_of(struct task_struct *task)
{
	return BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
}

/*
 * Sends one event. Enforcement never waits on the ring buffer: when it is
 * full, the loss is only counted.
 */
static __always_inline void report(struct linux_binprm *bprm, struct mg_scratch *s,
				   enum mg_mode mode, enum mg_action action, enum mg_match matched_on,
				   __u32 prefix_len, bool host)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct mg_name *matched = &s->file_name.name;
	__u64 uid_gid = bpf_get_current_uid_gid();
	struct mg_event *e = bpf_ringbuf_reserve(&mg_events, sizeof(*e), 0);

	if (!e) {
		count(MG_STAT_LOST);
		return;
	}
	if (!(matched_on & MG_MATCH_FILE) && matched_on != MG_MATCH_MEMFD)
		matched = &s->process_name.name;
	e->boot_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->mnt_ns = mnt_ns_of(task);
	e->action = action;
	e->mode = mode;
	e->matched_on = matched_on;
	e->host = host;
	e->reserved[0] = 0;
	e->reserved[1] = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memcpy(e->matched_name, matched->name, MG_NAME_LEN);
	bpf_probe_read_kernel_str(e->file_name, sizeof(e->file_name),
				  BPF_CORE_READ(bprm, file, f_path.dentry, d_name.name));
	if (matched_on == MG_MATCH_MEMFD)
		__builtin_memcpy(e->matched_name, e->file_name, MG_NAME_LEN);
	/* A prefix match reports the pattern, not the whole name. */
	e->matched_prefix = prefix_len != 0;
	if (prefix_len && prefix_len < MG_NAME_LEN) {
		/* Keeps clang from dropping the mask the verifier needs as a bound. */
		barrier_var(prefix_len);
		e->matched_name[prefix_len & (MG_NAME_LEN - 1)] = 0;
	}
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	bpf_probe_read_kernel_str(e->cgroup_name, sizeof(e->cgroup_name),
				  BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, name));
	bpf_ringbuf_submit(e, 0);
}

SEC("lsm/bprm_check_security")
int BPF_PROG(mg_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct mg_hit file, name, none = {};
	bool have_file, have_name;
	enum mg_match matched_on = 0;
	struct mg_config *config;
	bool memfd_denied = false, host, blocked;
	struct mg_scratch *s;
	enum mg_config_flag flags;
	__u32 zero = 0, prefix_len;
	enum mg_mode mode;

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
	config = bpf_map_lookup_elem(&mg_config, &zero);
	if (!s || !config)
		return 0;
	count(MG_STAT_CHECKED);
	flags = config->flags;

	have_file = read_file_name(bprm, &s->file_name, flags, &memfd_denied);
	/*
	 * The hook runs again for a script's interpreter (bprm->interp then holds
	 * its path): the process name was checked on the first pass, and checking
	 * it again would report one exec twice.
	 */
	have_name = bprm->interp == bprm->filename && read_process_name(bprm, s);
	file = have_file ? lookup(&s->file_name, flags) : none;
	if (!have_name)
		name = none;
	else if (have_file && same_name(&s->file_name.name, &s->process_name.name))
		name = file;
	else
		name = lookup(&s->process_name, flags);
	if (!file.kind && !name.kind && !memfd_denied)
		return 0;
	/* The daemon's probe proves the hook is live; it is not a policy decision. */
	if (file.kind == MG_NAME_PROBE || name.kind == MG_NAME_PROBE)
		return -EPERM;

	if (file.kind)
		matched_on |= MG_MATCH_FILE;
	if (name.kind)
		matched_on |= MG_MATCH_PROCESS_NAME;
	if (!matched_on)
		matched_on = MG_MATCH_MEMFD;

	prefix_len = file.kind ? file.prefix_len : name.prefix_len;
	mode = config->mode;
	host = mnt_ns_of((struct task_struct *)bpf_get_current_task()) == config->host_mnt_ns;
	blocked = mode != MG_MODE_AUDIT && !(config->scope == MG_SCOPE_CONTAINERS && host);
	count(blocked ? MG_STAT_BLOCKED : MG_STAT_AUDITED);
	report(bprm, s, mode, blocked ? MG_ACTION_BLOCKED : MG_ACTION_AUDITED, matched_on,
	       prefix_len, host);
	return blocked ? -EPERM : 0;
}
