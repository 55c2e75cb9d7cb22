# shellcheck shell=sh
# bench/peers/bpftool.sh (guest): bookworm's bpftool, run through its own loader and libraries.
bpftool() {
	/peers/bpftool/lib/ld-linux-x86-64.so.2 --library-path /peers/bpftool/lib /peers/bpftool/usr/sbin/bpftool "$@"
}
