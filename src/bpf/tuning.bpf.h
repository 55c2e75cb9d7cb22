/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Behaviour at start, included by minerguard.bpf.c: what a RandomX miner tunes
 * before it hashes. XMRig writes model-specific registers (the "MSR mod": the
 * prefetchers off, some 15% more hash rate), enabling writes first through the
 * msr module's allow_writes parameter, and reserves huge pages for its 2 GiB
 * dataset. Both are a file opened for writing, seen in file_open (lsm) or
 * security_file_open (fmod_ret): the kill tier has no such check, an open
 * cannot be killed before it returns.
 *
 * Files are recognised by what they are, not by the path opened: an MSR
 * device is any char device of major 202 (whatever the node's name or
 * directory), the module parameter and the huge-page files by their names
 * and parent directories' names on sysfs or procfs (wherever mounted). The
 * common case, an open for reading, costs one load.
 */
#ifndef MINERGUARD_TUNING_BPF_H
#define MINERGUARD_TUNING_BPF_H

#define FMODE_WRITE 0x2
#define S_IFMT 00170000
#define S_IFCHR 0020000
/* include/uapi/linux/major.h: MSR_MAJOR; kdev_t: the kernel's dev_t keeps the minor in 20 bits */
#define MSR_MAJOR 202
#define MINORBITS 20
#define SYSFS_MAGIC 0x62656572
#define PROC_SUPER_MAGIC 0x9fa0
/* Longest file or directory name compared here, NUL included ("nr_overcommit_hugepages"). */
#define TUNING_NAME_LEN 32
/* Cgroup levels walked up to find an allowed one (kubepods' containers sit at 4 or 5). */
#define CGROUP_DEPTH 16

/* Programs and cgroups allowed to tune (struct mg_allow_key -> 1). Pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_TUNING_ALLOW_CAPACITY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_allow_key);
	__type(value, __u32);
} mg_tuning_allow SEC(".maps");

enum tuning_file {
	TUNING_NONE = 0,
	TUNING_MSR_DEVICE,
	TUNING_MSR_PARAMETER,
	TUNING_HUGEPAGES,
};

/* The name each kind of file is reported as (matched_name). */
const struct mg_name mg_msr_device_name = { .name = "/dev/cpu/*/msr" };
const struct mg_name mg_msr_parameter_name = { .name = "/sys/module/msr/parameters/allow_writes" };
const struct mg_name mg_hugepages_name = { .name = "nr_hugepages" };

/* Whether the dentry's name is `lit` (`len`: its size, NUL included), or starts with it (`prefix`). */
static __always_inline bool dname_is(struct dentry *d, const char *lit, int len, bool prefix)
{
	char buf[TUNING_NAME_LEN];
	long n = bpf_probe_read_kernel_str(buf, sizeof(buf), BPF_CORE_READ(d, d_name.name));

	if (n <= 0 || (prefix ? n < len : n != len))
		return false;
	for (int i = 0; i < TUNING_NAME_LEN; i++) {
		if (i >= len - (prefix ? 1 : 0))
			break;
		if (buf[i] != lit[i])
			return false;
	}
	return true;
}
#define NAME_IS(d, lit) dname_is(d, lit, sizeof(lit), false)
#define NAME_STARTS(d, lit) dname_is(d, lit, sizeof(lit), true)

/* What `file` is, of the files a miner tunes through. */
static __always_inline enum tuning_file tuning_file(struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct dentry *d, *parent;
	unsigned long magic;

	if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) == S_IFCHR)
		return (BPF_CORE_READ(inode, i_rdev) >> MINORBITS) == MSR_MAJOR ? TUNING_MSR_DEVICE
										 : TUNING_NONE;
	magic = BPF_CORE_READ(inode, i_sb, s_magic);
	if (magic != SYSFS_MAGIC && magic != PROC_SUPER_MAGIC)
		return TUNING_NONE;
	d = BPF_CORE_READ(file, f_path.dentry);
	parent = BPF_CORE_READ(d, d_parent);
	if (magic == SYSFS_MAGIC) {
		/* /sys/module/msr/parameters/allow_writes */
		if (NAME_IS(d, "allow_writes") && NAME_IS(parent, "parameters") &&
		    NAME_IS(BPF_CORE_READ(parent, d_parent), "msr"))
			return TUNING_MSR_PARAMETER;
		/* /sys/kernel/mm/hugepages/hugepages-2048kB/..., /sys/devices/system/node/nodeN/hugepages/... */
		if ((NAME_IS(d, "nr_hugepages") || NAME_IS(d, "nr_overcommit_hugepages")) &&
		    NAME_STARTS(parent, "hugepages-"))
			return TUNING_HUGEPAGES;
		return TUNING_NONE;
	}
	/* /proc/sys/vm/: what sysctl vm.nr_hugepages=N writes */
	if ((NAME_IS(d, "nr_hugepages") || NAME_IS(d, "nr_hugepages_mempolicy") ||
	     NAME_IS(d, "nr_overcommit_hugepages")) &&
	    NAME_IS(parent, "vm"))
		return TUNING_HUGEPAGES;
	return TUNING_NONE;
}

/* kernfs_node.parent became __parent in 6.15. */
struct kernfs_node___old {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	return BPF_CORE_READ((struct kernfs_node___old *)kn, parent);
}

/* Whether the caller's program, or its cgroup or one above it, is allowed to tune. */
static __always_inline bool tuning_allowed(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct inode *exe = BPF_CORE_READ(task, mm, exe_file, f_inode);
	struct mg_allow_key k = {};
	struct kernfs_node *kn;

	if (exe) {
		k.kind = MG_ALLOW_PROGRAM;
		k.id = BPF_CORE_READ(exe, i_ino);
		k.dev = BPF_CORE_READ(exe, i_sb, s_dev);
		if (bpf_map_lookup_elem(&mg_tuning_allow, &k))
			return true;
	}
	k.kind = MG_ALLOW_CGROUP;
	k.dev = 0;
	kn = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
	for (int i = 0; i < CGROUP_DEPTH; i++) {
		if (!kn)
			break;
		k.id = BPF_CORE_READ(kn, id);
		if (bpf_map_lookup_elem(&mg_tuning_allow, &k))
			return true;
		kn = kn_parent(kn);
	}
	return false;
}

/* Whether this open is denied: an MSR or huge-page file opened for writing, not allowed. */
static __always_inline bool open_check(struct file *file, enum mg_tier tier)
{
	struct mg_config *config;
	struct mg_found f = {};
	enum tuning_file kind;
	enum mg_mode *modep;
	__u32 zero = 0, on, audit, enforce;

	/* Reading (almost every open): nothing to do. */
	if (!(BPF_CORE_READ(file, f_mode) & FMODE_WRITE))
		return false;
	kind = tuning_file(file);
	if (kind == TUNING_NONE)
		return false;
	config = bpf_map_lookup_elem(&mg_config, &zero);
	modep = bpf_map_lookup_elem(&mg_mode, &zero);
	if (!config || !modep)
		return false;
	if (kind == TUNING_HUGEPAGES) {
		on = MG_CONFIG_HUGEPAGES;
		audit = MG_CONFIG_HUGEPAGES_AUDIT;
		enforce = MG_CONFIG_HUGEPAGES_ENFORCE;
		f.matched_on = MG_MATCH_HUGEPAGES;
		f.matched = &mg_hugepages_name;
		/* The host's own tuning (a node prepared for huge pages) is not a miner's. */
		if (mnt_ns_of((struct task_struct *)bpf_get_current_task()) == config->host_mnt_ns)
			return false;
	} else {
		on = MG_CONFIG_MSR;
		audit = MG_CONFIG_MSR_AUDIT;
		enforce = MG_CONFIG_MSR_ENFORCE;
		f.matched_on = MG_MATCH_MSR;
		f.matched = kind == TUNING_MSR_DEVICE ? &mg_msr_device_name : &mg_msr_parameter_name;
	}
	if (!(config->flags & on) || tuning_allowed())
		return false;
	f.file = file;
	f.path = (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name);
	f.hook = MG_HOOK_OPEN;
	f.tier = tier;
	f.audit_only = config->flags & audit;
	f.enforce_always = config->flags & enforce;
	return enforced(&f, config, *modep, MG_ACTION_BLOCKED);
}

SEC("lsm/file_open")
long BPF_PROG(mg_file_open, struct file *file, int ret)
{
	if (ret != 0)
		return lsm_ret(ret);
	return lsm_ret(open_check(file, MG_TIER_LSM) ? -EPERM : 0);
}

SEC("fmod_ret/security_file_open")
long BPF_PROG(mg_open_fmod, struct file *file, int ret)
{
	if (ret != 0)
		return lsm_ret(ret);
	return lsm_ret(open_check(file, MG_TIER_FMOD_RET) ? -EPERM : 0);
}

#endif /* MINERGUARD_TUNING_BPF_H */
