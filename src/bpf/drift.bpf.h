/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Drift in containers, included by minerguard.bpf.c (it shares its maps and
 * helpers): a file executed, or mapped executable, from an overlayfs upper
 * layer is not part of the container's image. containerd and CRI-O mount a
 * container's root as overlayfs, image layers below (read-only), the
 * container's writable layer above: a file created there, or an image file
 * changed (copied up), has an upper dentry. Reported ([drift] mode = "audit")
 * or denied with EPERM ("block", in enforce mode), unless its path starts with
 * an allowed prefix. Overlay is a module on Debian: its types come from the
 * module's BTF, so these programs load only where it is there (5.11+, overlay
 * loaded: attach::drift_supported); attached after the name checks.
 */
#ifndef MINERGUARD_DRIFT_BPF_H
#define MINERGUARD_DRIFT_BPF_H

#define OVERLAYFS_SUPER_MAGIC 0x794c7630

/* Allowed path prefixes ("/usr/local/bin/"); the value is the prefix's length. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MG_DRIFT_ALLOW_CAPACITY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_prefix);
	__type(value, __u32);
} mg_drift_allow SEC(".maps");

/* Whether the file is an overlayfs file with an upper dentry: in the writable layer. */
static __always_inline bool in_upper_layer(struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct ovl_inode *ovl;

	if (!bpf_core_type_exists(struct ovl_inode))
		return false;
	if (BPF_CORE_READ(inode, i_sb, s_magic) != OVERLAYFS_SUPER_MAGIC)
		return false;
	/* container_of(inode, struct ovl_inode, vfs_inode), with the module's layout */
	ovl = (void *)inode - bpf_core_field_offset(struct ovl_inode, vfs_inode);
	return BPF_CORE_READ(ovl, __upperdentry) != NULL;
}

/*
 * -EPERM for a file from an upper layer whose path is not allowed (block mode,
 * enforce), else 0. The path is the file's own (bpf_d_path: as the process
 * sees it, no ".." left), so an allowed prefix cannot be walked out of.
 */
static __always_inline long drift_check(struct file *file, enum mg_hook hook)
{
	struct mg_found f = {};
	struct mg_config *config;
	struct mg_prefix key;
	char path[MG_PATH_LEN];
	enum mg_mode *modep;
	__u32 zero = 0;

	config = bpf_map_lookup_elem(&mg_config, &zero);
	modep = bpf_map_lookup_elem(&mg_mode, &zero);
	if (!config || !modep || !(config->flags & MG_CONFIG_DRIFT))
		return 0;
	if (!in_upper_layer(file))
		return 0;
	path[0] = 0;
	if (bpf_d_path(&file->f_path, path, sizeof(path)) < 0)
		path[0] = 0;
	__builtin_memset(&key.name, 0, sizeof(key.name));
	bpf_probe_read_kernel_str(key.name.name, sizeof(key.name.name), path);
	key.prefixlen = MG_NAME_LEN * 8;
	if (path[0] == '/' && bpf_map_lookup_elem(&mg_drift_allow, &key))
		return 0;
	f.file = file;
	f.path = path;
	f.tier = MG_TIER_LSM;
	f.hook = hook;
	f.matched = &key.name;
	f.matched_on = MG_MATCH_DRIFT;
	f.audit_only = config->flags & MG_CONFIG_DRIFT_AUDIT;
	return enforced(&f, config, *modep, MG_ACTION_BLOCKED) ? -EPERM : 0;
}

SEC("lsm/bprm_check_security")
long BPF_PROG(mg_bprm_drift, struct linux_binprm *bprm, int ret)
{
	if (ret != 0)
		return lsm_ret(ret);
	/* The interpreter's pass (a script in the upper layer was checked on the first). */
	if (bprm->interp != bprm->filename)
		return 0;
	return lsm_ret(drift_check(bprm->file, MG_HOOK_EXEC));
}

SEC("lsm/mmap_file")
long BPF_PROG(mg_mmap_drift, struct file *file, unsigned long reqprot, unsigned long prot,
	      unsigned long mmap_flags, int ret)
{
	if (ret != 0)
		return lsm_ret(ret);
	if (!maps_other_file_executable(file, prot))
		return 0;
	return lsm_ret(drift_check(file, MG_HOOK_MMAP));
}

#endif /* MINERGUARD_DRIFT_BPF_H */
