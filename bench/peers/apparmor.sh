# shellcheck shell=dash
# bench/peers/apparmor.sh (sourced by bench/guest.sh): AppArmor 3.0.8's deny-exec profile,
# staged by apparmor.stage under /peers/apparmor. Needs `apparmor` in lsm= (the "apparmor" boot).
#
# AppArmor confines programs, not the node: the operator attaches a profile to the workload
# (as a container runtime or systemd's AppArmorProfile= does when it starts one). Here the
# workload is the benchmark's shell, PID 1, already running, so apparmor_start moves it into
# the profile with change_profile (allowed from unconfined); everything it then starts
# inherits the profile (ix), the probe /bench/xmrig and the measured /bench/execloop with its
# /bench/nop alike, so each exec of the loop is checked against the profile's exec rules.
# Removing the profile (apparmor_stop) returns its tasks, PID 1 included, to unconfined.

APPARMOR_ROOT=/peers/apparmor
APPARMOR_PROFILE=mgbench-workload
APPARMOR_FS=/sys/kernel/security/apparmor
APPARMOR_SHOWN=

# apparmor_parser ARGS...: bookworm's parser with its own libc (staged beside it).
apparmor_parser_run() {
	"$APPARMOR_ROOT/lib/ld-linux-x86-64.so.2" --library-path "$APPARMOR_ROOT/lib" \
		"$APPARMOR_ROOT/sbin/apparmor_parser" --config-file="$APPARMOR_ROOT/parser.conf" \
		-I "$APPARMOR_ROOT/etc/apparmor.d" "$@"
}
# apparmor_label PID: the AppArmor label of PID, e.g. "mgbench-workload (enforce)".
apparmor_label() { cat "/proc/$1/attr/apparmor/current" 2>/dev/null; }
# apparmor_loaded: whether the kernel holds the profile, in enforce mode.
apparmor_loaded() { grep -qx "$APPARMOR_PROFILE (enforce)" "$APPARMOR_FS/profiles" 2>/dev/null; }

apparmor_start() {
	case ",$(cat /sys/kernel/security/lsm)," in
	*,apparmor,*) ;;
	*) echo "MGB-NOTE apparmor: not an active LSM ($(cat /sys/kernel/security/lsm)): boot with apparmor in lsm="; return 1 ;;
	esac
	[ -d "$APPARMOR_FS" ] || { echo "MGB-NOTE apparmor: no $APPARMOR_FS"; return 1; }
	# -r: load or replace; -K: no cache (none in the guest).
	if ! apparmor_parser_run -r -K "$APPARMOR_ROOT/$APPARMOR_PROFILE" > /tmp/apparmor.out 2>&1; then
		echo "MGB-NOTE apparmor: apparmor_parser failed: $(tr '\n' ' ' < /tmp/apparmor.out)"
		return 1
	fi
	apparmor_loaded || { echo "MGB-NOTE apparmor: $APPARMOR_PROFILE not in $APPARMOR_FS/profiles after loading"; return 1; }
	# Confine the workload: this function runs in guest.sh's own process (PID 1), so the
	# builtin echo's redirection writes PID 1's attribute.
	if ! echo "changeprofile $APPARMOR_PROFILE" > /proc/self/attr/apparmor/current; then
		echo "MGB-NOTE apparmor: change_profile to $APPARMOR_PROFILE refused"
		return 1
	fi
	# In force, judged from the kernel: the shell's label, a child's label (what the probe and
	# the loop inherit), and the profile at work: a listed name refused, the unlisted nop not.
	apparmor_l=$(apparmor_label $$)
	[ "$apparmor_l" = "$APPARMOR_PROFILE (enforce)" ] ||
		{ echo "MGB-NOTE apparmor: the shell's label is '$apparmor_l', not $APPARMOR_PROFILE"; return 1; }
	# shellcheck disable=SC2016  # $$ of the child shell
	apparmor_l=$(sh -c 'cat /proc/$$/attr/apparmor/current')
	[ "$apparmor_l" = "$APPARMOR_PROFILE (enforce)" ] ||
		{ echo "MGB-NOTE apparmor: a child's label is '$apparmor_l', not $APPARMOR_PROFILE"; return 1; }
	case $(/bench/execloop 1 /bench/xmrig 2>/dev/null) in
	*' fails=1 '*) ;;
	*) echo "MGB-NOTE apparmor: /bench/xmrig was not refused under $APPARMOR_PROFILE"; return 1 ;;
	esac
	case $(/bench/execloop 1 /bench/nop 2>/dev/null) in
	*' fails=0 '*) ;;
	*) echo "MGB-NOTE apparmor: /bench/nop did not run under $APPARMOR_PROFILE"; return 1 ;;
	esac
	# Once a boot, AppArmor's own record of that refusal (printk'd: no auditd), for the log.
	if [ -z "$APPARMOR_SHOWN" ]; then
		APPARMOR_SHOWN=1
		apparmor_l=$(dmesg | grep 'apparmor="DENIED" operation="exec"' | grep 'name="/bench/xmrig"' | tail -n 1)
		echo "MGB-NOTE apparmor: ${apparmor_l:-no DENIED record for /bench/xmrig in dmesg (rate-limited?)}"
	fi
	return 0
}

apparmor_stop() {
	# Removing the profile moves the tasks it confined (PID 1) back to unconfined.
	apparmor_parser_run -R -K "$APPARMOR_ROOT/$APPARMOR_PROFILE" > /tmp/apparmor.out 2>&1 ||
		echo "MGB-NOTE apparmor: apparmor_parser -R failed: $(tr '\n' ' ' < /tmp/apparmor.out)"
	apparmor_loaded && echo "MGB-ERROR apparmor: $APPARMOR_PROFILE still loaded after apparmor_parser -R"
	apparmor_l=$(apparmor_label $$)
	[ "$apparmor_l" = unconfined ] || echo "MGB-ERROR apparmor: the shell is still confined ('$apparmor_l') after removing the profile"
	return 0
}

apparmor_pids() { :; }
