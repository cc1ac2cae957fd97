#!/usr/bin/env bash
# bench-latency.sh: netevd's end-to-end benchmark (bench/latency).
#
# Builds bin/netevd and the harness, then runs the harness, which starts the
# daemon in a throw-away network namespace, flaps a veth from a second one
# and prints a markdown report: carrier change → first instruction of a
# carrier.d script next to the fork+exec floor, forks/CPU/memory when no
# script matches, and idle memory. docs/performance.md explains the method.
#
# Needs root (network namespaces, root-owned scripts), ip (iproute2), gcc
# (the probe script is a tiny C program) and go; skips with a message
# otherwise. Installs nothing. Arguments go to the harness, e.g.
#   sudo scripts/bench-latency.sh -flaps 500 -long-flaps 20000
# RUNS=N repeats the whole run N times (default 1).
#
# Nothing outside the namespaces PREFIX-d and PREFIX-p is changed; they, the
# daemon and the temporary files are removed on exit, also on failure or
# Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

skip() {
	echo "bench-latency: skipped: $*" >&2
	exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root for network namespaces (run: sudo $0)"
for tool in ip gcc go; do
	command -v "$tool" >/dev/null || skip "needs $tool in PATH"
done
echo 'int main(void){return 0;}' | gcc -x c -o /dev/null - 2>/dev/null ||
	skip "gcc cannot build a C program (install libc6-dev)"

prefix="netevd-b-$$"
work="$(mktemp -d /tmp/netevd-bench-sh-XXXXXX)"
harness_pid=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$harness_pid" ] && kill -0 "$harness_pid" 2>/dev/null; then
		kill -TERM "$harness_pid" 2>/dev/null || true
		wait "$harness_pid" 2>/dev/null || true
	fi
	# The harness removes its namespaces itself; this catches a harness
	# that was killed: stop what runs in them, by PID, then delete them.
	for ns in "$prefix-d" "$prefix-p"; do
		if ip netns list | grep -qw "$ns"; then
			for pid in $(ip netns pids "$ns" 2>/dev/null); do
				kill -KILL "$pid" 2>/dev/null || true
			done
			ip netns del "$ns" || true
		fi
	done
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make --no-print-directory build >&2
go build -o "$work/latency" ./bench/latency

for run in $(seq 1 "${RUNS:-1}"); do
	[ "${RUNS:-1}" = 1 ] || echo "<!-- run $run of $RUNS -->"
	# TMPDIR: the harness's own temporary directory goes with $work even if
	# the harness is killed.
	TMPDIR="$work" "$work/latency" -netevd bin/netevd -prefix "$prefix" "$@" &
	harness_pid=$!
	wait "$harness_pid"
	harness_pid=""
done
