#!/usr/bin/env bash
# Drives scripts/cluster against the real kvfs binary: start, write, SIGKILL,
# restart (the write survives), status, stop. With a replicated mode that the
# build supports, also a 3-node cluster: kill one node, restart it, isolate it
# and heal. Exit 77 (skip) only when the machine has no FUSE.
set -euo pipefail

SRC=${KVFS_SOURCE_ROOT:?}
BLD=${KVFS_BUILD_ROOT:?}
export KVFS_BIN=$BLD/fs/kvfs
[ -e /dev/fuse ] && command -v fusermount3 >/dev/null || { echo "no FUSE: skip"; exit 77; }
[ -x "$KVFS_BIN" ] || { echo "no kvfs binary at $KVFS_BIN"; exit 1; }
export KVFS_CLUSTER_DIR
KVFS_CLUSTER_DIR=$(mktemp -d /tmp/kvfs-cluster-test.XXXXXX)
C=$SRC/scripts/cluster
cleanup() {
	"$C" stop >/dev/null 2>&1 || true
	rm -rf "$KVFS_CLUSTER_DIR"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; "$C" status >&2 || true; exit 1; }

# --- one standalone node ------------------------------------------------------
"$C" start 1 >/dev/null || fail "start 1"
m=$("$C" mnt 0)
grep -qs " $m " /proc/mounts || fail "node 0 not mounted"
echo hello >"$m/greeting" || fail "write"
pid=$("$C" pid 0)
[ -n "$pid" ] || fail "no pid recorded"
"$C" start 1 >/dev/null 2>&1 && fail "second start must refuse while running"
"$C" kill 0 >/dev/null
[ -z "$("$C" pid 0)" ] || fail "pid $pid survived kill"
grep -qs " $m " /proc/mounts && fail "mount left after kill"
# (grep -q on a pipe would SIGPIPE the script under pipefail)
st=$("$C" status)
grep -q "node0 .* down" <<<"$st" || fail "status after kill"
"$C" restart 0 >/dev/null || fail "restart"
[ "$(cat "$m/greeting")" = hello ] || fail "write lost across SIGKILL"
st=$("$C" status)
grep -q "node0 .* running pid" <<<"$st" || fail "status after restart"
"$C" stop >/dev/null
grep -qs " $m " /proc/mounts && fail "mount left after stop"
[ -z "$("$C" pid 0)" ] || fail "process left after stop"
echo "standalone: ok"

# --- three replicated nodes, where the build has a replicated mode --------------
for mode in raft masterless; do
	if ! "$C" start --mode $mode 3 >/dev/null 2>"$KVFS_CLUSTER_DIR.err"; then
		if grep -q "not supported\|not available" "$KVFS_CLUSTER_DIR.err"; then
			echo "$mode: not in this build, skipped"
			"$C" stop >/dev/null 2>&1 || true
			rm -f "$KVFS_CLUSTER_DIR.err"
			continue
		fi
		cat "$KVFS_CLUSTER_DIR.err" >&2
		rm -f "$KVFS_CLUSTER_DIR.err"
		fail "start --mode $mode 3"
	fi
	rm -f "$KVFS_CLUSTER_DIR.err"
	for i in 0 1 2; do
		grep -qs " $("$C" mnt $i) " /proc/mounts || fail "$mode: node $i not mounted"
	done
	"$C" kill 2 >/dev/null
	[ -z "$("$C" pid 2)" ] || fail "$mode: node 2 survived kill"
	"$C" restart 2 >/dev/null || fail "$mode: restart 2"
	"$C" isolate 1 >/dev/null
	grep -q 0 "$KVFS_CLUSTER_DIR/node1/faults" || fail "$mode: isolate wrote no fault file"
	grep -q 1 "$KVFS_CLUSTER_DIR/node0/faults" || fail "$mode: isolate wrote no fault file"
	sleep 0.5
	grep -q "blocked (fault injection)" "$("$C" log 1)" || fail "$mode: node 1 did not apply the fault file"
	"$C" heal >/dev/null
	sleep 0.5
	grep -q "unblocked (fault injection)" "$("$C" log 1)" || fail "$mode: node 1 did not heal"
	"$C" stop >/dev/null
	for i in 0 1 2; do
		[ -z "$("$C" pid $i)" ] || fail "$mode: node $i left after stop"
	done
	echo "$mode: ok"
done
