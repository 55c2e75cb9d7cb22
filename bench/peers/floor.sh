# shellcheck shell=dash
# The floor (sourced by bench/guest.sh): an empty BPF-LSM program on bprm_check_security,
# loaded and attached by bench/peers/floor.c, which holds the program and its link until
# killed. It blocks nothing (/bench/xmrig runs: status 0).
FLOOR_PID=

# floor_linked: the loader holds a BPF link (kernel state: a link fd in its fdinfo), which
# it creates only by attaching the program.
floor_linked() {
	for floor_f in /proc/"$FLOOR_PID"/fdinfo/*; do
		grep -q '^link_type:' "$floor_f" 2>/dev/null && return 0
	done
	return 1
}

floor_start() {
	/peers/floor/floor /peers/floor/floor.bpf.o > /tmp/floor.log 2>&1 &
	FLOOR_PID=$!
	floor_i=0
	until floor_linked; do
		if ! alive "$FLOOR_PID"; then
			echo "MGB-NOTE floor: the loader exited before attaching: $(tr '\n' ' ' < /tmp/floor.log)"
			wait "$FLOOR_PID"
			FLOOR_PID=
			return 1
		fi
		floor_i=$((floor_i + 1))
		if [ "$floor_i" -ge 600 ]; then
			echo "MGB-NOTE floor: no BPF link after 60 s"
			return 1
		fi
		sleep 0.1
	done
	return 0
}

# floor_stop: killing the loader closes its link and program fds, which detaches the program.
floor_stop() {
	[ -n "$FLOOR_PID" ] || return 0
	kill -TERM "$FLOOR_PID" 2>/dev/null
	wait "$FLOOR_PID" 2>/dev/null
	FLOOR_PID=
}

floor_pids() { echo "$FLOOR_PID"; }
