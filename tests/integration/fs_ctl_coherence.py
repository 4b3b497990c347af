#!/usr/bin/env python3
"""fs_ctl_coherence.py — a write over the control socket is visible in the
same node's mount as soon as its reply arrives (read-your-writes between the
socket and the mount), although the mount caches entries and attributes for
1 s.

The node replies to a socket write only after the mount's invalidation thread
has dropped the kernel's caches of the keys it changed (cluster/node.h,
node_set_change_fence; fs/main.c). Each round caches a file's entry,
attributes and pages through the mount, changes the key over one persistent
JSON-lines connection, and checks at once through the mount: the new size
(stat), the new contents (cat), gone after a delete (also while a reader
holds the file open: the descriptor keeps the contents, the name goes, and a
new file of that name can be created through the mount), back after a
re-put. Then one batch of 10,000 keys whose attributes the mount has
cached: none may show its old size once the reply has come.
Without the fence the mount shows the old state in a few rounds per thousand
(measured: 0-3 stale answers per 400 rounds), so the test runs
FS_COHERENCE_ROUNDS (default 1500) rounds and fails on the first stale one.

Usage: fs_ctl_coherence.py KVFS_BINARY; exit 77 without /dev/fuse.
"""
import json
import os
import shutil
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fs_mount import Mount  # noqa: E402

ROUNDS = int(os.environ.get("FS_COHERENCE_ROUNDS", "1500"))
BURST = int(os.environ.get("FS_COHERENCE_BURST", "10000"))


class Ctl:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")

    def req(self, **o):
        self.f.write((json.dumps(o) + "\n").encode())
        self.f.flush()
        r = json.loads(self.f.readline())
        if not r.get("ok"):
            raise RuntimeError(f"{o}: {r}")
        return r

    def close(self):
        self.f.close()
        self.s.close()


def burst(ctl, mnt):
    """One atomic batch changes more keys than the invalidation thread's
    queue used to hold (4,096: the rest were dropped, and the kernel showed
    their old sizes for up to the attribute timeout although the reply had
    come). Every file's attributes are cached through the mount first."""
    n = BURST
    ctl.req(op="batch", ops=[{"op": "put", "key": f"burst/f{i}", "value": "a"}
                             for i in range(n)])
    for i in range(n):
        os.stat(os.path.join(mnt, "burst", f"f{i}"))
    ctl.req(op="batch", ops=[{"op": "put", "key": f"burst/f{i}", "value": "bbbb"}
                             for i in range(n)])
    bad = [i for i in range(n) if os.stat(os.path.join(mnt, "burst", f"f{i}")).st_size != 4]
    if bad:
        return [f"burst: {len(bad)} of {n} files show their old size after a batch put "
                f"(first: burst/f{bad[0]})"]
    return []


def main():
    if not os.path.exists("/dev/fuse"):
        print("no /dev/fuse: skipped")
        return 77
    kvfs = os.path.abspath(sys.argv[1])
    scratch = tempfile.mkdtemp(prefix="kvfs-coh-")
    stale = []
    try:
        with Mount(kvfs, scratch) as m:
            ctl = Ctl(os.path.join(m.data, "control.sock"))
            for i in range(ROUNDS):
                k = f"c{i % 7}.txt"
                p = os.path.join(m.mnt, k)
                with open(p, "w") as fh:
                    fh.write("mount")
                with open(p) as fh:
                    fh.read()
                os.stat(p)
                v = f"socket value {i}"
                ctl.req(op="put", key=k, value=v)
                size = os.stat(p).st_size
                if size != len(v):
                    stale.append(f"round {i}: stat size {size} after a socket put of {len(v)} bytes")
                with open(p) as fh:
                    got = fh.read()
                if got != v:
                    stale.append(f"round {i}: read {got!r} after a socket put of {v!r}")
                # A reader holding the file open keeps its contents, not
                # its name (as on a local disk when another process removes
                # a file).
                fd = os.open(p, os.O_RDONLY)
                ctl.req(op="delete", key=k)
                if os.path.exists(p):
                    stale.append(f"round {i}: exists after a socket delete (a reader holds it open)")
                # ...and the name can be created afresh through the mount
                # meanwhile: a new file, the reader keeps the old one.
                try:
                    with open(p, "w") as fh:
                        fh.write("again")
                    got = ctl.req(op="get", key=k)["value"]
                except OSError as e:
                    got = repr(e)
                if got != "again":
                    stale.append(f"round {i}: recreating through the mount gave {got!r}")
                held = os.read(fd, 100).decode()
                os.close(fd)
                if held != v:
                    stale.append(f"round {i}: the open reader read {held!r}, not {v!r}")
                ctl.req(op="put", key=k, value="back")
                try:
                    with open(p) as fh:
                        got = fh.read()
                except OSError as e:
                    got = repr(e)
                if got != "back":
                    stale.append(f"round {i}: read {got!r} after a socket re-put")
                if stale:
                    break
            if not stale:
                stale += burst(ctl, m.mnt)
            ctl.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for s in stale:
        print("FAIL", s)
    print("OK" if not stale else "FAILED", f"({ROUNDS if not stale else i + 1} rounds)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
