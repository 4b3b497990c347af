#!/usr/bin/env python3
"""ml_crash.py KVFS [--seed N] [--cycles N] — SIGKILL crash test of a
masterless node whose mount is being written (SPEC §6, §7).

fs_crash.py's writers (partial writes, O_TRUNC rewrites, editor-style
temp + fsync + rename; every file carries its name, version, length and
hash) commit files through node 0's mount of a 3-node masterless cluster
while node 0 is SIGKILLed at a random moment and restarted, for several
cycles. After every restart node 0 must hold every file whose close() (or
rename) returned 0, at that version or a newer attempted one, and nothing
torn. At the end all three nodes must serve the same contents for every
file: what node 0 acknowledged reaches the others, including writes it
took just before a kill (pushed, or carried by anti-entropy after the
restart).
"""
import os
import random
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fs_crash import WRITERS, State, parse, verify, writer  # noqa: E402
from ml_lib import MlCluster, skip_without_fuse  # noqa: E402


def contents(mnt, names):
    """name -> (name, version) parsed from the file under mnt, or the error."""
    out = {}
    for name in names:
        try:
            with open(os.path.join(mnt, name), "rb") as f:
                out[name] = parse(f.read())
        except (OSError, ValueError) as e:
            out[name] = type(e).__name__
    return out


def converged(c, names, timeout):
    """Waits until nodes 1 and 2 serve what node 0 serves; returns the
    differences left at the deadline."""
    deadline = time.time() + timeout
    while True:
        want = contents(c.nodes[0].mnt, names)
        diff = []
        for nd in c.nodes[1:]:
            got = contents(nd.mnt, names)
            diff += [(nd.i, n, want[n], got[n]) for n in names if got[n] != want[n]]
        if not diff or time.time() > deadline:
            return diff
        time.sleep(0.2)


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    kvfs = os.path.abspath(args[0])
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else \
        int(os.environ.get("KVFS_SEED", random.randrange(1 << 30)))
    cycles = int(args[args.index("--cycles") + 1]) if "--cycles" in args else 10
    skip_without_fuse()
    rng = random.Random(seed)
    print(f"seed {seed}, {cycles} cycles")
    st = State()
    with tempfile.TemporaryDirectory(prefix="kvfs-ml-crash.") as tmp:
        with MlCluster(kvfs, tmp, n=3) as c:
            try:
                c.start_all()
                node = c.nodes[0]
                productive = 0  # cycles in which some write was acknowledged
                for cycle in range(cycles):
                    before = sum(st.acked.values())
                    stop = threading.Event()
                    ts = [threading.Thread(target=writer,
                                           args=(node.mnt, st, w, random.Random(rng.random()),
                                                 stop))
                          for w in range(WRITERS)]
                    for t in ts:
                        t.start()
                    time.sleep(rng.uniform(0.05, 0.6))
                    c.kill(0)
                    stop.set()
                    for t in ts:
                        t.join(timeout=30)
                        if t.is_alive():
                            raise AssertionError("a writer hung on the dead mount")
                    node.start()
                    verify(node.mnt, st, cycle)
                    after = sum(st.acked.values())
                    productive += after > before
                    print(f"cycle {cycle}: acknowledged versions ok on node 0 (sum of the "
                          f"files' versions {after}, +{after - before})", flush=True)
                # A run in which the kills came before the writers got going
                # would check nothing: most cycles must have written.
                if productive * 2 < cycles:
                    raise AssertionError(f"only {productive} of {cycles} cycles had a write "
                                         "acknowledged before the kill")
                names = sorted(st.acked)
                diff = converged(c, names, 30)
                if diff:
                    raise AssertionError(f"{len(diff)} files differ from node 0 after 30 s, "
                                         f"e.g. {diff[:5]}")
                print(f"{len(names)} files the same on all three nodes", flush=True)
            except (AssertionError, RuntimeError, OSError) as e:
                print(f"FAIL (seed {seed}): {e}")
                c.dump_logs()
                return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
