#!/usr/bin/env python3
"""fs_rename_race.py — a directory rename is atomic also while other threads
create, write and remove files inside the directory.

The kernel does not lock a directory that is renamed against creates inside
it, so a create of d/x can reach kvfs while d is being renamed to e. Done
wrongly, the create writes the key d/x after the move of d/* to e/*, and the
old directory comes back with the late files while e holds the others (on
a local disk d never exists again).

Each round: mkdir d, a few files in it; threads create new files in d, and
rewrite (open, write, close) the existing ones; the main thread renames d to
e meanwhile. Afterwards d must not exist, every file whose create returned
must be in e, and every rewrite whose close() returned 0 must be in e with
its contents.

Usage: fs_rename_race.py KVFS_BINARY; exit 77 without /dev/fuse.
"""
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fs_mount import Mount, skip_without_fuse  # noqa: E402

ROUNDS = int(os.environ.get("FS_RENAME_RACE_ROUNDS", "40"))
CREATORS = 2
EXISTING = 20


def one_round(mnt, rnd):
    d = os.path.join(mnt, f"d{rnd}")
    e = os.path.join(mnt, f"e{rnd}")
    os.mkdir(d)
    for i in range(EXISTING):
        with open(os.path.join(d, f"old{i}"), "w") as f:
            f.write("before")
    stop = threading.Event()
    started = threading.Barrier(CREATORS + 2)
    created = [[] for _ in range(CREATORS)]
    rewritten = {}

    def creator(w):
        started.wait()
        i = 0
        while not stop.is_set():
            name = f"new{w}-{i}"
            try:
                fd = os.open(os.path.join(d, name), os.O_CREAT | os.O_WRONLY, 0o644)
                os.close(fd)
                created[w].append(name)
            except OSError:
                pass
            i += 1

    def rewriter():
        started.wait()
        n = 0
        while not stop.is_set():
            name = f"old{n % EXISTING}"
            data = f"after {n}"
            try:
                fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_TRUNC)
                try:
                    os.write(fd, data.encode())
                finally:
                    os.close(fd)
                rewritten[name] = data
            except OSError:
                pass
            n += 1

    threads = [threading.Thread(target=creator, args=(w,)) for w in range(CREATORS)]
    threads.append(threading.Thread(target=rewriter))
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.01)
    os.rename(d, e)
    time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()

    bad = []
    if os.path.lexists(d):
        bad.append(f"round {rnd}: {d} exists again after its rename, with "
                   f"{sorted(os.listdir(d))[:4]}")
    have = set(os.listdir(e))
    lost = [n for c in created for n in c if n not in have]
    if lost:
        bad.append(f"round {rnd}: {len(lost)} files created in the directory are not in "
                   f"its new name (first: {lost[0]})")
    for name, data in rewritten.items():
        try:
            with open(os.path.join(e, name)) as f:
                got = f.read()
        except OSError as ex:
            got = repr(ex)
        # A later rewrite may have won over this one: any "after" is a
        # committed rewrite; "before" only if nothing was rewritten after.
        if not got.startswith("after"):
            bad.append(f"round {rnd}: {name} reads {got!r}, a rewrite of it returned")
    return bad


def main():
    skip_without_fuse()
    kvfs = os.path.abspath(sys.argv[1])
    scratch = tempfile.mkdtemp(prefix="kvfs-rnrace-")
    bad = []
    try:
        with Mount(kvfs, scratch) as m:
            for rnd in range(ROUNDS):
                bad += one_round(m.mnt, rnd)
                if bad:
                    break
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for b in bad:
        print("FAIL", b)
    print("OK" if not bad else "FAILED", f"({ROUNDS} rounds)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
