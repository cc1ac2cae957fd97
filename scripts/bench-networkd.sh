#!/usr/bin/env bash
# bench-networkd.sh: netevd against networkd-dispatcher on one real
# systemd-networkd (bench/networkd).
#
# Builds bin/netevd and the harness, then runs the harness: it starts
# dbus-daemon and systemd-networkd in a throw-away network namespace with a
# private mount namespace, runs networkd-dispatcher (Debian's package) and
# netevd (system.backend: systemd-networkd) next to each other on that
# networkd, flaps the link from a second namespace, and prints a markdown
# report: for each dispatcher, the time from networkd's routable signal and
# from `ip link set up` to the first command of its routable.d script, next
# to the floor (the same script started directly), and how often netevd's
# script ran after networkd-dispatcher's. docs/performance.md explains the
# method.
#
# Needs root, ip (iproute2), nsenter and unshare (util-linux), dbus-daemon,
# systemd-networkd, bash and go; installs networkd-dispatcher with
# apt-get --no-install-recommends if it is missing. Skips with a message
# otherwise. Arguments go to the harness, e.g.
#   sudo scripts/bench-networkd.sh -flaps 200
# RUNS=N repeats the whole run N times (default 1).
#
# Nothing outside the namespaces PREFIX-d and PREFIX-p is changed; they,
# every process in them and the temporary files are removed on exit, also
# on failure or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

skip() {
	echo "bench-networkd: skipped: $*" >&2
	exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root for network and mount namespaces (run: sudo $0)"
for tool in ip go nsenter unshare dbus-daemon bash; do
	command -v "$tool" >/dev/null || skip "needs $tool in PATH"
done
[ -x /lib/systemd/systemd-networkd ] || skip "needs systemd-networkd (/lib/systemd/systemd-networkd, package systemd)"
if ! command -v networkd-dispatcher >/dev/null; then
	echo "bench-networkd: installing networkd-dispatcher (apt-get --no-install-recommends)" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends networkd-dispatcher >/dev/null 2>&1 ||
		{ apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends networkd-dispatcher >/dev/null 2>&1; } ||
		skip "could not install networkd-dispatcher with apt-get"
	command -v networkd-dispatcher >/dev/null || skip "networkd-dispatcher is not in PATH after installing it"
fi

prefix="netevd-nb-$$"
work="$(mktemp -d /tmp/netevd-nbench-sh-XXXXXX)"
chmod 755 "$work" # the daemons, in their own mount namespace, read scripts under it
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
go build -o "$work/networkd-bench" ./bench/networkd

for run in $(seq 1 "${RUNS:-1}"); do
	[ "${RUNS:-1}" = 1 ] || echo "<!-- run $run of $RUNS -->"
	# TMPDIR: the harness's temporary directory (scripts, FIFO, logs) goes
	# with $work even if the harness is killed. It must stay under /tmp,
	# which the daemons' private mount namespace shares.
	TMPDIR="$work" "$work/networkd-bench" -netevd bin/netevd -prefix "$prefix" "$@" &
	harness_pid=$!
	wait "$harness_pid"
	harness_pid=""
done
