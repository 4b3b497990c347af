#!/usr/bin/env python3
"""ml_batch_atomic.py — a multi-key write taken by one masterless node
becomes visible whole on the other nodes (SPEC §5: `batch` and MSET are
atomic; §3: so is a directory rename).

Node 0 writes, over its control socket, batches of three keys: two small
marker keys around one value of a few MiB, all three carrying the batch's
number, and nobody else writes them. Readers on nodes 1 and 2 read the
markers one after the other, in both orders, as fast as they can. Batches
are applied in order, so a key read later may never show an older batch
than a key read before it; a reader that does has seen part of a batch.

Why the large value: it does not fit one PUSH frame beside the markers
(256 KiB soft cap) and fills a receiver's lazy batch (4 MiB), so before
ml.c's push units it went out in three frames and the receiver applied the
last marker in a later store batch, up to 25 ms after the first (kvfs at
the commit before "a multi-key write reaches every replica in one PUSH
frame": every run saw torn batches).

Exit 1 on a torn batch, 77 without /dev/fuse.
"""
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ml_lib  # noqa: E402
from ml_lib import MlCluster  # noqa: E402

BATCHES = int(os.environ.get("ML_ATOMIC_BATCHES", "30"))
BIG = (4 << 20) + (256 << 10)  # bytes of the large value


def number(v):
    """The batch number a marker holds (-1: not written yet)."""
    return -1 if v is None else int(v)


def reader(c, node, stop, torn, reads):
    """Reads the two markers in turn, in alternating order, and records a
    later read that shows an older batch than the read before it."""
    ctl = c.ctl(node)
    order = ("atom/a", "atom/z")
    k = 0
    while not stop.is_set() and not torn:
        first, second = order if k % 2 == 0 else order[::-1]
        v1 = number(ctl.get(first))
        v2 = number(ctl.get(second))
        if v2 < v1:
            torn.append(f"node {node}: {first} = {v1}, then {second} = {v2}")
        k += 1
    reads[node] = k


def main():
    ml_lib.skip_without_fuse()
    kvfs = ml_lib.find_kvfs(sys.argv)
    scratch = tempfile.mkdtemp(prefix="kvfs-ml-atom-")
    torn, reads = [], {}
    try:
        with MlCluster(kvfs, scratch, n=3) as c:
            c.start_all()
            w = c.ctl(0, timeout=60.0)
            stop = threading.Event()
            threads = [threading.Thread(target=reader, args=(c, i, stop, torn, reads))
                       for i in (1, 2)]
            for t in threads:
                t.start()
            try:
                pad = "x" * BIG
                last = -1
                for i in range(BATCHES):
                    w.call({"op": "batch", "ops": [
                        {"op": "put", "key": "atom/a", "value": str(i)},
                        {"op": "put", "key": "atom/big", "value": f"{i}:{pad}"},
                        {"op": "put", "key": "atom/z", "value": str(i)}]})
                    last = i
                    if torn:
                        break
                    time.sleep(0.01)
                c.wait_converged({"atom/a": str(last), "atom/z": str(last)}, timeout=30)
            finally:
                stop.set()
                for t in threads:
                    t.join()
            st = c.ctl(0).status()
            print(f"{BATCHES} batches of {BIG} bytes; reads per node {reads}; "
                  f"batches_split on node 0: {st.get('batches_split')}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if torn:
        print("FAIL: torn batch: " + torn[0])
        return 1
    print("OK: every batch showed whole on nodes 1 and 2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
