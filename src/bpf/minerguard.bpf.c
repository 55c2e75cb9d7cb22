// SPDX-License-Identifier: GPL-2.0-only
/*
 * minerguard's kernel side. exec_check: on every exec, look up the two names
 * the exec carries in the policy's maps, then the file's identity (a file
 * blocked before under a listed name) and, on a match, enforce or allow
 * (audit), reporting either over a ring buffer. It runs in one of three
 * programs, the tiers (enum mg_tier), of which the agent loads one:
 * mg_bprm_check (BPF LSM), mg_bprm_fmod (fmod_ret, no bpf in lsm= needed),
 * mg_exec_kill (a tracepoint and SIGKILL). mmap_check: the same for a file
 * mapped executable, which is how the dynamic loader runs a program it was
 * given as an argument and how preloaded libraries come in (lsm and fmod_ret
 * only). The optional layers each in a header of their own, included below
 * (arguments, hashes, drift, behaviour, tuning). mg_host_mnt_ns: a task iterator the agent runs once, to learn the
 * host's mount namespace.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "minerguard.h"

#define EPERM 1
#define SIGKILL 9
#define PROT_EXEC 0x4
#define MAX_ERRNO 4095
/* The kernel names a memfd's dentry "memfd:<name chosen by its creator>". */
#define MEMFD_PREFIX "memfd:"
#define MEMFD_PREFIX_LEN (sizeof(MEMFD_PREFIX) - 1)
/* PATH_MAX, and NAME_MAX: the longest path exec takes, the longest component. */
#define PATH_MAX 4096
#define NAME_MAX 255
/*
 * The exec path is read in windows of PATH_WINDOW bytes that overlap by
 * MG_NAME_LEN, so that the last window holds any basename short enough to be
 * listed (and the 64 bytes before it).
 */
#define PATH_WINDOW 128
#define PATH_STEP (PATH_WINDOW - MG_NAME_LEN)
#define PATH_WINDOWS (PATH_MAX / PATH_STEP + 1)

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
enum mg_hook mg_contract_hook;
enum mg_tier mg_contract_tier;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_NAMES_CAPACITY);
	/* Memory follows the policy's size, not the bound. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_name);
	__type(value, enum mg_name_kind);
} mg_names SEC(".maps");

/* Prefix patterns ("xmrig*"): one longest-prefix lookup, whatever their number. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MG_PREFIXES_CAPACITY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_prefix);
	__type(value, __u32); /* the pattern's length in bytes */
} mg_prefixes SEC(".maps");

/* memfd names allowed to exec when memfd execs are blocked (runc's own, ...). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MEMFD_ALLOW_CAPACITY);
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

/*
 * Files blocked (or audited) under a listed name, by inode: the same file under
 * any other name is the same program. Filled by the programs, not the agent;
 * pinned, so a restart does not forget; the least recently used go first.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MG_MAX_IDENTITIES);
	__type(key, struct mg_file_key);
	__type(value, struct mg_identity);
} mg_identities SEC(".maps");

/* The mode, alone, so that flipping it rewrites nothing else (see struct mg_config). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, enum mg_mode);
} mg_mode SEC(".maps");

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
 * One exec's names, on the stack: BPF-LSM programs run with migration but not
 * preemption disabled, so per-CPU scratch memory could be overwritten by
 * another exec on the same CPU between reading a name and looking it up. The
 * names sit in prefix keys so that the same bytes serve the hash and the trie
 * lookups; `whole` says a name fits the key (longer ones can still match a
 * prefix pattern through their first MG_NAME_LEN - 1 bytes).
 */
struct mg_names_read {
	struct mg_prefix file_name;
	struct mg_prefix process_name;
	bool file_whole;
	bool process_whole;
};

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

static __always_inline struct mg_hit lookup(struct mg_prefix *key, bool whole,
					    enum mg_config_flag flags)
{
	struct mg_hit hit = {};
	enum mg_name_kind *kind;
	__u32 *len;

	if (whole) {
		kind = bpf_map_lookup_elem(&mg_names, &key->name);
		if (kind) {
			hit.kind = *kind;
			return hit;
		}
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
 * The name of the file really executed (or mapped): a symlink neither hides nor renames
 * it. A memfd's name is "memfd:" plus whatever its creator chose; that chosen
 * part is what is matched. A file with no name on disk (a memfd, O_TMPFILE, a
 * file deleted after open) is denied when the policy blocks them, unless it is
 * an allowed memfd: returns MG_MATCH_MEMFD or MG_MATCH_UNLINKED then, else 0.
 * (Direct loads: the hook's arguments are BTF pointers, walked without helpers.)
 */
static __always_inline enum mg_match read_file_name(struct file *file, struct mg_names_read *r,
						    enum mg_config_flag flags)
{
	struct dentry *dentry = file->f_path.dentry;
	const unsigned char *name = dentry->d_name.name;
	__u32 len = dentry->d_name.len;
	struct mg_name *key = &r->file_name.name;
	enum mg_match denied = 0;
	bool memfd;

	__builtin_memset(key, 0, sizeof(*key));
	bpf_probe_read_kernel_str(key->name, sizeof(key->name), name);
	if (dentry->d_inode->__i_nlink == 0) {
		memfd = has_memfd_prefix(key->name);
		if ((flags & MG_CONFIG_MEMFD_BLOCK) && !memfd)
			denied = MG_MATCH_UNLINKED;
		else if ((flags & MG_CONFIG_MEMFD_BLOCK) &&
			 (len >= MG_NAME_LEN || !bpf_map_lookup_elem(&mg_memfd_allow, key)))
			denied = MG_MATCH_MEMFD;
		if (memfd) {
			name += MEMFD_PREFIX_LEN;
			len -= MEMFD_PREFIX_LEN;
			__builtin_memset(key, 0, sizeof(*key));
			bpf_probe_read_kernel_str(key->name, sizeof(key->name), name);
		}
	}
	r->file_whole = len < MG_NAME_LEN;
	return denied;
}

/*
 * Offset of the last '/' among the first n bytes of window, or -1. Indexes
 * stay relative to the window, so the verifier's view of them does not depend
 * on where in the path the window lies (states of different windows prune).
 */
static __always_inline long last_slash(const char *window, long n)
{
	long rel;
	int i;

#pragma clang loop unroll(disable)
	for (i = 0; i < PATH_WINDOW; i++) {
		rel = n - 1 - i;
		if (rel < 0)
			return -1;
		if (window[rel & (PATH_WINDOW - 1)] == '/')
			return rel;
	}
	return -1;
}

/*
 * Where the basename starts, looking in the PATH_WINDOW bytes before *end (a
 * multiple of PATH_STEP, past 0): the offset after the last '/' there, 0 when
 * that window reaches the path's start without one, else -1; *end moves to the
 * window's start for the next look.
 */
static __always_inline long slash_before(const char *filename, char *window, __u32 *end)
{
	long from = *end >= PATH_WINDOW ? *end - PATH_WINDOW : 0, at;

	if (bpf_probe_read_kernel(window, PATH_WINDOW, filename + from))
		return -2;
	at = last_slash(window, *end >= PATH_WINDOW ? PATH_WINDOW : PATH_STEP);
	*end = from;
	if (at >= 0)
		return from + at + 1;
	return from == 0 ? 0 : -1;
}

/*
 * The name the new process will carry: the kernel sets comm from the basename
 * of bprm->filename. Any path exec accepts (PATH_MAX) is read in overlapping
 * windows; the last one holds the basename when it is short enough to be
 * listed. A longer basename (at most NAME_MAX: two windows more) is found in
 * the windows before it, so that its first bytes still meet prefix patterns.
 */
static __always_inline void read_process_name(struct linux_binprm *bprm, struct mg_names_read *r)
{
	const char *filename = bprm->filename;
	char window[PATH_WINDOW];
	long len = 0, end, base = -1, at;
	__u32 start = 0;
	int i;

	__builtin_memset(&r->process_name.name, 0, sizeof(r->process_name.name));
#pragma clang loop unroll(disable)
	for (i = 0; i < PATH_WINDOWS; i++) {
		start = i * PATH_STEP;
		len = bpf_probe_read_kernel_str(window, sizeof(window), filename + start);
		if (len < (long)sizeof(window))
			break;
	}
	if (len <= 1)
		return;
	/*
	 * Make the verifier forget which window ended the path (a copy through a
	 * helper is opaque to it): otherwise it checks all that follows once per
	 * window, past its million-instruction limit.
	 */
	bpf_probe_read_kernel(&start, sizeof(start), &start);
	end = start + len - 1; /* the NUL's offset in the path */
	at = last_slash(window, len - 1);
	if (at >= 0)
		base = start + at + 1;
	else if (start == 0)
		base = 0;
	/* The two windows before the last one (written out: no nested loop). */
	if (base < 0)
		base = slash_before(filename, window, &start);
	if (base < 0)
		base = slash_before(filename, window, &start);
	if (base < 0 || base > PATH_MAX)
		return;
	bpf_probe_read_kernel_str(r->process_name.name.name, sizeof(r->process_name.name.name),
				  filename + base);
	r->process_whole = end - base < MG_NAME_LEN;
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

/* struct inode before 6.11 (the mtime as a timespec64), in the two spellings it had. */
struct inode___timespec {
	struct timespec64 i_mtime; /* up to 6.6 */
} __attribute__((preserve_access_index));

struct inode___private_timespec {
	struct timespec64 __i_mtime; /* 6.7 to 6.10 */
} __attribute__((preserve_access_index));

/* What tells a file's content changed: its mtime and size. */
static __always_inline void file_state(struct inode *inode, __s64 *sec, __u32 *nsec, __s64 *size)
{
	struct inode___private_timespec *private_ts = (void *)inode;
	struct inode___timespec *ts = (void *)inode;

	*size = BPF_CORE_READ(inode, i_size);
	if (bpf_core_field_exists(inode->i_mtime_sec)) {
		*sec = BPF_CORE_READ(inode, i_mtime_sec);
		*nsec = BPF_CORE_READ(inode, i_mtime_nsec);
	} else if (bpf_core_field_exists(private_ts->__i_mtime)) {
		*sec = BPF_CORE_READ(private_ts, __i_mtime.tv_sec);
		*nsec = BPF_CORE_READ(private_ts, __i_mtime.tv_nsec);
	} else {
		*sec = BPF_CORE_READ(ts, i_mtime.tv_sec);
		*nsec = BPF_CORE_READ(ts, i_mtime.tv_nsec);
	}
}

static __always_inline void file_key(struct inode *inode, struct mg_file_key *k)
{
	k->ino = BPF_CORE_READ(inode, i_ino);
	k->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	k->generation = BPF_CORE_READ(inode, i_generation);
}

/*
 * Remembers a file whose own name just matched. Only a file with one name: a
 * file linked under several names before its first block (`ln /bin/sleep
 * /tmp/xmrig`) may be a system program, which a listed name given to it must
 * not take away from everybody.
 */
static __noinline void remember(struct file *file, const struct mg_name *name)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct mg_identity v = {};
	struct mg_file_key k = {};

	if (BPF_CORE_READ(inode, __i_nlink) != 1)
		return;
	file_key(inode, &k);
	file_state(inode, &v.mtime_sec, &v.mtime_nsec, &v.size);
	/* (A helper copy: an inline one of unaligned bytes costs ~150 bytes of stack.) */
	bpf_probe_read_kernel(&v.name, sizeof(v.name), name);
	bpf_map_update_elem(&mg_identities, &k, &v, BPF_ANY);
}

/*
 * The name a remembered file was blocked as, if it has not changed since, else
 * NULL (a changed file is forgotten). The name stays in the map's memory,
 * which outlives this program's run; it costs no stack.
 */
static __always_inline const struct mg_name *recall(struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct mg_identity *seen;
	struct mg_file_key k = {};
	__s64 sec, size;
	__u32 nsec;

	file_key(inode, &k);
	seen = bpf_map_lookup_elem(&mg_identities, &k);
	if (!seen)
		return NULL;
	file_state(inode, &sec, &nsec, &size);
	if (sec != seen->mtime_sec || nsec != seen->mtime_nsec || size != seen->size) {
		bpf_map_delete_elem(&mg_identities, &k);
		return NULL;
	}
	return &seen->name;
}

static __always_inline __u32 mnt_ns_of(struct task_struct *task)
{
	return BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
}

/* What a check found, for the event and the verdict. */
struct mg_found {
	struct file *file; /* the file executed or mapped */
	const char *path; /* kernel string: the path passed to exec, or the file's name */
	const struct mg_name *matched; /* the name (or pattern) that matched */
	enum mg_match matched_on;
	enum mg_hook hook;
	enum mg_tier tier; /* the attach point acting */
	__u32 prefix_len; /* non-zero: matched a prefix pattern this long */
	bool audit_only; /* reported, never enforced, whatever the mode */
	bool enforce_always; /* enforced, whatever the mode (unless audit_only) */
	__u32 observed_changes; /* MG_MATCH_RANDOMX: what was seen */
	__u32 observed_ms;
};

/*
 * Where an x86-64 syscall's user registers are: struct pt_regs at the top of
 * the task's kernel stack (task_pt_regs), below a padding that is 16 bytes
 * when the kernel is built with FRED (6.9+), none before. The layout is the
 * ptrace ABI's, fixed. THREAD_SIZE is 16 KiB on kernels without KASAN (Debian's,
 * Ubuntu's); elsewhere no syscall number is found and the arguments are not
 * reported, nothing else changes.
 */
#define MG_THREAD_SIZE 16384
#define MG_REGS_SIZE 168
#define MG_REGS_DX 96
#define MG_REGS_SI 104
#define MG_REGS_ORIG_AX 120
#define MG_NR_EXECVE 59
#define MG_NR_EXECVEAT 322

/* The argv the caller passed to execve or execveat, or NULL. */
static __always_inline const char *const *exec_argv(struct task_struct *task)
{
	char *top = (char *)BPF_CORE_READ(task, stack) + MG_THREAD_SIZE;
	unsigned long nr = 0, argv = 0;
	char *regs;

	for (int pad = 0; pad <= 16; pad += 16) {
		regs = top - pad - MG_REGS_SIZE;
		if (bpf_probe_read_kernel(&nr, sizeof(nr), regs + MG_REGS_ORIG_AX))
			return NULL;
		if (nr == MG_NR_EXECVE) {
			bpf_probe_read_kernel(&argv, sizeof(argv), regs + MG_REGS_SI);
			break;
		}
		if (nr == MG_NR_EXECVEAT) {
			bpf_probe_read_kernel(&argv, sizeof(argv), regs + MG_REGS_DX);
			break;
		}
	}
	return (const char *const *)argv;
}

/*
 * The command line of an exec that can still fail: at bprm_check_security the
 * arguments sit in the new address space, not yet current, but the caller's
 * own copy is still in its memory, where argv points. (The caller may change
 * it after the kernel copied it: what is reported is what its memory holds at
 * the check. Arguments are not matched here: see argv.bpf.h.)
 */
static __always_inline void exec_cmdline(struct task_struct *task, struct mg_event *e)
{
	const char *const *argv = exec_argv(task);
	const char *arg = NULL;
	__u32 off = 0;
	long n;
	int i;

	if (!argv)
		return;
	for (i = 0; i < MG_CMDLINE_ARGS; i++) {
		if (off >= MG_CMDLINE_LEN)
			break;
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			break;
		off &= MG_CMDLINE_LEN - 1;
		n = bpf_probe_read_user_str(&e->cmdline[off], MG_CMDLINE_LEN - off, arg);
		if (n <= 0)
			break;
		off += n;
	}
	e->cmdline_len = off < MG_CMDLINE_LEN ? off : MG_CMDLINE_LEN;
	/* Cut: the room ran out, or an argument is left past the ones read. */
	if (off >= MG_CMDLINE_LEN ||
	    (i == MG_CMDLINE_ARGS && !bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) && arg))
		e->cmdline_cut = 1;
}

/* The command line of a running process: its argument area, as /proc/PID/cmdline reads it. */
static __always_inline void own_cmdline(struct task_struct *task, struct mg_event *e)
{
	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	__u64 len;

	if (!start || end <= start)
		return;
	len = end - start;
	if (len > MG_CMDLINE_LEN) {
		len = MG_CMDLINE_LEN;
		e->cmdline_cut = 1;
	}
	barrier_var(len);
	len &= MG_CMDLINE_BUF - 1;
	if (bpf_probe_read_user(e->cmdline, len, (const void *)start) == 0)
		e->cmdline_len = len;
}

/*
 * Sends one event. Enforcement never waits on the ring buffer: when it is
 * full, the loss is only counted.
 */
static __always_inline void report(const struct mg_found *f, enum mg_mode mode,
				   enum mg_action action, bool host)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 uid_gid = bpf_get_current_uid_gid();
	struct mg_event *e = bpf_ringbuf_reserve(&mg_events, sizeof(*e), 0);
	__u32 prefix_len = f->prefix_len;
	struct file *file = f->file;

	if (!e) {
		count(MG_STAT_LOST);
		return;
	}
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
	e->matched_on = f->matched_on;
	e->host = host;
	e->hook = f->hook;
	e->tier = f->tier;
	e->observed_changes = f->observed_changes;
	e->observed_ms = f->observed_ms;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memcpy(e->matched_name, f->matched->name, MG_NAME_LEN);
	/* (Through a local: a CO-RE read of f->file would relocate mg_found, unknown to the kernel.) */
	bpf_probe_read_kernel_str(e->file_name, sizeof(e->file_name),
				  BPF_CORE_READ(file, f_path.dentry, d_name.name));
	if (f->matched_on == MG_MATCH_MEMFD || f->matched_on == MG_MATCH_UNLINKED)
		__builtin_memcpy(e->matched_name, e->file_name, MG_NAME_LEN);
	/* A prefix match reports the pattern, not the whole name. */
	e->matched_prefix = prefix_len != 0;
	if (prefix_len && prefix_len < MG_NAME_LEN) {
		/* Keeps clang from dropping the mask the verifier needs as a bound. */
		barrier_var(prefix_len);
		e->matched_name[prefix_len & (MG_NAME_LEN - 1)] = 0;
	}
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), f->path);
	bpf_probe_read_kernel_str(e->cgroup_name, sizeof(e->cgroup_name),
				  BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, name));
	/* (A reserved record is not zeroed.) */
	e->cmdline_len = 0;
	e->cmdline_cut = 0;
	if (f->hook == MG_HOOK_EXEC && f->tier != MG_TIER_KILL)
		exec_cmdline(task, e);
	else
		own_cmdline(task, e);
	bpf_ringbuf_submit(e, 0);
}

/*
 * Whether a match is enforced (enforce mode or a layer that enforces whatever
 * the mode, not a layer that only reports, and not a host process under
 * scope = "containers"), counted and reported with `action` if it is, as
 * audited if not. The caller enforces: -EPERM from an LSM hook, SIGKILL past
 * the point where an exec can fail.
 */
static __always_inline bool enforced(const struct mg_found *f, const struct mg_config *config,
				     enum mg_mode mode, enum mg_action action)
{
	bool host, enforce;

	host = mnt_ns_of((struct task_struct *)bpf_get_current_task()) == config->host_mnt_ns;
	enforce = (mode != MG_MODE_AUDIT || f->enforce_always) &&
		  !(config->scope == MG_SCOPE_CONTAINERS && host) && !f->audit_only;
	if (!enforce)
		count(MG_STAT_AUDITED);
	else if (action == MG_ACTION_KILLED)
		count(MG_STAT_KILLED);
	else
		count(MG_STAT_BLOCKED);
	report(f, mode, enforce ? action : MG_ACTION_AUDITED, host);
	return enforce;
}

/*
 * What an LSM hook returns, provably within [-MAX_ERRNO, 0] as 6.12's verifier
 * requires, in all 64 bits of R0: the hook is declared to return a long, so
 * that clang does not funnel its answers through 32-bit registers (whose
 * zero-extension makes -EPERM 0xffffffff to the verifier), and the barrier
 * keeps clang from folding these bounds away.
 */
static __always_inline long lsm_ret(long rc)
{
	barrier_var(rc);
	if (rc > 0 || rc < -MAX_ERRNO)
		return -EPERM;
	return rc;
}

/*
 * The exec check, whatever the tier: whether this exec is enforced (counted and
 * reported, or the probe's). `tier` says where it runs: in bprm_check_security
 * (lsm, fmod_ret: once per binfmt level, the exec can still fail) or at
 * sched_process_exec (kill: once, when the exec is done, bprm->file the program
 * that will run).
 */
static __always_inline bool exec_check(struct linux_binprm *bprm, enum mg_tier tier)
{
	struct mg_hit file, name = {};
	struct mg_names_read r;
	struct mg_found f = {};
	enum mg_match unnamed;
	struct mg_config *config;
	enum mg_mode *modep;
	enum mg_config_flag flags;
	__u32 zero = 0;

	config = bpf_map_lookup_elem(&mg_config, &zero);
	modep = bpf_map_lookup_elem(&mg_mode, &zero);
	if (!config || !modep)
		return false;
	count(MG_STAT_CHECKED);
	flags = config->flags;

	/*
	 * In bprm_check_security the hook runs again for a script's interpreter
	 * (bprm->interp then holds its path): the process name was checked on the
	 * first pass, and checking it again would report one exec twice. (The
	 * process name is read first: its loops are then verified once, not once
	 * per file-name outcome.)
	 */
	r.process_whole = false;
	r.process_name.name.name[0] = 0;
	if (tier == MG_TIER_KILL || bprm->interp == bprm->filename)
		read_process_name(bprm, &r);
	unnamed = read_file_name(bprm->file, &r, flags);
	file = lookup(&r.file_name, r.file_whole, flags);
	if (r.process_whole && r.file_whole && same_name(&r.file_name.name, &r.process_name.name))
		name = file;
	else if (r.process_name.name.name[0])
		name = lookup(&r.process_name, r.process_whole, flags);
	/*
	 * The daemon's probe proves the tier it starts is live; it is not a policy
	 * decision. Only that tier's program answers it: while an agent changes
	 * tiers, the old tier's program, still pinned, shares these maps.
	 */
	if (file.kind == MG_NAME_PROBE || name.kind == MG_NAME_PROBE)
		return config->tier == tier;

	f.file = bprm->file;
	f.path = bprm->filename;
	f.hook = MG_HOOK_EXEC;
	f.tier = tier;
	f.matched = &r.file_name.name;
	if (file.kind)
		f.matched_on |= MG_MATCH_FILE;
	if (name.kind)
		f.matched_on |= MG_MATCH_PROCESS_NAME;
	if (f.matched_on == MG_MATCH_PROCESS_NAME)
		f.matched = &r.process_name.name;
	if (f.matched_on) {
		f.prefix_len = file.kind ? file.prefix_len : name.prefix_len;
		/*
		 * Only the file's own name makes it the miner: a listed name given
		 * to a symlink (or passed to exec) says nothing about the file.
		 */
		if ((flags & MG_CONFIG_IDENTITY) && file.kind)
			remember(bprm->file, &r.file_name.name);
	} else if (unnamed) {
		f.matched_on = unnamed;
	} else if ((flags & MG_CONFIG_IDENTITY) && (f.matched = recall(bprm->file))) {
		f.matched_on = MG_MATCH_IDENTITY;
	} else {
		return false;
	}
	return enforced(&f, config, *modep,
			tier == MG_TIER_KILL ? MG_ACTION_KILLED : MG_ACTION_BLOCKED);
}

/*
 * Whether `task` is already being killed: another program on this tracepoint
 * stopped it (the argument check, or during an agent's restart the program it
 * replaces, attached beside the new one for a moment). One kill, one event.
 */
static __always_inline bool kill_pending(struct task_struct *task)
{
	__u64 sigkill = 1ULL << (SIGKILL - 1);

	return (BPF_CORE_READ(task, pending.signal.sig[0]) |
		BPF_CORE_READ(task, signal, shared_pending.signal.sig[0])) &
	       sigkill;
}

/* Tier lsm: the exec fails with EPERM. */
SEC("lsm/bprm_check_security")
long BPF_PROG(mg_bprm_check, struct linux_binprm *bprm, int ret)
{
	/* An earlier BPF LSM program denied: keep its answer. */
	if (ret != 0)
		return lsm_ret(ret);
	return lsm_ret(exec_check(bprm, MG_TIER_LSM) ? -EPERM : 0);
}

/*
 * Tier fmod_ret: the same check on the function that calls every LSM's exec
 * hook, through a BPF trampoline: a kernel without bpf in lsm= runs it, and
 * -EPERM returned here is what the exec returns.
 */
SEC("fmod_ret/security_bprm_check")
long BPF_PROG(mg_bprm_fmod, struct linux_binprm *bprm, int ret)
{
	/* An earlier fmod_ret program denied: keep its answer. */
	if (ret != 0)
		return lsm_ret(ret);
	return lsm_ret(exec_check(bprm, MG_TIER_FMOD_RET) ? -EPERM : 0);
}

/*
 * Tier kill: where neither can run, the exec has happened but the new program
 * has not: SIGKILL, handled on the way back to user mode, ends it before its
 * first instruction.
 */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(mg_exec_kill, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (kill_pending(p))
		return 0;
	if (exec_check(bprm, MG_TIER_KILL))
		bpf_send_signal(SIGKILL);
	return 0;
}

/*
 * Whether an mmap_file call maps a file executable that is not the process's
 * own program (exec maps that itself, and it was checked as the exec): what
 * every mmap_file program here checks, and all it checks.
 */
static __always_inline bool maps_other_file_executable(struct file *file, unsigned long prot)
{
	struct task_struct *task;

	if (!(prot & PROT_EXEC) || !file)
		return false;
	task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, mm, exe_file, f_inode) != file->f_inode;
}

/*
 * A file mapped executable: how the dynamic loader runs a program given to it
 * as an argument (`ld-linux-x86-64.so.2 ./xmrig` never execs ./xmrig) and how
 * LD_PRELOAD brings a library in. Checked by its name and identity like an
 * exec. memfd and unlinked files are not denied here: JIT engines map such
 * memory executable. Whether the mapping is denied (or the probe's).
 */
static __always_inline bool mmap_check(struct file *file, unsigned long prot, enum mg_tier tier)
{
	struct mg_names_read r;
	struct mg_found f = {};
	struct mg_config *config;
	enum mg_mode *modep;
	struct mg_hit hit;
	__u32 zero = 0;

	if (!maps_other_file_executable(file, prot))
		return false;
	config = bpf_map_lookup_elem(&mg_config, &zero);
	modep = bpf_map_lookup_elem(&mg_mode, &zero);
	if (!config || !modep || !(config->flags & MG_CONFIG_MMAP))
		return false;

	read_file_name(file, &r, 0);
	hit = lookup(&r.file_name, r.file_whole, config->flags);
	if (hit.kind == MG_NAME_PROBE)
		return config->tier == tier; /* (see exec_check) */
	f.file = file;
	f.path = (const char *)file->f_path.dentry->d_name.name;
	f.hook = MG_HOOK_MMAP;
	f.tier = tier;
	f.matched = &r.file_name.name;
	if (hit.kind) {
		f.matched_on = MG_MATCH_MMAP;
		f.prefix_len = hit.prefix_len;
		if (config->flags & MG_CONFIG_IDENTITY)
			remember(file, f.matched);
	} else if ((config->flags & MG_CONFIG_IDENTITY) && (f.matched = recall(file))) {
		f.matched_on = MG_MATCH_IDENTITY;
	} else {
		return false;
	}
	return enforced(&f, config, *modep, MG_ACTION_BLOCKED);
}

SEC("lsm/mmap_file")
long BPF_PROG(mg_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	      unsigned long mmap_flags, int ret)
{
	if (ret != 0)
		return lsm_ret(ret);
	return lsm_ret(mmap_check(file, prot, MG_TIER_LSM) ? -EPERM : 0);
}

/* The function takes the protection asked for; PROT_EXEC is in it as in the final one. */
SEC("fmod_ret/security_mmap_file")
long BPF_PROG(mg_mmap_fmod, struct file *file, unsigned long prot, unsigned long mmap_flags,
	      int ret)
{
	if (ret != 0)
		return lsm_ret(ret);
	return lsm_ret(mmap_check(file, prot, MG_TIER_FMOD_RET) ? -EPERM : 0);
}

#include "argv.bpf.h"
#include "hash.bpf.h"
#include "drift.bpf.h"
#include "behavior.bpf.h"
#include "tuning.bpf.h"

/*
 * Run once by the agent (a task iterator): writes the mount namespace inode of
 * PID 1, which processes of the host share and containers do not. Read here
 * because the agent, under its hardened unit, may not open /proc/1/ns/mnt.
 */
SEC("iter/task")
int mg_host_mnt_ns(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	__u32 inum;

	if (!task || task->pid != 1)
		return 0;
	inum = mnt_ns_of(task);
	bpf_seq_write(ctx->meta->seq, &inum, sizeof(inum));
	return 0;
}
