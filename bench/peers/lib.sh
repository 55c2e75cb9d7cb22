# shellcheck shell=bash
# bench/peers/lib.sh: what the peers' stage scripts share (sourced).
# A peer NAME is two files: NAME.stage (run on the host by bench/run: NAME.stage OVER KERNEL
# RELEASE puts what the guest needs under the overlay root OVER, for the guest kernel named
# KERNEL of tests/vm/kernels, whose `uname -r` is RELEASE; it must install OVER/bench/peers/NAME.sh)
# and NAME.sh (sourced by bench/guest.sh in the guest, busybox sh: NAME_start, NAME_stop,
# NAME_pids; guest.sh's alive PID and stop_pid PID serve them all). Downloads and builds are
# cached under $PEER_CACHE (bench/run sets it), never in the tree.
set -euo pipefail
PEER_CACHE=${PEER_CACHE:-${MINERGUARD_CACHE:-$HOME/.cache/minerguard}/bench/peers}
PEERS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEERS_REPO=$(cd "$PEERS_DIR/../.." && pwd)

# peer_apt SUITE: sets PEER_APT_OPTS, a private apt state for SUITE (a second column of
# tests/vm/kernels, e.g. bookworm) with that line's sources, so the host's own sources and
# installed packages never count (as tests/vm/fetch-kernel).
peer_apt() {
	local suite=$1 line dir
	line=$(awk -v s="$suite" '$2 == s { $1 = ""; $2 = ""; print; exit }' "$PEERS_REPO/tests/vm/kernels")
	[ -n "$line" ] || { echo "peer_apt: no suite '$suite' in tests/vm/kernels" >&2; return 1; }
	dir=$PEER_CACHE/apt-$suite
	mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/preferences.d"
	echo "$line" | sed 's/^ *//' | tr ';' '\n' > "$dir/sources.list"
	: > "$dir/status"
	PEER_APT_OPTS=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o "Dir::Etc::sourceparts=-"
		-o "Dir::State::status=$dir/status" -o "Dir::Etc::preferences=$dir/preferences"
		-o "Dir::Etc::preferencesparts=$dir/preferences.d"
		-o "Dir::State::Lists=$dir/lists" -o "Dir::Cache::archives=$dir/archives"
		-o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Get::List-Cleanup=0"
		-o "APT::Sandbox::User=root")
	PEER_APT_DIR=$dir
	# Two boots stage at once (bench/run): apt's own lock would fail the second, so wait.
	(
		flock 9
		if [ ! -f "$dir/updated" ] || [ -n "$(find "$dir/updated" -mmin +1440)" ]; then
			apt-get "${PEER_APT_OPTS[@]}" -qq update >&2
			touch "$dir/updated"
		fi
	) 9> "$dir/stage.lock"
}

# peer_closure PKG...: the packages PKG... depend on, recursively (Depends and PreDepends
# only), themselves included, one a line (needs peer_apt first).
peer_closure() {
	apt-cache "${PEER_APT_OPTS[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
		--no-breaks --no-replaces --no-enhances "$@" | grep '^[a-z0-9]' | sort -u
}

# peer_unpack ROOT PKG...: downloads (cached) PKG... and unpacks them into ROOT (dpkg-deb -x:
# no maintainer scripts run).
peer_unpack() {
	local root=$1 p deb
	shift
	mkdir -p "$root"
	for p in "$@"; do
		deb=$(find "$PEER_APT_DIR/archives" -maxdepth 1 -name "${p}_*.deb" | sort -V | tail -n 1)
		if [ -z "$deb" ]; then
			(flock 9; cd "$PEER_APT_DIR/archives" && apt-get "${PEER_APT_OPTS[@]}" -qq download "$p" >&2) 9> "$PEER_APT_DIR/stage.lock"
			deb=$(find "$PEER_APT_DIR/archives" -maxdepth 1 -name "${p}_*.deb" | sort -V | tail -n 1)
		fi
		[ -n "$deb" ] || { echo "peer_unpack: cannot download $p" >&2; return 1; }
		dpkg-deb -x "$deb" "$root"
	done
}
