#!/usr/bin/env python3
"""fs_model.py KVFS [--seed N] [--steps N] — randomized model test.

Runs one long seeded sequence of file operations both on a kvfs mount and on
a scratch local directory (the model), and after every step compares the two
trees: names, types, sizes, permission bits, file contents, symlink targets,
and mtimes of regular files (every operation that changes a file ends with an
explicit utime so both sides agree). Each operation must also fail with the
same errno on both sides. The seed is printed on failure; rerun with --seed.
"""
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fs_mount import Mount, skip_without_fuse  # noqa: E402


class Mismatch(Exception):
    pass


def snapshot(root):
    """Returns {relpath: (type, size, mode, content/target, mtime_ns)}."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != ".search"]
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(p)
            mode = st.st_mode & 0o7777
            if os.path.islink(p):
                out[rel] = ("l", 0, None, os.readlink(p), None)
            elif os.path.isdir(p):
                out[rel] = ("d", 0, mode, None, None)
            else:
                with open(p, "rb") as f:
                    data = f.read()
                out[rel] = ("f", st.st_size, mode, data, st.st_mtime_ns)
    return out


class Runner:
    def __init__(self, mnt, local, rng):
        self.roots = [mnt, local]
        self.rng = rng
        self.clock = 1_600_000_000 * 10**9
        self.log = []

    # -- random names ---------------------------------------------------------
    def existing(self, kind=None):
        items = [(p, v[0]) for p, v in snapshot(self.roots[1]).items()]
        if kind:
            items = [i for i in items if i[1] in kind]
        return self.rng.choice(items)[0] if items else None

    def dirs(self):
        return [""] + [p for p, v in snapshot(self.roots[1]).items() if v[0] == "d"]

    def fresh(self):
        parent = self.rng.choice(self.dirs())
        name = self.rng.choice(["a", "b", "c", "file", "x.txt", "dir", "%odd", "sp ace", "n"]) + \
            str(self.rng.randrange(12))
        return os.path.join(parent, name) if parent else name

    def anypath(self):
        return self.existing() if self.rng.random() < 0.7 and self.existing() else self.fresh()

    # -- applying an operation to both trees -----------------------------------
    def both(self, desc, fn):
        """Runs fn(root) on the mount and on the model; results and errnos must match."""
        self.log.append(desc)
        res = []
        for root in self.roots:
            try:
                res.append(("ok", fn(root)))
            except OSError as e:
                res.append(("err", errno.errorcode.get(e.errno, e.errno)))
        if res[0] != res[1]:
            raise Mismatch(f"{desc}: kvfs {res[0]!r} vs local {res[1]!r}")
        return res[0]

    def stamp(self, rel):
        self.clock += self.rng.randrange(1, 10**9)
        t = self.clock
        # Follows symlinks: a write through a link changed its target.
        self.both(f"utime {rel}", lambda r: os.utime(os.path.join(r, rel), ns=(t, t)))

    def data(self):
        n = self.rng.choice([0, 1, 5, 100, 4096, 5000, 70000])
        return bytes(self.rng.getrandbits(8) for _ in range(min(n, 2000))) * (n // 2000 + 1) \
            if n else b""

    # -- operations ------------------------------------------------------------
    def op_write_file(self):
        rel = self.anypath()
        d = self.data()[: self.rng.choice([0, 7, 300, 70000])]

        def fn(r):
            with open(os.path.join(r, rel), "wb") as f:
                f.write(d)
        if self.both(f"write {rel} {len(d)}B", fn)[0] == "ok":
            self.stamp(rel)

    def op_fd_session(self):
        """Several writes, reads and truncates through one descriptor per side."""
        rel = self.existing("f") or self.fresh()
        flags = os.O_RDWR | os.O_CREAT | (os.O_APPEND if self.rng.random() < 0.2 else 0)
        fds = []
        r = self.both(f"open {rel} {flags:#o}", lambda root: fds.append(
            os.open(os.path.join(root, rel), flags, 0o644)))
        if r[0] != "ok":
            return
        try:
            for _ in range(self.rng.randrange(1, 8)):
                k = self.rng.random()
                if k < 0.5:
                    off = self.rng.choice([0, 3, 4096, 10000, 200000])
                    buf = self.data()[:self.rng.choice([1, 10, 5000])]
                    self.both(f"pwrite {rel} @{off} {len(buf)}B",
                              lambda root: os.pwrite(fds[self.roots.index(root)], buf, off))
                elif k < 0.75:
                    off = self.rng.choice([0, 2, 4096, 9000])
                    self.both(f"pread {rel} @{off}",
                              lambda root: os.pread(fds[self.roots.index(root)], 100000, off))
                else:
                    size = self.rng.choice([0, 1, 100, 8192, 300000])
                    self.both(f"ftruncate {rel} {size}",
                              lambda root: os.ftruncate(fds[self.roots.index(root)], size))
            self.both(f"fstat-size {rel}", lambda root: os.fstat(fds[self.roots.index(root)]).st_size)
        finally:
            for fd in fds:
                os.close(fd)
        if os.path.exists(os.path.join(self.roots[1], rel)):
            self.stamp(rel)

    def op_append(self):
        rel = self.existing("f")
        if not rel:
            return
        d = self.data()[:3000]

        def fn(r):
            with open(os.path.join(r, rel), "ab") as f:
                f.write(d)
        self.both(f"append {rel}", fn)
        self.stamp(rel)

    def op_truncate(self):
        rel = self.anypath()
        size = self.rng.choice([0, 3, 5000, 100000])
        if self.both(f"truncate {rel} {size}",
                     lambda r: os.truncate(os.path.join(r, rel), size))[0] == "ok":
            self.stamp(rel)

    def op_mkdir(self):
        rel = self.anypath()
        self.both(f"mkdir {rel}", lambda r: os.mkdir(os.path.join(r, rel), 0o755))

    def op_rmdir(self):
        rel = self.existing("d") if self.rng.random() < 0.8 else self.anypath()
        if rel:
            self.both(f"rmdir {rel}", lambda r: os.rmdir(os.path.join(r, rel)))

    def op_unlink(self):
        rel = self.anypath()
        self.both(f"unlink {rel}", lambda r: os.unlink(os.path.join(r, rel)))

    def op_rename(self):
        src = self.existing()
        if not src:
            return
        dst = self.existing() if self.rng.random() < 0.4 else self.fresh()
        if dst and (dst + "/").startswith(src + "/"):
            return  # into itself: EINVAL on both, but the kernel answers that
        self.both(f"rename {src} -> {dst}",
                  lambda r: os.rename(os.path.join(r, src), os.path.join(r, dst)))

    def op_chmod(self):
        rel = self.existing("fd")
        if rel:
            mode = self.rng.choice([0o600, 0o644, 0o755, 0o700, 0o640, 0o2755])
            self.both(f"chmod {rel} {mode:o}", lambda r: os.chmod(os.path.join(r, rel), mode))

    def op_symlink(self):
        rel = self.fresh()
        tgt = self.rng.choice(["a0", "../x", "nowhere/deep", "dir1/file2"])
        self.both(f"symlink {rel} -> {tgt}", lambda r: os.symlink(tgt, os.path.join(r, rel)))

    def op_read(self):
        rel = self.existing("f")
        if rel:
            def fn(r):
                with open(os.path.join(r, rel), "rb") as f:
                    return f.read()
            self.both(f"read {rel}", fn)

    def op_listdir(self):
        rel = self.rng.choice(self.dirs())
        self.both(f"listdir {rel}", lambda r: sorted(
            n for n in os.listdir(os.path.join(r, rel)) if n != ".search"))

    OPS = [(op_write_file, 14), (op_fd_session, 8), (op_append, 5), (op_truncate, 4),
           (op_mkdir, 8), (op_rmdir, 4), (op_unlink, 6), (op_rename, 10), (op_chmod, 4),
           (op_symlink, 3), (op_read, 5), (op_listdir, 4)]

    def step(self):
        fns, weights = zip(*self.OPS)
        self.rng.choices(fns, weights)[0](self)
        a, b = snapshot(self.roots[0]), snapshot(self.roots[1])
        if a != b:
            diffs = []
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    va, vb = a.get(k), b.get(k)
                    short = lambda v: v if v is None else (v[0], v[1], oct(v[2] or 0),
                                                           (v[3] or b"")[:40], v[4])
                    diffs.append(f"  {k}: kvfs {short(va)} vs local {short(vb)}")
            raise Mismatch("trees differ after '" + self.log[-1] + "':\n" + "\n".join(diffs[:10]))


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    kvfs = args[0]
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else \
        int(os.environ.get("KVFS_SEED", random.randrange(1 << 30)))
    steps = int(args[args.index("--steps") + 1]) if "--steps" in args else 600
    skip_without_fuse()
    rng = random.Random(seed)
    print(f"seed {seed}, {steps} steps")
    with tempfile.TemporaryDirectory(prefix="kvfs-model.") as tmp:
        local = os.path.join(tmp, "local")
        os.mkdir(local)
        os.umask(0o022)
        with Mount(kvfs, tmp) as m:
            r = Runner(m.mnt, local, rng)
            try:
                for i in range(steps):
                    r.step()
                    if i and i % 200 == 0:
                        # Restart in the middle: the model must still match.
                        m.restart()
                        r.step()
            except Mismatch as e:
                print(f"FAIL (seed {seed}, step {len(r.log)}): {e}")
                print("last operations:\n  " + "\n  ".join(r.log[-8:]))
                return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
