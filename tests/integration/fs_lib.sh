# fs_lib.sh — helpers for the kvfs mount tests (sourced, not run).
#   KVFS=path/to/kvfs; . fs_lib.sh
# Every mount made with kv_mount is unmounted and every process started is
# killed on exit, also on failure (trap EXIT). Scratch space is one mktemp -d.
set -u

if [ ! -e /dev/fuse ]; then
	echo "SKIP: /dev/fuse is missing"
	exit 77
fi
KVFS=$(realpath "$KVFS" 2>/dev/null || echo "$KVFS")
[ -x "$KVFS" ] || { echo "FAIL: kvfs binary '$KVFS' not executable"; exit 1; }

T=$(mktemp -d /tmp/kvfs-test.XXXXXX)
KV_PIDS=""
KV_MOUNTS=""

kv_cleanup() {
	local rc=$? m p
	if [ "$rc" != 0 ] && [ -s "$T/kvfs.log" ]; then
		echo "--- last lines of the kvfs log:" >&2
		tail -25 "$T/kvfs.log" >&2
	fi
	for m in $KV_MOUNTS; do
		if grep -q " $m fuse" /proc/mounts 2>/dev/null; then
			fusermount3 -u -z "$m" 2>/dev/null || true
		fi
	done
	for p in $KV_PIDS; do
		kill -9 "$p" 2>/dev/null || true
	done
	for p in $KV_PIDS; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$T"
}
trap kv_cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

is_mounted() {
	grep -q " $1 fuse" /proc/mounts
}

# kv_mount MNT DATA [extra args] — starts kvfs in the foreground (so that its
# pid is ours), waits until the mount is up; sets KV_PID.
kv_mount() {
	local mnt=$1 data=$2 i
	shift 2
	mkdir -p "$mnt"
	"$KVFS" "$mnt" --data "$data" -f "$@" 2>>"$T/kvfs.log" &
	KV_PID=$!
	KV_PIDS="$KV_PIDS $KV_PID"
	case " $KV_MOUNTS " in *" $mnt "*) ;; *) KV_MOUNTS="$KV_MOUNTS $mnt" ;; esac
	for i in $(seq 1 200); do
		is_mounted "$mnt" && return 0
		kill -0 "$KV_PID" 2>/dev/null || { tail -5 "$T/kvfs.log" >&2; fail "kvfs exited before mounting $mnt"; }
		sleep 0.05
	done
	fail "kvfs did not mount $mnt within 10 s"
}

# kv_umount MNT — fusermount3 -u, then waits for the kvfs process (KV_PID).
kv_umount() {
	local mnt=$1 rc=0
	fusermount3 -u "$mnt" || fail "fusermount3 -u $mnt failed"
	wait "$KV_PID" || rc=$?
	[ "$rc" = 0 ] || fail "kvfs exited with status $rc after unmount"
}
