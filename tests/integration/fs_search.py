#!/usr/bin/env python3
"""fs_search.py KVFS — the .search/ directory on a real mount (SPEC §4).

Checks listing order against scores (user.kvfs.scores of the query dir), name escaping
('%' -> %25, '/' -> %2F), that entries are symlinks reaching the real
files, phrase queries (quoted and .phrase/), the mode directories, that the
view is read-only, that deletes and overwrites show up at once, and that a
semantic query finds a Python document that never says "coding", and what
a restarted node serves while its index is still being rebuilt.
"""
import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fs_mount import Mount, free_port, skip_without_fuse  # noqa: E402

DOCS = {
    "py.txt": "Python is a programming language. Write software, functions, classes "
              "and scripts; debug the program and compile modules.",
    "docs/cat.txt": "The cat sat on the mat. A cat likes fish; the cat sleeps.",
    "docs/oil%.txt": "Pure olive oil pressed from Mediterranean olives, good for cooking.",
    "notes/garden.txt": "Tomatoes and roses grow in the garden in summer.",
}


def ctl(port, req):
    """One JSON-lines request on the control socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall((json.dumps(req) + "\n").encode())
        return json.loads(s.makefile("rb").readline())


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def listing(mnt, *parts):
    return os.listdir(os.path.join(mnt, ".search", *parts))


def scores(mnt, *parts):
    """[(name, score)] from the query directory's user.kvfs.scores attribute."""
    p = os.path.join(mnt, ".search", *parts)
    text = os.getxattr(p, "user.kvfs.scores").decode()
    return [(ln.split("\t")[0], float(ln.split("\t")[1])) for ln in text.splitlines()]


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    skip_without_fuse()
    with tempfile.TemporaryDirectory(prefix="kvfs-search.") as tmp, Mount(sys.argv[1], tmp) as m:
        mnt = m.mnt
        for k, v in DOCS.items():
            os.makedirs(os.path.dirname(os.path.join(mnt, k)), exist_ok=True)
            with open(os.path.join(mnt, k), "w") as f:
                f.write(v)
        try:
            check(".search" in os.listdir(mnt), ".search not listed at the root")
            check(sorted(listing(mnt)) == [".phrase", ".semantic", ".text", ".tfidf"],
                  f"mode directories: {listing(mnt)}")

            hits = listing(mnt, ".text", "cat")
            check(hits and hits[0] == "docs%2Fcat.txt", f".text/cat: {hits}")
            hits = listing(mnt, ".text", "olive")
            check(hits == ["docs%2Foil%25.txt"], f".text/olive escaping: {hits}")
            e = os.path.join(mnt, ".search", ".text", "olive", hits[0])
            check(os.path.islink(e), "entries are symlinks")
            check(os.readlink(e) == "../../../docs/oil%.txt", f"target {os.readlink(e)}")
            with open(e) as f:
                check(f.read() == DOCS["docs/oil%.txt"], "the symlink reaches the file")
            e = os.path.join(mnt, ".search", "olive", "docs%2Foil%25.txt")
            check(os.readlink(e) == "../../docs/oil%.txt", f"hybrid target {os.readlink(e)}")

            # Best first: scores never increase along the listing.
            for mode in ("", ".text", ".tfidf", ".semantic"):
                parts = [mode] if mode else []
                names = listing(mnt, *parts, "cat fish")
                check(names, f"{mode or 'hybrid'}/cat fish: no hits")
                ns = scores(mnt, *parts, "cat fish")
                check([n for n, _ in ns] == names, f"{mode or 'hybrid'}: scores {ns} vs {names}")
                sc = [v for _, v in ns]
                check(sc == sorted(sc, reverse=True), f"{mode or 'hybrid'} order vs scores {sc}")

            check(listing(mnt, '"sat on the mat"') == ["docs%2Fcat.txt"], "quoted phrase")
            check(listing(mnt, '"mat the on sat"') == [], "a phrase is an exact sequence")
            check(listing(mnt, ".phrase", "olive oil") == ["docs%2Foil%25.txt"], ".phrase mode")

            hits = listing(mnt, "coding")
            print(f"hybrid 'coding': {hits}")
            check("py.txt" in hits, f"semantic: 'coding' should find py.txt: {hits}")
            hits = listing(mnt, ".semantic", "coding")
            check(hits and hits[0] == "py.txt", f".semantic/coding ranks py.txt first: {hits}")

            # Writes are searchable at once; deletes vanish at once.
            with open(os.path.join(mnt, "notes/garden.txt"), "w") as f:
                f.write("Zucchini everywhere.")
            check(listing(mnt, ".text", "zucchini") == ["notes%2Fgarden.txt"], "overwrite indexed")
            check(listing(mnt, ".text", "tomatoes") == [], "stale postings after overwrite")
            os.unlink(os.path.join(mnt, "notes/garden.txt"))
            check(listing(mnt, ".text", "zucchini") == [], "deleted file still listed")

            # The scores attribute is as fresh as a listing (it used to
            # answer from a result kept for 5 s), and only a query's hits
            # are entries of its directory.
            with open(os.path.join(mnt, "notes/x1.txt"), "w") as f:
                f.write("xatword one")
            check([n for n, _ in scores(mnt, ".text", "xatword")] == ["notes%2Fx1.txt"],
                  "scores of a new word")
            with open(os.path.join(mnt, "notes/x2.txt"), "w") as f:
                f.write("xatword two")
            os.unlink(os.path.join(mnt, "notes/x1.txt"))
            ns = [n for n, _ in scores(mnt, ".text", "xatword")]
            check(ns == ["notes%2Fx2.txt"], f"scores right after a write and a delete: {ns}")
            check(os.path.lexists(os.path.join(mnt, ".search", ".text", "xatword",
                                               "notes%2Fx2.txt")), "a hit is an entry")
            check(not os.path.lexists(os.path.join(mnt, ".search", ".text", "nosuchword",
                                                   "py.txt")),
                  "a key that is not a hit of the query is no entry of its directory")

            # A rename is one atomic batch, and search shows it whole: the
            # file is found exactly once in every listing taken while it is
            # renamed back and forth (listings used to miss it now and then).
            a, b = os.path.join(mnt, "notes/mv1.txt"), os.path.join(mnt, "notes/mv2.txt")
            with open(a, "w") as f:
                f.write("mvword moves")
            seen, stop = {}, threading.Event()

            def lister():
                qdir = os.path.join(mnt, ".search", ".text", "mvword")
                while not stop.is_set():
                    n = len(os.listdir(qdir))
                    seen[n] = seen.get(n, 0) + 1

            t = threading.Thread(target=lister)
            t.start()
            try:
                for i in range(1500):
                    os.rename(a, b) if i % 2 == 0 else os.rename(b, a)
            finally:
                stop.set()
                t.join()
            print(f"hits per listing during 1500 renames: {seen}")
            check(set(seen) == {1}, f"a renamed file is found once in every listing: {seen}")

            # Read-only and reserved.
            for fn, what in ((lambda: os.mkdir(os.path.join(mnt, ".search")), "mkdir .search"),
                             (lambda: os.rmdir(os.path.join(mnt, ".search")), "rmdir .search"),
                             (lambda: open(os.path.join(mnt, ".search", "cat", "new"), "w"),
                              "create in a query"),
                             (lambda: os.unlink(os.path.join(mnt, ".search", "cat",
                                                             "docs%2Fcat.txt")), "unlink a hit"),
                             (lambda: os.rename(os.path.join(mnt, "py.txt"),
                                                os.path.join(mnt, ".search", "x")), "rename in")):
                try:
                    fn()
                except OSError as err:
                    check(err.errno in (errno.EEXIST, errno.EPERM, errno.EACCES, errno.EROFS, errno.EISDIR),
                          f"{what}: {err}")
                else:
                    raise AssertionError(f"{what} succeeded")

            # Results survive a restart (the index is persistent or rebuilt).
            before = listing(mnt, ".text", "cat")
            m.restart()
            check(listing(mnt, ".text", "cat") == before, "results differ after restart")
            out = subprocess.run(["ls", "-U", os.path.join(mnt, ".search", ".text", "cat")],
                                 capture_output=True, text=True).stdout.split()
            check(out == before, f"ls -U shows rank order: {out}")

            # While the index is still being rebuilt after a start (held
            # back here by KVFS_INDEX_DELAY_MS): files are served, a search
            # over the control socket answers "unavailable" at once (it runs
            # on the node's event loop), a .search listing waits for the
            # rebuild and then answers in full.
            port = free_port()
            m.args = ["--control", f"127.0.0.1:{port}"]
            os.environ["KVFS_INDEX_DELAY_MS"] = "1500"
            try:
                m.restart()
            finally:
                del os.environ["KVFS_INDEX_DELAY_MS"]
            with open(os.path.join(mnt, "docs/cat.txt")) as f:
                check(f.read() == DOCS["docs/cat.txt"], "file not served during the rebuild")
            r = ctl(port, {"op": "search", "query": "cat", "mode": "text"})
            check(not r["ok"] and r["error"]["code"] == "unavailable",
                  f"socket search during the rebuild: {r}")
            check(listing(mnt, ".text", "cat") == before, ".search after waiting for the rebuild")
            r = ctl(port, {"op": "search", "query": "cat", "mode": "text"})
            check(r["ok"] and [h["key"] for h in r["results"]] == ["docs/cat.txt"],
                  f"socket search after the rebuild: {r}")
        except AssertionError as err:
            print(f"FAIL: {err}")
            return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
