# shellcheck shell=bash
# bench/peers/elfroot.bash: sourced by the stage scripts of auditctl, auditd and fapolicyd
# (after lib.sh). A package closure unpacked by peer_unpack holds far more than its programs
# run (perl, gawk, docs: 100 MB for auditd's), and the guest's initramfs lives in RAM and is
# unpacked under instruction counting, so only the programs named and the shared libraries
# they load go into the guest.

# elfroot_put SRC DEST FILE...: copies each FILE (a path inside the unpacked root SRC) to the
# same path under DEST, and every shared library it needs, recursively, found in SRC's
# library directories, into DEST/lib (one flat directory for ld.so's --library-path), plus
# SRC's dynamic loader as DEST/lib/ld-linux-x86-64.so.2. In the guest a program then runs
# as: DEST/lib/ld-linux-x86-64.so.2 --library-path DEST/lib DEST/FILE ARGS...
elfroot_put() {
	local src=$1 dest=$2 f lib soname path dir
	shift 2
	# readelf comes with gcc (binutils), which bench/run needs anyway.
	if ! command -v readelf > /dev/null; then
		echo "elfroot_put: readelf missing: installing binutils" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >&2
	fi
	mkdir -p "$dest/lib"
	install -m 0755 "$(readlink -f "$src/lib64/ld-linux-x86-64.so.2")" "$dest/lib/ld-linux-x86-64.so.2"
	local -a todo=() seen=()
	for f in "$@"; do
		install -D -m 0755 "$src/$f" "$dest/$f"
		todo+=("$src/$f")
	done
	while [ ${#todo[@]} -gt 0 ]; do
		f=${todo[0]}
		todo=("${todo[@]:1}")
		for soname in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
			case " ${seen[*]} " in *" $soname "*) continue ;; esac
			seen+=("$soname")
			[ "$soname" = ld-linux-x86-64.so.2 ] && continue
			path=
			for dir in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib usr/lib; do
				if [ -e "$src/$dir/$soname" ]; then path=$src/$dir/$soname; break; fi
			done
			[ -n "$path" ] || { echo "elfroot_put: $soname (needed by $f) not in $src" >&2; return 1; }
			lib=$(readlink -f "$path")
			install -m 0755 "$lib" "$dest/lib/$soname"
			todo+=("$lib")
		done
	done
}
