/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel/userspace contract: every type and constant that both the BPF
 * program and the Rust daemon read, defined here only. The daemon gets them
 * through the skeleton's generated `types` module (from the object's BTF) and
 * src/contract.rs; a test there compares the size and offset of every field
 * of every struct below with the compiled object, so a layout change is a
 * failing test, never a silent skew.
 *
 * Every type here must be reachable from the object's BTF: the program
 * declares one unused global of each (see mg_contract in minerguard.bpf.c).
 */
#ifndef MINERGUARD_H
#define MINERGUARD_H

/*
 * Sizes and bounds, as an enum so that they reach the generated Rust types
 * (a #define would not): the daemon reads every limit from here.
 */
enum mg_limit {
	/*
	 * Longest name the names map holds, NUL included. Real miner release
	 * names are well under this (the longest known is 22 bytes); a file whose
	 * name is longer cannot equal a listed name, so the program skips the
	 * lookup instead of matching a truncated prefix.
	 */
	MG_NAME_LEN = 64,
	/* The path as passed to exec, as far as the event reports it. */
	MG_PATH_LEN = 256,
	MG_COMM_LEN = 16,
	/* Leaf name of a cgroup: fits "cri-containerd-<64 hex>.scope" (85 bytes). */
	MG_CGROUP_NAME_LEN = 128,
	/* The most entries a policy may list (the policy validator's bounds). */
	MG_MAX_NAMES = 65536,
	MG_MAX_PREFIXES = 4096,
	MG_MAX_MEMFD_ALLOW = 256,
	/*
	 * Files remembered after a block (least recently used forgotten first):
	 * each is a miner already caught once, so a node seldom holds more than a
	 * handful.
	 */
	MG_MAX_IDENTITIES = 16384,
	/*
	 * The argument layer's lists: rules (schemes, flags, pool options,
	 * options with values) in one trie, option values in a hash, pool domains
	 * in a trie of reversed names. A rule or value is at most MG_NAME_LEN - 1
	 * bytes, like a name.
	 */
	MG_MAX_ARG_RULES = 1024,
	MG_MAX_ARG_VALUES = 1024,
	MG_MAX_DOMAINS = 4096,
	MG_ARG_RULES_CAPACITY = 2 * MG_MAX_ARG_RULES + 1,
	MG_ARG_VALUES_CAPACITY = 2 * MG_MAX_ARG_VALUES,
	MG_DOMAINS_CAPACITY = 2 * MG_MAX_DOMAINS,
	/*
	 * How much of the arguments is read: MG_MAX_ARG_CHUNKS pieces of at most
	 * MG_NAME_LEN - 1 bytes (an argument longer than that takes several, and
	 * only its first piece is matched). Arguments past that are not checked.
	 */
	MG_MAX_ARG_CHUNKS = 64,
	/*
	 * The command line an event reports: the first MG_CMDLINE_ARGS arguments,
	 * NUL-separated as in /proc/PID/cmdline, within MG_CMDLINE_LEN bytes. The
	 * event's buffer is twice that: each argument is copied with the room left
	 * as its bound, and the verifier takes the largest offset plus the largest
	 * size (a power of two, so that a mask proves the offset).
	 */
	MG_CMDLINE_LEN = 256,
	MG_CMDLINE_BUF = 2 * MG_CMDLINE_LEN,
	MG_CMDLINE_ARGS = 32,
	/* Listed SHA-256 digests, and files whose digest is kept (LRU). */
	MG_MAX_HASHES = 4096,
	MG_HASHES_CAPACITY = 2 * MG_MAX_HASHES,
	MG_MAX_HASHED_FILES = 16384,
	MG_SHA256_LEN = 32,
	/* Path prefixes drift allows (matched on a file's first MG_NAME_LEN - 1 path bytes). */
	MG_MAX_DRIFT_ALLOW = 256,
	MG_DRIFT_ALLOW_CAPACITY = 2 * MG_MAX_DRIFT_ALLOW,
	/*
	 * The RandomX fingerprint: a thread whose saved SSE rounding mode, seen
	 * at its context switches, changes from one non-default mode to another
	 * MG_RANDOMX_CHANGES times within MG_RANDOMX_WINDOW_MS. RandomX's CFROUND
	 * sets one of the four modes at random thousands of times a second: half
	 * of its switches show such a change, so it is seen after about 32 of its
	 * switches (well under a second on a busy CPU; a thread alone on an idle
	 * CPU is seldom switched out). The window keeps a program that changes
	 * its rounding mode now and then from adding up over hours. Threads
	 * watched at once (LRU) and processes reported (LRU: once each).
	 */
	MG_RANDOMX_CHANGES = 16,
	MG_RANDOMX_WINDOW_MS = 60000,
	MG_MAX_FPU_WATCHED = 16384,
	MG_MAX_FPU_REPORTED = 4096,
	/* Programs and cgroups allowed to write MSRs and reserve huge pages ([behavior] allow_*). */
	MG_MAX_TUNING_ALLOW = 256,
	MG_TUNING_ALLOW_CAPACITY = 2 * MG_MAX_TUNING_ALLOW,
	/*
	 * The maps' sizes: a reload adds the new policy's entries before it
	 * removes the old one's, so two of the largest policies must fit at once,
	 * plus the probe's name. With BPF_F_NO_PREALLOC, memory follows the
	 * entries present, not these bounds.
	 */
	MG_NAMES_CAPACITY = 2 * MG_MAX_NAMES + 1,
	MG_PREFIXES_CAPACITY = 2 * MG_MAX_PREFIXES,
	MG_MEMFD_ALLOW_CAPACITY = 2 * MG_MAX_MEMFD_ALLOW,
};

/* Enforce is 0 so that a config entry never written fails closed. */
enum mg_mode {
	MG_MODE_ENFORCE = 0,
	MG_MODE_AUDIT = 1,
};

enum mg_action {
	MG_ACTION_AUDITED = 1,
	MG_ACTION_BLOCKED = 2, /* the exec or mapping failed with EPERM */
	/* SIGKILL before the new program's first instruction (past the point where exec can fail) */
	MG_ACTION_KILLED = 3,
};

/* Which of the two names of an exec matched a listed name (a bit each). */
enum mg_match {
	MG_MATCH_FILE = 1, /* bprm->file's dentry: the file really executed */
	MG_MATCH_PROCESS_NAME = 2, /* basename of bprm->filename: the new comm */
	MG_MATCH_BOTH = 3,
	/* No name matched, but the file is a memfd and memfd execs are blocked. */
	MG_MATCH_MEMFD = 4,
	/*
	 * No name matched, but the file has no name on disk (O_TMPFILE, deleted
	 * after open) and such execs are blocked with memfd execs.
	 */
	MG_MATCH_UNLINKED = 8,
	/*
	 * No name matched, but the file itself (its inode, unchanged since) was
	 * blocked or audited before under a listed name: a hardlink, a move or a
	 * symlink does not make it another program.
	 */
	MG_MATCH_IDENTITY = 16,
	/* A file mapped executable (by the dynamic loader, LD_PRELOAD) has a listed name. */
	MG_MATCH_MMAP = 32,
	/* An argument the new program received is a miner's (pool, flag, option value). */
	MG_MATCH_ARGV = 64,
	/*
	 * The file's SHA-256 (through IMA) is listed; the event's matched_name
	 * holds the MG_SHA256_LEN bytes of the digest, not text.
	 */
	MG_MATCH_HASH = 128,
	/*
	 * The file is in an overlayfs upper layer (a container's writable layer:
	 * created or changed after the container started), not allowed by path.
	 */
	MG_MATCH_DRIFT = 256,
	/*
	 * The process computes like RandomX (Monero's proof of work): its
	 * rounding mode keeps changing (MG_RANDOMX_CHANGES, MG_RANDOMX_WINDOW_MS);
	 * the event's observed_changes and observed_ms say what was seen.
	 */
	MG_MATCH_RANDOMX = 512,
	/*
	 * A model-specific register device (char major 202, /dev/cpu/N/msr,
	 * whatever the node's name) or the msr module's allow_writes parameter
	 * opened for writing: how XMRig turns off the prefetchers for RandomX.
	 */
	MG_MATCH_MSR = 1024,
	/*
	 * A huge-page reservation file (/proc/sys/vm/nr_hugepages and its kin,
	 * /sys/.../hugepages-<size>/nr_hugepages) opened for writing from a
	 * container: how a miner reserves the pages RandomX's dataset wants.
	 */
	MG_MATCH_HUGEPAGES = 2048,
};

/* Where a check ran. */
enum mg_hook {
	MG_HOOK_EXEC = 0, /* bprm_check_security: an exec */
	MG_HOOK_MMAP = 1, /* mmap_file with PROT_EXEC: a file mapped executable */
	MG_HOOK_SWITCH = 2, /* x86_fpu_regs_activated: a thread switched back in, its FPU state restored */
	MG_HOOK_OPEN = 3, /* file_open: a file opened for writing */
};

/*
 * How the exec check enforces: the attach point that acted. The agent takes
 * the strongest one the kernel proves it can run (attach.rs).
 */
enum mg_tier {
	MG_TIER_LSM = 1, /* lsm/bprm_check_security: the exec fails with EPERM */
	/* fmod_ret/security_bprm_check: EPERM too, without bpf in lsm= (needs trampolines) */
	MG_TIER_FMOD_RET = 2,
	/* tp_btf/sched_process_exec: SIGKILL before the new program's first instruction */
	MG_TIER_KILL = 3,
};

enum mg_scope {
	MG_SCOPE_ALL = 0,
	/* Processes in the host's mount namespace are reported, never blocked. */
	MG_SCOPE_CONTAINERS = 1,
};

/* Bits of mg_config.flags. */
enum mg_config_flag {
	/* deny execs of a memfd not in the allow map, and of any other file with no name on disk */
	MG_CONFIG_MEMFD_BLOCK = 1,
	MG_CONFIG_PREFIXES = 2, /* the prefixes map has entries: worth a lookup */
	/* remember a file blocked by name and check every exec against those remembered */
	MG_CONFIG_IDENTITY = 4,
	/* check files mapped executable (loader launches, preloaded libraries) too */
	MG_CONFIG_MMAP = 8,
	/* check the arguments of every exec */
	MG_CONFIG_ARGV = 16,
	/* the hashes map has entries: hash the files executed or mapped executable */
	MG_CONFIG_HASH = 32,
	/* check files executed or mapped executable from an overlayfs upper layer */
	MG_CONFIG_DRIFT = 64,
	/* ...and only report them, whatever the mode ([drift] mode = "audit") */
	MG_CONFIG_DRIFT_AUDIT = 128,
	/* watch for RandomX's rounding-mode pattern ([behavior] randomx not "off") */
	MG_CONFIG_RANDOMX = 256,
	/* ...only report it, whatever the mode ([behavior] randomx = "audit") */
	MG_CONFIG_RANDOMX_AUDIT = 512,
	/* ...kill, whatever the mode ([behavior] randomx = "enforce") */
	MG_CONFIG_RANDOMX_ENFORCE = 1024,
	/* deny or report MSR writes ([behavior] msr not "off"); _AUDIT, _ENFORCE as for randomx */
	MG_CONFIG_MSR = 2048,
	MG_CONFIG_MSR_AUDIT = 4096,
	MG_CONFIG_MSR_ENFORCE = 8192,
	/* deny or report huge-page reservations from containers ([behavior] hugepages) */
	MG_CONFIG_HUGEPAGES = 16384,
	MG_CONFIG_HUGEPAGES_AUDIT = 32768,
	MG_CONFIG_HUGEPAGES_ENFORCE = 65536,
};

/* What an entry of the tuning allow map names. */
enum mg_allow_kind {
	/* a program file: the caller's executable (its inode) */
	MG_ALLOW_PROGRAM = 1,
	/* a cgroup v2 (its id): the caller's cgroup or one of its ancestors */
	MG_ALLOW_CGROUP = 2,
};

/* What an entry of the argument rules trie means when an argument starts with it. */
enum mg_arg_kind {
	/* a pool URL scheme ("stratum+tcp://"): the argument is a miner's, whatever follows */
	MG_ARG_PREFIX = 1,
	/* a flag only miners use: the argument is it, or it followed by '=' and a value */
	MG_ARG_FLAG = 2,
	/*
	 * an option whose value is a pool (-o, --url): the value (next argument,
	 * after '=', or glued to a two-letter option) is matched against the
	 * schemes and the pool domains
	 */
	MG_ARG_POOL = 3,
	/* an option whose value is looked up in the values map under this rule's id */
	MG_ARG_OPTION = 4,
	/* the agent's functional probe: always killed, never reported */
	MG_ARG_PROBE = 5,
};

/* Value of an entry in the names map. */
enum mg_name_kind {
	MG_NAME_LISTED = 1,
	/* The daemon's functional probe: always denied, never reported. */
	MG_NAME_PROBE = 2,
};

/* Index of the per-CPU counters in the stats map. */
enum mg_stat {
	MG_STAT_CHECKED = 0, /* execs the hook looked at */
	MG_STAT_BLOCKED = 1,
	MG_STAT_AUDITED = 2,
	MG_STAT_LOST = 3, /* events that could not be reserved in the ring buffer */
	MG_STAT_KILLED = 4, /* processes killed before their first instruction */
	MG_STAT_MAX = 5,
};

struct mg_name {
	char name[MG_NAME_LEN];
};

/* Key of the prefixes LPM trie: `prefixlen` bits of `name`. */
struct mg_prefix {
	__u32 prefixlen;
	struct mg_name name;
};

/*
 * Single entry of the config map, written whole by the agent only. The mode
 * lives in a map of its own (mg_mode, one enum mg_mode) so that `minerguard
 * mode` never rewrites, and so never puts back an old copy of, the rest.
 * `agent_pid` tells `minerguard status` and a second agent which daemon, if
 * any, owns the pinned program (0: none).
 */
struct mg_config {
	__u32 agent_pid;
	enum mg_scope scope;
	enum mg_config_flag flags; /* a bit each */
	__u32 host_mnt_ns; /* mount namespace inode of PID 1, read in the kernel */
	enum mg_tier tier; /* the exec check's tier in force (written by the agent, for status) */
};

/* Value of the argument rules trie (keyed by struct mg_prefix). */
struct mg_arg_rule {
	__u32 len; /* the entry's length in bytes */
	enum mg_arg_kind kind;
	__u32 id; /* MG_ARG_OPTION: the key of its values in the values map */
};

/*
 * Key of the argument values trie: an option's id and one value listed for it.
 * An entry's prefixlen covers the id, the value and its NUL: an exact match.
 */
struct mg_arg_value {
	__u32 prefixlen;
	__u32 id;
	struct mg_name value;
};

/* Key of the hashes map: a listed SHA-256 digest. */
struct mg_sha256 {
	__u8 digest[MG_SHA256_LEN];
};

/*
 * Value of the hashed-files map (keyed by struct mg_file_key): a file's digest
 * while its mtime and size stay as they were when it was hashed, so that an
 * unchanged file is hashed once, whatever the policy lists later.
 */
struct mg_hashed {
	__s64 mtime_sec;
	__u32 mtime_nsec;
	__u32 ctime_nsec;
	__s64 ctime_sec;
	__s64 size;
	struct mg_sha256 sha256;
};

/*
 * Key of the identities map: one file, as long as it exists. The generation
 * tells apart two files that reuse an inode number one after the other (on
 * filesystems that set it; elsewhere the mtime in the value does).
 */
struct mg_file_key {
	__u64 ino;
	__u32 dev; /* the superblock's s_dev */
	__u32 generation;
};

/*
 * Value of the identities map: what the file was when it was blocked. A
 * changed mtime or size means new content: the entry is then forgotten.
 */
struct mg_identity {
	__s64 mtime_sec;
	__u32 mtime_nsec;
	__u32 reserved;
	__s64 size;
	struct mg_name name; /* the listed name or pattern it was blocked as */
};

/*
 * Key of the tuning allow map: a program, by the inode of its file (resolved
 * from its path by the agent when it applies the policy), or a cgroup by id.
 */
struct mg_allow_key {
	__u64 id; /* MG_ALLOW_PROGRAM: inode number; MG_ALLOW_CGROUP: cgroup id */
	__u32 dev; /* MG_ALLOW_PROGRAM: the superblock's s_dev (kernel encoding); else 0 */
	enum mg_allow_kind kind;
};

/* One thread's rounding modes as its context switches showed them (mg_fpu_watch). */
struct mg_fpu_watch {
	__u64 window_start_ns; /* boot time of the first change counted */
	__u32 changes; /* counted since window_start_ns */
	__u32 last_rc; /* the last non-default rounding mode seen (MXCSR bits 13-14) */
};

struct mg_event {
	__u64 boot_ns; /* bpf_ktime_get_boot_ns() at the check */
	__u64 cgroup_id; /* cgroup v2 id of the caller */
	__u32 pid; /* tgid: the process id users see */
	__u32 tid;
	__u32 ppid; /* real parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 mnt_ns; /* mount namespace inode number */
	enum mg_action action;
	enum mg_mode mode; /* at the time of the check */
	enum mg_match matched_on;
	__u8 matched_prefix; /* matched_name is a prefix pattern */
	__u8 host; /* the caller is in the host's mount namespace */
	__u8 hook; /* enum mg_hook */
	__u8 tier; /* enum mg_tier: the attach point that acted (arguments: always the kill tier) */
	char comm[MG_COMM_LEN]; /* caller's comm (the new one is not set yet) */
	char matched_name[MG_NAME_LEN];
	char file_name[MG_NAME_LEN]; /* bprm->file's dentry name */
	/* bprm->filename, as passed to exec; for a mapping, the file's name */
	char filename[MG_PATH_LEN];
	/* The caller's cgroup v2 leaf name, read at the exec: still right when the
	 * container is gone by the time the event is read. */
	char cgroup_name[MG_CGROUP_NAME_LEN];
	/* MG_MATCH_RANDOMX: the changes seen, and over how long */
	__u32 observed_changes;
	__u32 observed_ms;
	/*
	 * The command line: for an exec stopped where it can still fail, the
	 * arguments the caller passes to it (read from its memory, where an
	 * exec's arguments still are); otherwise the process's own (its argument
	 * area). Bytes used, NULs between arguments; cut: more than was read.
	 */
	__u32 cmdline_len;
	__u32 cmdline_cut;
	char cmdline[MG_CMDLINE_BUF];
};

#endif /* MINERGUARD_H */
