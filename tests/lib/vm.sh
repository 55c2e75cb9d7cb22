# shellcheck shell=bash
# tests/lib/vm.sh: what the three QEMU runners share, sourced by tests/vm/run,
# tests/systemd-vm/run and bench/run (bash). One boot of a Debian stock kernel named in
# tests/vm/kernels under QEMU/TCG (this machine's kernel refuses BPF-LSM programs, KVM hangs):
# the console goes to a log file, its tagged lines (MG-* or MGB-*) are shown as progress, the
# guest must say it runs the kernel named (its BOOT line carries kernel=`uname -r`; any other
# kernel stops the VM at once and fails the boot with a FAIL line), and a boot that broke down
# on the known TCG trap is tried once more. Then the MG-RESULT/MG-TIME tally.
#
# Settings, read by vm_boot (the caller sets them after sourcing):
#   VM_ACCEL    array: QEMU accelerator and CPU options (default: multi-threaded TCG, 2 vCPUs)
#   VM_MEM      guest RAM in MiB (default 1024)
#   VM_PREFIX   the guest's console tag: MG- (tests) or MGB- (bench); the guest's first tagged
#               line is <tag>BOOT kernel=RELEASE ..., its last <tag>DONE
#   VM_TIMEOUT  hard limit per boot in seconds (default 1800)
#   VM_LOG_DIR  where console logs go (default $MINERGUARD_CACHE/logs)
#   VM_OUT      file descriptor for the progress and BOOT lines (default 1)
#   VM_RESUME   a file listing the boot's independent parts (a suite file), or empty: the
#               second boot after the TCG trap then starts at the first part without a
#               result (mg_resume=NAME on its command line), and the results of both boots
#               are tallied together (VM_LOG: both logs in one file)
#   MG_VERBOSE=1  show the whole console, not only the tagged lines
# Results of vm_boot: VM_LOG, VM_RC (qemu's status), VM_SECS, VM_BOOT_S (seconds to the BOOT
# line), VM_RELEASE (the kernel the guest runs), VM_WRONG_KERNEL and VM_PROBLEM (empty when
# all went well). vm_tally adds to VM_PASSED and VM_FAILED.

VM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_TESTS_VM=$(cd "$VM_LIB_DIR/../vm" && pwd)
VM_CACHE=${MINERGUARD_CACHE:-$HOME/.cache/minerguard}
# shellcheck disable=SC2054  # commas inside QEMU options
VM_ACCEL=(-accel tcg,thread=multi -cpu max -smp 2)
VM_MEM=1024
VM_PREFIX=MG-
VM_TIMEOUT=1800
VM_LOG_DIR=$VM_CACHE/logs
VM_OUT=1
VM_PASSED=0 VM_FAILED=0

# since T0 [DECIMALS]: seconds since T0 (an $EPOCHREALTIME), with DECIMALS (default 1) digits.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, b - a }'; }

# vm_kernel_names: the names of tests/vm/kernels (the default kernel list), one a line.
vm_kernel_names() { awk '!/^#/ && NF { print $1 }' "$VM_TESTS_VM/kernels"; }

# vm_kernel NAME: fetch (once) the kernel NAME of tests/vm/kernels. Sets VM_VMLINUZ, VM_PACKAGE
# (linux-image-RELEASE) and VM_WANT_RELEASE, the `uname -r` the guest must then report.
vm_kernel() {
	VM_VMLINUZ=$("$VM_TESTS_VM/fetch-kernel" "$1") || return 1
	VM_PACKAGE=$(cat "$(dirname "$VM_VMLINUZ")/package") || return 1
	VM_WANT_RELEASE=${VM_PACKAGE#linux-image-}
}

# vm_release_problem NAME RELEASE: why RELEASE is not the kernel NAME (nothing if it is).
# Debian's package linux-image-R installs the kernel whose `uname -r` is R.
vm_release_problem() {
	if [ -z "$2" ]; then
		echo "the guest did not say which kernel it runs (no kernel= in its ${VM_PREFIX}BOOT line)"
	elif [ "$2" != "$VM_WANT_RELEASE" ]; then
		echo "kernel $2 booted, not the kernel named $1 ($VM_PACKAGE)"
	else
		case $2 in "$1".*) ;; *) echo "kernel $2 booted, not a $1 kernel" ;; esac
	fi
}

# vm_boot NAME TAG LABEL INITRD APPEND: boot kernel NAME with INITRD, "console=ttyS0 panic=-1
# softlockup_panic=1 rcupdate.rcu_task_stall_timeout=60000 quiet APPEND" as its command line
# (the stall timeout: milliseconds since 6.0, jiffies before, 240 s on 5.10), the console to
# $VM_LOG_DIR/DATE-NAME-TAG.log. LABEL says what runs (for the header). If the boot broke down (no BOOT or no DONE line, timeout) and the
# console shows the TCG trap, boot once more. Sets the results listed above; returns 0.
vm_boot() {
	local name=$1 tag=$2 label=$3 initrd=$4 append=$5
	vm_kernel "$name" || { echo "vm: cannot fetch kernel $name" >&2; return 1; }
	echo "=== kernel $name ($VM_PACKAGE), $label" >&"$VM_OUT"
	_vm_boot_once "$name" "$tag" "$initrd" "$append"
	# Multi-threaded TCG can run an instruction the guest kernel is patching at that moment
	# (text_poke's int3): seen once in four full runs, on 6.12, and, as both vCPUs spinning
	# in the kernel (a soft lockup) while an agent attached its programs (5.10, once). That
	# is the emulator, not a result, so such a boot is tried again; anything else fails
	# at once. softlockup_panic (below) turns the lockup into a panic, and so into an exit.
	# A third form (6.1, once in a fresh-clone run): tasks preempted in the kernel that never
	# run again, while the exec of a plain command hangs; the kernel then reports an RCU Tasks
	# stall (after 60 s: the stall timeout below), and the reader stops the VM at once.
	# On 6.12 it can come back boot after boot (three traps in one suite run, in
	# fpregs_mark_activate, __kmalloc_cache_node, __alloc_pages: code whose static keys flip
	# as programs attach and detach): up to four more boots, each from the first part without
	# a result. A real hang in our code would hang every one of them, and fail.
	local tries=0 last=$VM_LOG sofar=$VM_LOG resume=''
	while [ -n "$VM_PROBLEM" ] && [ -z "$VM_WRONG_KERNEL" ] && [ "$tries" -lt 4 ] &&
		grep -aqE "Oops: int3|soft lockup - CPU|rcu_tasks[a-z_]* detected stalls" "$last"; do
		tries=$((tries + 1))
		echo "AGAIN $name $tag: the guest kernel trapped or locked up on code being patched (QEMU TCG); booting once more ($tries of 4)" >&2
		resume=''
		# Parts that already have a result are not run again (each boot is a clean machine).
		if [ -n "${VM_RESUME:-}" ]; then
			resume=$(grep -v '^[[:space:]]*#' "$VM_RESUME" | while read -r part; do
				[ -n "$part" ] || continue
				grep -aq "${VM_PREFIX}RESULT $part " "$sofar" || { echo "$part"; break; }
			done)
		fi
		if [ -n "$resume" ]; then
			echo "AGAIN $name $tag: resuming at $resume" >&2
			_vm_boot_once "$name" "$tag-again$tries" "$initrd" "$append mg_resume=$resume"
			last=$VM_LOG
			cat "$sofar" "$last" > "$last.all"
			[ "$sofar" = "${sofar%.all}" ] || rm -f "$sofar"
			sofar=$last.all
		else
			_vm_boot_once "$name" "$tag-again$tries" "$initrd" "$append"
			last=$VM_LOG sofar=$VM_LOG
		fi
	done
	if [ "$sofar" != "$VM_LOG" ]; then
		mv "$sofar" "$VM_LOG.both"
		mv "$VM_LOG.both" "$VM_LOG"
	fi
	if [ -n "$VM_WRONG_KERNEL" ]; then
		echo "FAIL $name $tag: $VM_WRONG_KERNEL" >&"$VM_OUT"
		VM_FAILED=$((VM_FAILED + 1))
	fi
	return 0
}

_vm_boot_once() {
	local name=$1 tag=$2 initrd=$3 append=$4 t0 p=$VM_PREFIX pidfile
	mkdir -p "$VM_LOG_DIR"
	VM_LOG=$VM_LOG_DIR/$(date +%Y%m%d-%H%M%S)-$name-$tag.log
	echo "    console log: $VM_LOG" >&"$VM_OUT"
	pidfile=$VM_LOG.qemu-pid
	t0=$EPOCHREALTIME
	set +e
	timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 "${VM_ACCEL[@]}" -m "$VM_MEM" -nographic -no-reboot \
		-pidfile "$pidfile" -kernel "$VM_VMLINUZ" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 softlockup_panic=1 rcupdate.rcu_task_stall_timeout=60000 quiet $append" </dev/null 2>&1 |
		while IFS= read -r line; do
			line=${line%$'\r'}   # serial console line ends are \r\n
			# The log keeps the raw console; <tag>HOST lines add host-side facts.
			printf '%s\n' "$line" >> "$VM_LOG"
			case $line in *"rcu_tasks"*" detected stalls"*)
				# Waiting longer changes nothing (the boot would run into VM_TIMEOUT): stop it,
				# vm_boot boots once more from the first part without a result.
				echo "${p}HOST RCU Tasks stall: stopping the VM" >> "$VM_LOG"
				kill "$(cat "$pidfile")" 2>/dev/null ;;
			esac
			case $line in *"${p}BOOT"*)
				echo "${p}HOST boot $(since "$t0")" >> "$VM_LOG"
				# A wrong kernel makes every later line meaningless: stop the VM now.
				why=$(vm_release_problem "$name" "$(_vm_release_of "$line")")
				if [ -n "$why" ]; then
					echo "${p}HOST wrong kernel: $why" >> "$VM_LOG"
					kill "$(cat "$pidfile")" 2>/dev/null
				fi ;;
			esac
			if [ "${MG_VERBOSE:-0}" = 1 ]; then printf '%s\n' "$line" >&"$VM_OUT"
			else case $line in *"$p"*) printf '  [%5ss] %s\n' "$(since "$t0")" "${line#*"$p"}" >&"$VM_OUT" ;; esac
			fi
		done
	VM_RC=${PIPESTATUS[0]}
	set -e
	rm -f "$pidfile"
	VM_SECS=$(since "$t0")
	echo "${p}HOST seconds=$VM_SECS qemu_status=$VM_RC" >> "$VM_LOG"

	VM_BOOT_S=$(sed -n "s/^${p}HOST boot //p" "$VM_LOG")
	VM_RELEASE=$(_vm_release_of "$(grep -a -o "${p}BOOT.*" "$VM_LOG" | head -n 1)")
	VM_WRONG_KERNEL='' VM_PROBLEM=''
	if [ -z "$VM_BOOT_S" ]; then
		VM_PROBLEM="VM did not boot (no ${p}BOOT)"
	else
		VM_WRONG_KERNEL=$(vm_release_problem "$name" "$VM_RELEASE")
		if [ -n "$VM_WRONG_KERNEL" ]; then VM_PROBLEM=$VM_WRONG_KERNEL
		elif ! grep -aq "${p}DONE" "$VM_LOG"; then VM_PROBLEM="VM did not finish (no ${p}DONE)"
		fi
	fi
	[ "$VM_RC" = 124 ] && VM_PROBLEM="${VM_PROBLEM:+$VM_PROBLEM; }VM killed after $VM_TIMEOUT s"
	echo "BOOT $name $tag: kernel ${VM_RELEASE:-?} (want $VM_WANT_RELEASE), ${p}BOOT after ${VM_BOOT_S:-?} s, VM ran $VM_SECS s (qemu status $VM_RC)" >&"$VM_OUT"
}

# _vm_release_of LINE: the kernel= word of a BOOT line.
_vm_release_of() { sed -n 's/.*[[:space:]]kernel=\([^[:space:]]*\).*/\1/p' <<< "$1"; }

# vm_tally LABEL: for each name on stdin (suite or steps file; "#" lines and blank lines
# skipped), the MG-RESULT/MG-TIME lines of VM_LOG as "PASS LABELname (Ns)" or "FAIL LABELname:
# reason". A boot on the wrong kernel counts nothing as passed.
vm_tally() {
	local label=$1 name line result secs
	while read -r name; do
		case $name in '' | '#'*) continue ;; esac
		# Match anywhere in the line: a kernel message may precede it on the console.
		line=$(grep -a -o "MG-RESULT $name .*" "$VM_LOG" | head -n 1 || true)
		secs=$(grep -a -o "MG-TIME $name .*" "$VM_LOG" | head -n 1 | awk '{ print $3 }' || true)
		[ -z "$VM_WRONG_KERNEL" ] || line=
		result=${line#"MG-RESULT $name "}
		if [ -z "$line" ]; then
			echo "FAIL $label$name: did not report${VM_PROBLEM:+ ($VM_PROBLEM)}"
			VM_FAILED=$((VM_FAILED + 1))
		elif [ "$result" = PASS ]; then
			echo "PASS $label$name (${secs:-?}s)"
			VM_PASSED=$((VM_PASSED + 1))
		else
			echo "FAIL $label$name: ${result#FAIL } (${secs:-?}s)"
			VM_FAILED=$((VM_FAILED + 1))
		fi
	done
}

# vm_show_problem WHAT: if the last boot broke down, say so on stderr with the console's end.
vm_show_problem() {
	[ -n "$VM_PROBLEM" ] || return 0
	echo "ERROR $1: $VM_PROBLEM. Last 50 console lines ($VM_LOG):" >&2
	tail -n 50 "$VM_LOG" >&2
}
