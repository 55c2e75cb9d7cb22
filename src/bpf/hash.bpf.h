/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The content-hash layer, included by minerguard.bpf.c (it shares its maps
 * and helpers): an exec, or an executable mapping, of a file whose SHA-256 is
 * listed fails with EPERM whatever the file is called. The digest comes from
 * IMA (bpf_ima_file_hash, 5.18+, CONFIG_IMA), which only sleepable programs
 * may call: these two programs are loaded only where the kernel has both, and
 * attached after the name checks (a file denied by name is not hashed). Each
 * file is hashed once while its ctime, mtime and size stay the same; the digest
 * is kept, so a policy that lists it later needs no new hash. Sleepable
 * programs use preallocated maps only (as kernels before 6.1 require).
 */
#ifndef MINERGUARD_HASH_BPF_H
#define MINERGUARD_HASH_BPF_H

/* Listed digests; the value is an enum mg_name_kind (the probe's is never reported). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_HASHES_CAPACITY);
	__type(key, struct mg_sha256);
	__type(value, enum mg_name_kind);
} mg_hashes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MG_MAX_HASHED_FILES);
	__type(key, struct mg_file_key);
	__type(value, struct mg_hashed);
} mg_hashed_files SEC(".maps");

/* struct inode's ctime before 6.11, in the two spellings it had. */
struct inode___ctime_timespec {
	struct timespec64 i_ctime; /* up to 6.5 */
} __attribute__((preserve_access_index));

struct inode___ctime_private {
	struct timespec64 __i_ctime; /* 6.6 to 6.10 */
} __attribute__((preserve_access_index));

/*
 * The ctime, which only the kernel sets (any write, or an mtime set back,
 * moves it): with mtime and size, what says the content may have changed.
 */
static __always_inline void file_ctime(struct inode *inode, __s64 *sec, __u32 *nsec)
{
	struct inode___ctime_private *private_ts = (void *)inode;
	struct inode___ctime_timespec *ts = (void *)inode;

	if (bpf_core_field_exists(inode->i_ctime_sec)) {
		*sec = BPF_CORE_READ(inode, i_ctime_sec);
		*nsec = BPF_CORE_READ(inode, i_ctime_nsec);
	} else if (bpf_core_field_exists(private_ts->__i_ctime)) {
		*sec = BPF_CORE_READ(private_ts, __i_ctime.tv_sec);
		*nsec = BPF_CORE_READ(private_ts, __i_ctime.tv_nsec);
	} else {
		*sec = BPF_CORE_READ(ts, i_ctime.tv_sec);
		*nsec = BPF_CORE_READ(ts, i_ctime.tv_nsec);
	}
}

/*
 * The verdict on a file by its digest: -EPERM when listed (enforce), else 0.
 * Kept in one function for both hooks; the digest is hashed only when the
 * file is new or changed.
 */
static __always_inline long hash_check(struct file *file, const char *path, enum mg_hook hook)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct mg_hashed now = {}, *seen;
	struct mg_file_key k = {};
	struct mg_found f = {};
	struct mg_name matched = {};
	struct mg_config *config;
	enum mg_name_kind *kind;
	enum mg_mode *modep;
	__u32 zero = 0;

	config = bpf_map_lookup_elem(&mg_config, &zero);
	modep = bpf_map_lookup_elem(&mg_mode, &zero);
	if (!config || !modep || !(config->flags & MG_CONFIG_HASH))
		return 0;
	file_key(inode, &k);
	file_state(inode, &now.mtime_sec, &now.mtime_nsec, &now.size);
	file_ctime(inode, &now.ctime_sec, &now.ctime_nsec);
	seen = bpf_map_lookup_elem(&mg_hashed_files, &k);
	if (seen && seen->mtime_sec == now.mtime_sec && seen->mtime_nsec == now.mtime_nsec &&
	    seen->ctime_sec == now.ctime_sec && seen->ctime_nsec == now.ctime_nsec &&
	    seen->size == now.size) {
		__builtin_memcpy(&now.sha256, &seen->sha256, sizeof(now.sha256));
	} else {
		if (bpf_ima_file_hash(file, now.sha256.digest, sizeof(now.sha256.digest)) !=
		    HASH_ALGO_SHA256)
			return 0;
		bpf_map_update_elem(&mg_hashed_files, &k, &now, BPF_ANY);
	}
	kind = bpf_map_lookup_elem(&mg_hashes, &now.sha256);
	if (!kind)
		return 0;
	if (*kind == MG_NAME_PROBE)
		return -EPERM;
	__builtin_memcpy(matched.name, now.sha256.digest, sizeof(now.sha256.digest));
	f.file = file;
	f.path = path;
	f.tier = MG_TIER_LSM;
	f.hook = hook;
	f.matched = &matched;
	f.matched_on = MG_MATCH_HASH;
	return enforced(&f, config, *modep, MG_ACTION_BLOCKED) ? -EPERM : 0;
}

SEC("lsm.s/bprm_check_security")
long BPF_PROG(mg_bprm_hash, struct linux_binprm *bprm, int ret)
{
	if (ret != 0)
		return lsm_ret(ret);
	return lsm_ret(hash_check(bprm->file, bprm->filename, MG_HOOK_EXEC));
}

SEC("lsm.s/mmap_file")
long BPF_PROG(mg_mmap_hash, struct file *file, unsigned long reqprot, unsigned long prot,
	      unsigned long mmap_flags, int ret)
{
	if (ret != 0)
		return lsm_ret(ret);
	if (!maps_other_file_executable(file, prot))
		return 0;
	return lsm_ret(hash_check(file, (const char *)file->f_path.dentry->d_name.name,
				  MG_HOOK_MMAP));
}

#endif /* MINERGUARD_HASH_BPF_H */
