/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Behaviour, included by minerguard.bpf.c: what a miner cannot change without
 * losing its hash rate. RandomX (Monero: XMRig and its forks) runs random
 * programs whose CFROUND instruction sets the SSE rounding mode (MXCSR bits
 * 13-14) to one of four values, thousands of times a second. The kernel saves
 * a thread's MXCSR when it switches the thread out, and restores it when the
 * thread goes back to user mode (x86_fpu_regs_activated): there, in the
 * thread's own context (at the switch-out the next task's memory is already
 * loaded, and bpf_send_signal refuses), the saved mode is read. A thread in
 * the default mode (round to nearest: almost every program) costs a few loads;
 * one in another mode is looked up, and counted when the mode differs from the
 * last non-default one seen. MG_RANDOMX_CHANGES changes
 * within MG_RANDOMX_WINDOW_MS: the process is reported once and, enforced,
 * killed. A program that sets one non-default mode and keeps it (interval
 * arithmetic) never changes.
 */
#ifndef MINERGUARD_BEHAVIOR_BPF_H
#define MINERGUARD_BEHAVIOR_BPF_H

#define MXCSR_RC_SHIFT 13
#define MXCSR_RC_MASK 3
#define NS_PER_MS 1000000ULL

/* Per thread: its rounding modes so far (LRU: dead threads age out). Pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MG_MAX_FPU_WATCHED);
	__type(key, __u32); /* tid */
	__type(value, struct mg_fpu_watch);
} mg_fpu_watch SEC(".maps");

/* Processes already reported: one event a process, whichever thread saw it first. Pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MG_MAX_FPU_REPORTED);
	__type(key, __u32); /* tgid */
	__type(value, __u32);
} mg_fpu_reported SEC(".maps");

/* struct fpu before 5.16 held the register state itself. */
struct fpu___state {
	union fpregs_state state;
} __attribute__((preserve_access_index));

/* The rounding-control bits of the MXCSR saved in `fpu`, about to be restored. */
static __always_inline __u32 saved_rounding(struct fpu *fpu)
{
	struct fpu___state *old = (void *)fpu;
	struct fpstate *fps;

	if (bpf_core_field_exists(fpu->fpstate)) {
		fps = BPF_CORE_READ(fpu, fpstate);
		return (BPF_CORE_READ(fps, regs.xsave.i387.mxcsr) >> MXCSR_RC_SHIFT) & MXCSR_RC_MASK;
	}
	return (BPF_CORE_READ(old, state.xsave.i387.mxcsr) >> MXCSR_RC_SHIFT) & MXCSR_RC_MASK;
}

/* The name a RandomX event carries as matched_name. */
const struct mg_name mg_randomx_name = { .name = "randomx" };

/* Reports the process once, and kills it if enforced (another thread may be first). */
static __always_inline void randomx_seen(const struct mg_fpu_watch *w, __u64 now)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, one = 1, zero = 0;
	struct mg_config *config = bpf_map_lookup_elem(&mg_config, &zero);
	enum mg_mode *modep = bpf_map_lookup_elem(&mg_mode, &zero);
	struct mg_found f = {};
	struct file *exe;

	if (!config || !modep || !(config->flags & MG_CONFIG_RANDOMX))
		return;
	/* Atomic: of the threads that get here, one reports. */
	if (bpf_map_update_elem(&mg_fpu_reported, &tgid, &one, BPF_NOEXIST))
		return;
	exe = BPF_CORE_READ(task, mm, exe_file);
	f.file = exe;
	f.path = (const char *)BPF_CORE_READ(exe, f_path.dentry, d_name.name);
	f.tier = MG_TIER_KILL;
	f.hook = MG_HOOK_SWITCH;
	f.matched = &mg_randomx_name;
	f.matched_on = MG_MATCH_RANDOMX;
	f.audit_only = config->flags & MG_CONFIG_RANDOMX_AUDIT;
	f.enforce_always = config->flags & MG_CONFIG_RANDOMX_ENFORCE;
	f.observed_changes = w->changes;
	f.observed_ms = (now - w->window_start_ns) / NS_PER_MS;
	if (enforced(&f, config, *modep, MG_ACTION_KILLED))
		bpf_send_signal(SIGKILL);
}

SEC("tp_btf/x86_fpu_regs_activated")
int BPF_PROG(mg_fpu_switch, struct fpu *fpu)
{
	__u32 rc = saved_rounding(fpu), tid;
	struct mg_fpu_watch *w, fresh = {};
	__u64 now;

	/* Round to nearest: nothing to do (almost every thread, almost always). */
	if (rc == 0)
		return 0;
	tid = (__u32)bpf_get_current_pid_tgid();
	w = bpf_map_lookup_elem(&mg_fpu_watch, &tid);
	if (!w) {
		fresh.last_rc = rc;
		bpf_map_update_elem(&mg_fpu_watch, &tid, &fresh, BPF_ANY);
		return 0;
	}
	/* One thread at a time: its switches are serialised, so w is its own. */
	if (w->last_rc == rc)
		return 0;
	w->last_rc = rc;
	now = bpf_ktime_get_boot_ns();
	if (w->changes == 0 || now - w->window_start_ns > MG_RANDOMX_WINDOW_MS * NS_PER_MS) {
		w->window_start_ns = now;
		w->changes = 1;
		return 0;
	}
	w->changes += 1;
	if (w->changes == MG_RANDOMX_CHANGES)
		randomx_seen(w, now);
	return 0;
}

#endif /* MINERGUARD_BEHAVIOR_BPF_H */
