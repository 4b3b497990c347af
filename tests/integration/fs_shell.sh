#!/usr/bin/env bash
# fs_shell.sh KVFS — the mount as users drive it from a shell (SPEC §2, §3):
# start-up errors, echo/cat/cp/mv/rm/mkdir/rmdir/ls/find/touch/chmod/
# truncate/ln, an editor-style save, limits, .search protection, restart
# persistence of contents and metadata, daemon mode and SIGTERM shutdown.
KVFS=${1:?usage: fs_shell.sh KVFS_BINARY}
. "$(dirname "$0")/fs_lib.sh"
set -e

M=$T/mnt D=$T/data
mkdir -p "$M"

step() { echo "--- $*"; }
expect_fail() { # expect_fail PATTERN CMD... : CMD fails and stderr matches PATTERN
	local pat=$1 out
	shift
	if out=$("$@" 2>&1); then fail "'$*' succeeded, expected failure ($pat)"; fi
	echo "$out" | grep -q -- "$pat" || fail "'$*' said '$out', expected '$pat'"
}

step "start-up errors: one line, non-zero exit"
lines_of() { "$@" 2>&1 >/dev/null | wc -l; }
expect_fail "unknown option '--bogus'" "$KVFS" "$M" --data "$D" --bogus
[ "$(lines_of "$KVFS" "$M" --data "$D" --bogus)" = 1 ] || fail "--bogus: not one line"
expect_fail "missing MOUNTPOINT" "$KVFS" --data "$D"
expect_fail "No such file" "$KVFS" "$T/nope" --data "$D"
touch "$T/file"
expect_fail "not a directory" "$KVFS" "$T/file" --data "$D"
expect_fail "data directory" "$KVFS" "$M" --data "$T/file/sub"
mkdir -p "$T/full" && touch "$T/full/x"
expect_fail "is not empty" "$KVFS" "$T/full" --data "$D"
expect_fail "needs --listen" "$KVFS" "$M" --data "$D" --mode raft
expect_fail "needs a value" "$KVFS" "$M" --data
expect_fail "bad FUSE options" "$KVFS" "$M" --data "$D" -o no_such_option
# A port in use (control socket or peer address): one line, non-zero exit.
# The listener holding the port exits by itself after 30 s at the latest.
python3 -c 'import socket,sys,time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True); time.sleep(30)' > "$T/port" &
busy_pid=$!
for _ in $(seq 50); do [ -s "$T/port" ] && break; sleep 0.1; done
busy=$(cat "$T/port")
expect_fail "Address already in use" "$KVFS" "$M" --data "$T/d-ctl" --control "127.0.0.1:$busy"
[ "$(lines_of "$KVFS" "$M" --data "$T/d-ctl" --control "127.0.0.1:$busy")" = 1 ] || fail "busy control port: not one line"
expect_fail "Address already in use" "$KVFS" "$M" --data "$T/d-peer" --listen "127.0.0.1:$busy" --peers 127.0.0.1:1
kill "$busy_pid" 2>/dev/null; wait "$busy_pid" 2>/dev/null || true
[ "$(lines_of "$KVFS" "$M" --data "$D" -o no_such_option)" = 1 ] || fail "-o no_such_option: not one line"
"$KVFS" --help | grep -q "usage: kvfs MOUNTPOINT" || fail "--help"
"$KVFS" --version | grep -q "^kvfs [0-9]" || fail "--version"
is_mounted "$M" && fail "a failed start left a mount"

step "mount"
kv_mount "$M" "$D"
cd "$M"

step "echo, cat, append, cp, cmp"
echo hello > a.txt
[ "$(cat a.txt)" = hello ] || fail "cat after echo"
echo world >> a.txt
[ "$(cat a.txt)" = "$(printf 'hello\nworld')" ] || fail "append"
head -c 300000 /dev/urandom > "$T/rand"
cp "$T/rand" r.bin && cmp "$T/rand" r.bin || fail "cp of 300 kB"
[ "$(stat -c %s r.bin)" = 300000 ] || fail "size after cp"

step "mkdir, nested files, ls -l, find, du"
mkdir -p d1/d2/d3
echo deep > d1/d2/d3/f
ls -l d1 | grep -q "^d.* d2$" || fail "ls -l shows d2"
[ "$(find d1 | sort | tr '\n' ' ')" = "d1 d1/d2 d1/d2/d3 d1/d2/d3/f " ] || fail "find: $(find d1)"
du -s . >/dev/null || fail "du"
mkdir emptydir && rmdir emptydir && [ ! -e emptydir ] || fail "mkdir/rmdir"
expect_fail "File exists" mkdir d1

step "rmdir of a non-empty directory is ENOTEMPTY"
expect_fail "Directory not empty" rmdir d1/d2
step "removing the last file keeps its directory"
rm d1/d2/d3/f
[ -d d1/d2/d3 ] || fail "d3 vanished with its last file"
rmdir d1/d2/d3

step "mv: files, over an existing file, whole directories"
echo one > m1; echo two > m2
mv m1 m2
[ "$(cat m2)" = one ] && [ ! -e m1 ] || fail "mv over existing"
mkdir -p tree/sub && for i in 1 2 3; do echo "$i" > tree/sub/f$i; done; echo top > tree/t
mv tree moved
[ ! -e tree ] && [ "$(cat moved/sub/f2)" = 2 ] && [ "$(cat moved/t)" = top ] || fail "directory rename"
mkdir target_empty && mv moved target_empty/inside && [ "$(cat target_empty/inside/sub/f3)" = 3 ] || fail "mv into dir"
mkdir over_me && mv target_empty/inside over_me 2>/dev/null || true
mkdir -p ne1/x ne2/y
expect_fail "Directory not empty\|File exists" mv -T ne1 ne2

step "rm"
rm a.txt && [ ! -e a.txt ] || fail "rm"
rm -r ne1 ne2 && [ ! -e ne1 ] || fail "rm -r"

step "touch, chmod, stat"
touch new && [ -f new ] && [ "$(stat -c %s new)" = 0 ] || fail "touch new"
touch -d "2001-02-03 04:05:06" new
[ "$(stat -c %Y new)" = "$(date -d '2001-02-03 04:05:06' +%s)" ] || fail "touch -d sets mtime"
chmod 640 new && [ "$(stat -c %a new)" = 640 ] || fail "chmod file"
chmod 700 d1 && [ "$(stat -c %a d1)" = 700 ] || fail "chmod dir"
[ "$(stat -c %U new)" = "$(id -un)" ] || fail "owner is the caller"
expect_fail "not permitted" chmod 700 "$M"   # the root has no key to keep it in
[ "$(stat -c %a "$M")" = 755 ] || fail "the root's mode changed"

step "a directory's mtime follows its entries (Python's import cache relies on it)"
mkdir dm && touch -d "2001-02-03 04:05:06" dm
old=$(stat -c %Y dm)
[ "$old" = "$(date -d '2001-02-03 04:05:06' +%s)" ] || fail "touch -d sets a directory's mtime"
for op in "touch dm/f" "mkdir dm/sub" "mv dm/f dm/g" "rm dm/g" "rmdir dm/sub" "ln -s x dm/l"; do
	touch -d "2001-02-03 04:05:06" dm
	$op
	[ "$(stat -c %Y dm)" -gt "$old" ] || fail "$op does not move the directory's mtime"
done
python3 -c '
import sys
sys.path.insert(0, "dm")
open("dm/moda.py", "w").write("A = 1\n")
import moda
open("dm/modb.py", "w").write("B = 2\n")
import modb
assert modb.B == 2
' || fail "a module written after a first import from the same directory cannot be imported"

step "open(O_RDONLY|O_TRUNC) truncates, as on Linux"
printf hello > rotrunc
python3 -c 'import os; os.close(os.open("rotrunc", os.O_RDONLY | os.O_TRUNC))' || fail "O_RDONLY|O_TRUNC open"
[ "$(stat -c %s rotrunc)" = 0 ] || fail "O_RDONLY|O_TRUNC left $(stat -c %s rotrunc) bytes"

step "truncate: shrink, grow (sparse zeros), ftruncate via shell"
printf 0123456789 > t
truncate -s 4 t && [ "$(cat t)" = 0123 ] || fail "truncate shrink"
truncate -s 8 t && [ "$(od -An -c t | tr -d ' \n')" = '0123\0\0\0\0' ] || fail "truncate grow: $(od -c t)"
dd if=/dev/zero of=sparse bs=1 count=1 seek=100000 status=none
[ "$(stat -c %s sparse)" = 100001 ] || fail "sparse write size"
: > t && [ "$(stat -c %s t)" = 0 ] || fail "O_TRUNC"

step "symlinks and hard links"
echo target > tgt
ln -s tgt sl && [ "$(readlink sl)" = tgt ] && [ "$(cat sl)" = target ] || fail "ln -s"
ls -l sl | grep -q "^l" || fail "ls -l shows a link"
expect_fail "Operation not permitted" ln tgt hard

step "editor-style save: temp file, fsync, rename over"
echo "version 1" > doc.txt
python3 - <<'PY'
import os
fd = os.open("doc.txt.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, b"version 2\n")
os.fsync(fd)
os.close(fd)
os.rename("doc.txt.tmp", "doc.txt")
PY
[ "$(cat doc.txt)" = "version 2" ] && [ ! -e doc.txt.tmp ] || fail "editor save"

step "reads of a file open for writing see the writes"
python3 - <<'PY'
import os
fd = os.open("rw", os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"abcdef")
os.pwrite(fd, b"XY", 2)
assert os.pread(fd, 100, 0) == b"abXYef", "read back"
fd2 = os.open("rw", os.O_RDONLY)
assert os.read(fd2, 100) == b"abXYef", "second descriptor"
os.ftruncate(fd, 3)
assert os.pread(fd, 100, 0) == b"abX"
os.close(fd2); os.close(fd)
assert open("rw", "rb").read() == b"abX"
PY

step "a file unlinked or renamed over while open: read, write and fstat go on"
python3 - <<'PY'
import os
with open("gone", "wb") as f:
    f.write(b"still here")
fd = os.open("gone", os.O_RDWR)
os.unlink("gone")
assert not os.path.exists("gone")
st = os.fstat(fd)   # the kernel asks by inode only, without the descriptor
assert st.st_size == 10 and st.st_nlink == 0, (st.st_size, st.st_nlink)
assert os.pread(fd, 100, 0) == b"still here"
os.pwrite(fd, b"!", 10)
assert os.fstat(fd).st_size == 11
os.close(fd)
assert not os.path.exists("gone"), "a write after unlink must not resurrect it"
with open("old", "wb") as f:
    f.write(b"old contents")
with open("new", "wb") as f:
    f.write(b"new")
fd = os.open("old", os.O_RDONLY)
os.rename("new", "old")
assert os.fstat(fd).st_size == 12, "fstat of a file renamed over while open"
assert os.pread(fd, 100, 0) == b"old contents"
os.close(fd)
assert open("old", "rb").read() == b"new"
os.unlink("old")
# A reader holds the target open while a closed file is renamed over it
# (an editor's save): later writes to that name must be committed.
open("tgt", "w").write("one")
open("tmp", "w").write("two")
fd = os.open("tgt", os.O_RDONLY)
os.rename("tmp", "tgt")
open("tgt", "w").write("three")
assert os.pread(fd, 100, 0) == b"one", "the reader keeps the replaced file"
os.close(fd)
got = open("tgt", "rb").read()
assert got == b"three", f"write after a rename over an open file: {got!r}"
os.unlink("tgt")
PY
[ "$(cat <(exec 3<rw; rm -f rw; cat <&3))" = abX ] || fail "cat of an unlinked open file"

step "control-socket writes reach the kernel's caches at once (no 1 s wait)"
CLI="$(dirname "$KVFS")/kvfs-cli"
if [ -x "$CLI" ]; then
	cli() { "$CLI" --socket "unix:$D/control.sock" "$@" > /dev/null; }
	echo "version one" > sk.txt
	[ "$(cat sk.txt)" = "version one" ] && stat sk.txt > /dev/null  # cache pages and attributes
	cli put sk.txt "version two is longer"
	[ "$(stat -c %s sk.txt)" = 21 ] || fail "stat after a socket put: $(stat -c %s sk.txt)"
	[ "$(cat sk.txt)" = "version two is longer" ] || fail "cat after a socket put: $(cat sk.txt)"
	cli del sk.txt
	[ ! -e sk.txt ] || fail "a socket delete still visible in the mount"
	cli put sk.txt "back"
	[ "$(cat sk.txt)" = back ] || fail "recreated over the socket"
	rm sk.txt
else
	echo "(no kvfs-cli next to $KVFS: skipped)"
fi

step "limits: NAME_MAX, key length"
long=$(printf 'n%.0s' $(seq 1 256))
expect_fail "File name too long" touch "$long"
ok=$(printf 'n%.0s' $(seq 1 255))
touch "$ok" && [ -e "$ok" ] || fail "a 255-byte name"
rm "$ok"
expect_fail "File too large" truncate -s 200M big

step ".search is reserved"
expect_fail "" mkdir .search
expect_fail "" rmdir .search
expect_fail "" touch .search/x
expect_fail "" mv new .search

step "statfs"
df -P . | tail -1 | grep -q kvfs || fail "df shows the mount"
[ "$(stat -f -c %l .)" = 255 ] || fail "namemax"

step "allow_other,default_permissions: new files belong to the caller, modes are enforced"
if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
	cd /
	kv_umount "$M"
	chmod 755 "$T" "$M"
	kv_mount "$M" "$D" -o allow_other,default_permissions
	cd "$M"
	mkdir pub && chmod 1777 pub
	echo secret > priv && chmod 600 priv
	as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
	as_nobody sh -c "echo hi > '$M/pub/mine' && mkdir '$M/pub/dir'" || fail "nobody writes in pub"
	[ "$(stat -c %u:%g pub/mine)" = 65534:65534 ] || fail "owner of pub/mine: $(stat -c %u:%g pub/mine)"
	[ "$(stat -c %u:%g pub/dir)" = 65534:65534 ] || fail "owner of pub/dir"
	expect_fail "Permission denied" as_nobody cat "$M/priv"
	expect_fail "Permission denied" as_nobody sh -c "echo x > '$M/rootfile'"
	expect_fail "Operation not permitted" as_nobody chmod 777 "$M/priv"
	rm -r pub priv
else
	echo "(setpriv or user nobody missing: skipped)"
fi

step "restart keeps contents and metadata"
cd /
snap() { (cd "$M" && find . -mindepth 1 -path ./.search -prune -o -printf '%p %y %s %m %U %G %T@\n' | sort &&
	  find . -path ./.search -prune -o -type f -print0 | sort -z | xargs -0 md5sum); }
before=$(snap)
kv_umount "$M"
kv_mount "$M" "$D"
after=$(snap)
[ "$before" = "$after" ] || { diff <(echo "$before") <(echo "$after") >&2; fail "tree differs after restart"; }

step "SIGTERM unmounts cleanly, exit 0"
kill -TERM "$KV_PID"
rc=0; wait "$KV_PID" || rc=$?
[ "$rc" = 0 ] || fail "status $rc after SIGTERM"
is_mounted "$M" && fail "still mounted after SIGTERM"

step "SIGINT too"
kv_mount "$M" "$D"
kill -INT "$KV_PID"
rc=0; wait "$KV_PID" || rc=$?
[ "$rc" = 0 ] || fail "status $rc after SIGINT"
is_mounted "$M" && fail "still mounted after SIGINT"

step "daemon mode: returns once mounted, fusermount3 -u ends it"
"$KVFS" "$M" --data "$D" || fail "daemon start"
KV_MOUNTS="$KV_MOUNTS $M"
is_mounted "$M" || fail "not mounted after the daemon returned"
[ "$(cat "$M/doc.txt")" = "version 2" ] || fail "daemon sees data"
fusermount3 -u "$M"
for i in $(seq 1 100); do
	pgrep -f "^$KVFS $M " >/dev/null || break
	sleep 0.05
done
echo "PASS"
