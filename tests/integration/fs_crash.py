#!/usr/bin/env python3
"""fs_crash.py KVFS [--seed N] [--cycles N] — SIGKILL crash test (SPEC §6).

Writer threads commit self-checking files through the mount (plain
overwrite with several partial writes, O_TRUNC rewrite, and editor-style
temp + fsync + rename) while kvfs is SIGKILLed at a random moment. The dead
mount is dropped with fusermount3 -u -z and kvfs restarted on the same data.
After every restart:
  * every file whose close() (or rename, for editor-style saves) returned 0
    holds that version or a newer attempted one, complete;
  * no file anywhere has torn contents (each carries its length and hash).
"""
import errno
import hashlib
import os
import random
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fs_mount import Mount, skip_without_fuse  # noqa: E402

WRITERS = 4
FILES_PER_WRITER = 8


def make(name, ver):
    rng = random.Random(f"{name}:{ver}")
    n = rng.choice([0, 1, 100, 4096, 20000, 150000])
    body = rng.randbytes(n)
    head = f"{name} {ver} {n} {hashlib.sha256(body).hexdigest()}\n".encode()
    return head + body


def parse(data):
    """Returns (name, ver) of a complete file, or raises ValueError."""
    nl = data.index(b"\n")
    name, ver, n, h = data[:nl].decode().split(" ")
    body = data[nl + 1:]
    if len(body) != int(n) or hashlib.sha256(body).hexdigest() != h:
        raise ValueError(f"torn: header says {n} bytes, got {len(body)}")
    return name, int(ver)


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}      # name -> highest version whose commit returned 0
        self.attempted = {}  # name -> highest version ever attempted
        self.next = {}


def writer(mnt, st, wid, rng, stop):
    names = [f"w{wid}/f{i}" for i in range(FILES_PER_WRITER)]
    try:
        os.makedirs(os.path.join(mnt, f"w{wid}"), exist_ok=True)
    except OSError:
        return
    while not stop.is_set():
        name = rng.choice(names)
        with st.lock:
            ver = st.next.get(name, 1)
            st.next[name] = ver + 1
            st.attempted[name] = ver
        data = make(name, ver)
        path = os.path.join(mnt, name)
        how = rng.random()
        try:
            if how < 0.4:  # several partial writes, then close
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    for i in range(0, len(data), 7000):
                        os.write(fd, data[i:i + 7000])
                finally:
                    os.close(fd)  # raises if the commit failed
            elif how < 0.7:
                with open(path, "wb") as f:
                    f.write(data)
            else:  # editor-style save
                tmp = path + ".tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, path)
        except OSError:
            return  # the mount died under us
        with st.lock:
            if ver > st.acked.get(name, 0):
                st.acked[name] = ver


def verify(mnt, st, cycle):
    problems = []
    for name, ver in sorted(st.acked.items()):
        try:
            with open(os.path.join(mnt, name), "rb") as f:
                got_name, got_ver = parse(f.read())
        except FileNotFoundError:
            problems.append(f"{name}: acknowledged version {ver} is missing")
            continue
        except ValueError as e:
            problems.append(f"{name}: {e}")
            continue
        if got_name != name.replace(".tmp", ""):
            problems.append(f"{name}: holds {got_name}")
        elif not ver <= got_ver <= st.attempted[name]:
            problems.append(f"{name}: version {got_ver}, acknowledged {ver}, "
                            f"attempted up to {st.attempted[name]}")
    for dirpath, dirnames, filenames in os.walk(mnt):
        if dirpath == mnt and ".search" in dirnames:
            dirnames.remove(".search")
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            try:
                with open(p, "rb") as f:
                    parse(f.read())
            except ValueError as e:
                problems.append(f"{os.path.relpath(p, mnt)}: {e}")
    if problems:
        raise AssertionError(f"cycle {cycle}:\n  " + "\n  ".join(problems[:20]))


def reader_close_does_not_commit_a_half_written_file(m):
    """The close of another descriptor (here a reader) must not commit what a
    writer has half written: after a crash the file holds its last committed
    contents, never the writer's unfinished ones."""
    path = os.path.join(m.mnt, "shared.txt")
    with open(path, "w") as f:
        f.write("COMMITTED\n")
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"PARTIAL")
    with open(path) as r:   # open + close of a second, read-only descriptor
        r.read()
    time.sleep(0.5)         # RELEASE reaches the daemon after close() returns
    m.kill()                # the writer never closed: nothing of it is acknowledged
    try:
        os.close(fd)
    except OSError:
        pass
    m.start()
    with open(path) as f:
        got = f.read()
    if got != "COMMITTED\n":
        raise AssertionError(f"a reader's close committed a half-written file: {got!r}")
    os.unlink(path)  # the cycles below verify every file of the mount
    print("reader close commits nothing of another descriptor's writes: ok")


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    kvfs = args[0]
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else \
        int(os.environ.get("KVFS_SEED", random.randrange(1 << 30)))
    cycles = int(args[args.index("--cycles") + 1]) if "--cycles" in args else 25
    skip_without_fuse()
    rng = random.Random(seed)
    print(f"seed {seed}, {cycles} cycles")
    st = State()
    with tempfile.TemporaryDirectory(prefix="kvfs-crash.") as tmp:
        with Mount(kvfs, tmp) as m:
            try:
                reader_close_does_not_commit_a_half_written_file(m)
                for cycle in range(cycles):
                    stop = threading.Event()
                    ts = [threading.Thread(target=writer,
                                           args=(m.mnt, st, w, random.Random(rng.random()), stop))
                          for w in range(WRITERS)]
                    for t in ts:
                        t.start()
                    time.sleep(rng.uniform(0.05, 0.6))
                    m.kill()
                    stop.set()
                    for t in ts:
                        t.join(timeout=30)
                        if t.is_alive():
                            raise AssertionError("a writer hung on the dead mount")
                    m.start()
                    verify(m.mnt, st, cycle)
                    print(f"cycle {cycle}: {sum(st.acked.values())} acknowledged versions ok")
                m.restart()
                verify(m.mnt, st, cycles)
            except AssertionError as e:
                print(f"FAIL (seed {seed}): {e}")
                return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
