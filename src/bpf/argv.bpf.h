/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The argument layer, included by minerguard.bpf.c (it shares its maps and
 * helpers). The arguments an exec passes are not readable where the exec can
 * still fail: bprm_check_security runs while they sit in the new, not yet
 * current, address space. Once the exec has replaced the program
 * (sched_process_exec) they are in the new process's memory, final: exec has
 * ended every other thread, and the new program has not run. An argument only
 * a miner passes (a pool URL scheme, a pool domain as an option's value, a
 * flag, an option value) gets the process SIGKILL there, which it handles on
 * its way back to user mode: it dies before its first instruction.
 */
#ifndef MINERGUARD_ARGV_BPF_H
#define MINERGUARD_ARGV_BPF_H

/* How far into a value "scheme://" is looked for (listed schemes are shorter). */
#define SCHEME_SCAN 24
#define NAME_MASK (MG_NAME_LEN - 1)

/* Schemes, flags, pool options and options with values: the longest entry an argument starts with. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MG_ARG_RULES_CAPACITY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_prefix);
	__type(value, struct mg_arg_rule);
} mg_arg_rules SEC(".maps");

/*
 * Values of MG_ARG_OPTION rules, keyed by the rule's id and the value with its
 * NUL (a trie, so that the bytes after the NUL do not count); the map's value
 * is the policy's entry ("--coin=monero"), for events.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MG_ARG_VALUES_CAPACITY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_arg_value);
	__type(value, struct mg_name);
} mg_arg_values SEC(".maps");

/*
 * Pool domains, each reversed ("moc.rmxpotroppus"): a host is under a listed
 * domain when its reversed name starts with one, at a label boundary. The value
 * is the entry's length in bytes.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MG_DOMAINS_CAPACITY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_prefix);
	__type(value, __u32);
} mg_domains SEC(".maps");

/* One argument and the value it carries, on the stack (see struct mg_names_read). */
struct mg_args_read {
	struct mg_prefix arg; /* the argument (its first MG_NAME_LEN - 1 bytes), as a trie key */
	struct mg_arg_value option; /* an option's value, as a values-map key */
};

/*
 * v, unknown to the verifier: a copy through a helper is opaque to it. Where a
 * scan stopped would otherwise make it check everything after once per
 * possible stop (see read_process_name).
 */
static __always_inline long opaque(long v)
{
	bpf_probe_read_kernel(&v, sizeof(v), &v);
	return v;
}

/*
 * Whether an option's value names a pool: it starts with a listed scheme, or
 * its host (after "scheme://" and "user@", before ':' or '/') is a listed
 * domain or a name under one. On a match, *out holds what matched: the
 * scheme, or the host as given.
 */
static __always_inline bool is_pool(struct mg_prefix *v, struct mg_prefix *out)
{
	struct mg_arg_rule *rule;
	long start = 0, end = MG_NAME_LEN - 1, user_end = 0, n, at;
	__u32 *len;
	char c;
	int i;

	v->prefixlen = MG_NAME_LEN * 8;
	rule = bpf_map_lookup_elem(&mg_arg_rules, v);
	if (rule && rule->kind == MG_ARG_PREFIX) {
		__builtin_memcpy(&out->name, &v->name, sizeof(out->name));
		out->name.name[rule->len & NAME_MASK] = 0;
		return true;
	}
	for (i = 0; i < SCHEME_SCAN; i++) {
		if (v->name.name[i] == 0)
			break;
		if (v->name.name[i] == ':' && v->name.name[i + 1] == '/' && v->name.name[i + 2] == '/') {
			start = i + 3;
			break;
		}
	}
	start = opaque(start) & NAME_MASK;
	for (i = 0; i < MG_NAME_LEN - 1; i++) {
		at = start + i;
		if (at >= MG_NAME_LEN - 1)
			break;
		/* The index alone, masked: clang would otherwise add start and i to the pointer apart. */
		at &= NAME_MASK;
		barrier_var(at);
		c = v->name.name[at];
		if (c == 0 || c == ':' || c == '/' || c == '?') {
			end = at;
			break;
		}
		/* (Remembered, not moved to: the loop's own bounds stay the same on every path.) */
		if (c == '@')
			user_end = at + 1;
	}
	if (user_end)
		start = user_end;
	start = opaque(start) & NAME_MASK;
	end = opaque(end) & NAME_MASK;
	/* A fully qualified name's trailing dot. */
	if (end > start && v->name.name[(end - 1) & NAME_MASK] == '.')
		end--;
	n = end - start;
	if (n <= 0)
		return false;
	__builtin_memset(&out->name, 0, sizeof(out->name));
	for (i = 0; i < MG_NAME_LEN - 1; i++) {
		if (i >= n)
			break;
		at = (end - 1 - i) & NAME_MASK;
		barrier_var(at);
		c = v->name.name[at];
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		out->name.name[i] = c;
	}
	out->prefixlen = MG_NAME_LEN * 8;
	len = bpf_map_lookup_elem(&mg_domains, out);
	if (!len || (*len != n && out->name.name[*len & NAME_MASK] != '.'))
		return false;
	v->name.name[end & NAME_MASK] = 0;
	__builtin_memset(&out->name, 0, sizeof(out->name));
	bpf_probe_read_kernel_str(out->name.name, sizeof(out->name.name), v->name.name + (start & NAME_MASK));
	return true;
}

/* An argument matched: reported, and in enforce mode the process killed before it runs. */
static __always_inline void kill_for_argument(struct file *file, const char *path,
					      const struct mg_name *matched,
					      const struct mg_config *config, enum mg_mode mode)
{
	struct mg_found f = {};

	f.file = file;
	f.path = path;
	f.tier = MG_TIER_KILL;
	f.hook = MG_HOOK_EXEC;
	f.matched = matched;
	f.matched_on = MG_MATCH_ARGV;
	if (enforced(&f, config, mode, MG_ACTION_KILLED))
		bpf_send_signal(SIGKILL);
}

/*
 * The pool option value at user address `value`: when it names a pool, the
 * match is reported and (enforce mode) the process killed; returns whether it
 * matched. A global function: the verifier checks it once, on its own, where
 * this byte-by-byte scan inlined in the loop over the arguments would be
 * checked again for every way the loop can go (past its million-instruction
 * limit). On 5.10 a global function takes only numbers, so the exec's file and
 * path come as their addresses.
 */
__noinline int mg_pool_verdict(unsigned long value, unsigned long file, unsigned long path)
{
	struct mg_prefix v, out;
	struct mg_config *config;
	enum mg_mode *modep;
	__u32 zero = 0;

	config = bpf_map_lookup_elem(&mg_config, &zero);
	modep = bpf_map_lookup_elem(&mg_mode, &zero);
	if (!config || !modep)
		return 0;
	__builtin_memset(&v.name, 0, sizeof(v.name));
	if (bpf_probe_read_user_str(v.name.name, sizeof(v.name.name), (void *)value) <= 0)
		return 0;
	if (!is_pool(&v, &out))
		return 0;
	kill_for_argument((struct file *)file, (const char *)path, &out.name, config, *modep);
	return 1;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(mg_exec_args, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	unsigned long args, args_end, arg, file, path;
	struct mg_args_read a;
	struct mg_arg_rule *rule;
	const struct mg_name *matched = NULL;
	struct mg_config *config;
	enum mg_mode *modep;
	enum mg_arg_kind pending = 0, value_kind;
	__u32 zero = 0, pending_id = 0, value_id, len;
	bool piece = false, first = true, whole;
	long n, start;
	char next;
	int i;

	config = bpf_map_lookup_elem(&mg_config, &zero);
	modep = bpf_map_lookup_elem(&mg_mode, &zero);
	if (!config || !modep || !(config->flags & MG_CONFIG_ARGV) || kill_pending(p))
		return 0;
	args = BPF_CORE_READ(p, mm, arg_start);
	args_end = BPF_CORE_READ(p, mm, arg_end);
	/* The pointers as numbers, for the global function (read: the verifier refuses a cast). */
	bpf_probe_read_kernel(&file, sizeof(file), &bprm->file);
	bpf_probe_read_kernel(&path, sizeof(path), &bprm->filename);

#pragma clang loop unroll(disable)
	for (i = 0; i < MG_MAX_ARG_CHUNKS; i++) {
		if (args >= args_end)
			break;
		arg = args;
		/*
		 * Not cleared first: the tries compare an entry's bytes only, and a
		 * match's next byte is at most the NUL this read writes.
		 */
		n = bpf_probe_read_user_str(a.arg.name.name, sizeof(a.arg.name.name), (void *)arg);
		if (n <= 0)
			break;
		/* A full read may have cut the argument: its rest is the next piece. */
		whole = !piece;
		piece = n == sizeof(a.arg.name.name);
		args += piece ? n - 1 : n;
		if (!whole)
			continue;
		/* argv[0] is the program's name, the names layer's business. */
		if (first) {
			first = false;
			continue;
		}
		if (pending) {
			/* This argument is the value of the option before it. */
			value_kind = pending;
			value_id = pending_id;
			pending = 0;
			start = 0;
		} else {
			a.arg.prefixlen = MG_NAME_LEN * 8;
			rule = bpf_map_lookup_elem(&mg_arg_rules, &a.arg);
			if (!rule)
				continue;
			len = rule->len & NAME_MASK;
			next = a.arg.name.name[len];
			value_kind = rule->kind;
			value_id = rule->id;
			if (value_kind == MG_ARG_PROBE) {
				bpf_send_signal(SIGKILL);
				return 0;
			}
			if (value_kind == MG_ARG_PREFIX ||
			    (value_kind == MG_ARG_FLAG && (next == 0 || next == '='))) {
				a.arg.name.name[len] = 0;
				matched = &a.arg.name;
				break;
			}
			if (value_kind != MG_ARG_POOL && value_kind != MG_ARG_OPTION)
				continue;
			if (next == 0) {
				pending = value_kind;
				pending_id = value_id;
				continue;
			}
			/* "--url=VALUE", or "-oVALUE" glued to a two-letter option */
			if (next != '=' && !(value_kind == MG_ARG_POOL && len == 2))
				continue;
			start = len + (next == '=');
		}
		if (value_kind == MG_ARG_POOL) {
			if (mg_pool_verdict(arg + start, file, path))
				return 0;
			continue;
		}
		/* The values trie: the entry's NUL is part of it, so what follows ours does not count. */
		a.option.prefixlen = sizeof(a.option) * 8 - 32;
		a.option.id = value_id;
		bpf_probe_read_kernel_str(a.option.value.name, sizeof(a.option.value.name),
					  a.arg.name.name + (start & NAME_MASK));
		matched = bpf_map_lookup_elem(&mg_arg_values, &a.option);
		if (matched)
			break;
	}
	if (matched)
		kill_for_argument(bprm->file, bprm->filename, matched, config, *modep);
	return 0;
}

#endif /* MINERGUARD_ARGV_BPF_H */
