#!/usr/bin/env python3
"""raft_lincheck.py — records a concurrent history of puts and gets from
several clients against different nodes of a 3-node Raft cluster while a
nemesis kills and restarts the leader, pauses it and isolates a node, then
checks the history with tests/integration/lincheck.py (per-key registers).

usage: raft_lincheck.py KVFS_BINARY [SCRATCH_DIR] [SECONDS]
Environment: LINCHECK_NO_PARTITION=1 (leave out the isolation), LINCHECK_SEED (random seed, printed), LINCHECK_HISTORY (a path
to save the history as JSON lines).
"""
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lincheck  # noqa: E402
from raft_lib import Cluster, CtlError, skip_without_fuse  # noqa: E402

KEYS = ["r0", "r1", "r2"]


def client(c, t, node, rng, stop, history, lock):
    ctl = None
    seq = 0
    while not stop.is_set():
        key = rng.choice(KEYS)
        op = {"process": t, "node": node, "key": key}
        if rng.random() < 0.5:
            op["kind"] = "put"
            op["value"] = f"c{t}-{seq}"
            seq += 1
        else:
            op["kind"] = "get"
        op["call"] = time.monotonic()
        try:
            if ctl is None:
                ctl = c.ctl(node, timeout=4.0)
            if op["kind"] == "put":
                ctl.put(key, op["value"])
            else:
                op["value"] = ctl.get(key)
            op["ret"] = time.monotonic()
        except (OSError, CtlError, ValueError) as e:
            if ctl:
                ctl.close()
            ctl = None
            op["ret"] = None
            op["error"] = str(e)[:80]
            time.sleep(0.05)
        with lock:
            history.append(op)
        time.sleep(rng.random() * 0.01)
    if ctl:
        ctl.close()


def nemesis(c, rng, seconds, log):
    """Leader kill + restart, leader pause, node isolation, spaced out."""
    step = seconds / 8.0
    time.sleep(step)
    li = c.leader(timeout=10)
    log.append(f"{time.monotonic():.3f} kill leader {li}")
    c.nodes[li].kill()
    time.sleep(step)
    c.nodes[li].start()
    log.append(f"{time.monotonic():.3f} restart {li}")
    time.sleep(step)
    li = c.leader(timeout=10)
    log.append(f"{time.monotonic():.3f} SIGSTOP leader {li}")
    c.nodes[li].sigstop()
    time.sleep(step)
    c.nodes[li].sigcont()
    log.append(f"{time.monotonic():.3f} SIGCONT {li}")
    time.sleep(step)
    if os.environ.get("LINCHECK_NO_PARTITION"):
        return
    x = rng.randrange(3)
    log.append(f"{time.monotonic():.3f} isolate {x}")
    c.isolate(x)
    time.sleep(1.5 * step)
    c.heal()
    log.append(f"{time.monotonic():.3f} heal")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    skip_without_fuse()
    kvfs = os.path.abspath(sys.argv[1])
    scratch = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="kvfs-lin-")
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    seed = int(os.environ.get("LINCHECK_SEED", str(int(time.time()))))
    print(f"raft_lincheck: seed {seed}, {seconds:.0f} s", flush=True)
    rng = random.Random(seed)
    history, lock, log = [], threading.Lock(), []
    ok = False
    with Cluster(kvfs, scratch, n=3, env={"KVFS_RAFT_TIMEOUT_MS": "2000"}) as c:
        try:
            c.start_all()
            c.leader(timeout=15)
            stop = threading.Event()
            threads = [threading.Thread(target=client, daemon=True,
                                        args=(c, t, t % 3, random.Random(rng.random()), stop,
                                              history, lock))
                       for t in range(6)]
            for th in threads:
                th.start()
            nemesis(c, rng, seconds, log)
            time.sleep(seconds / 8.0)
            stop.set()
            for th in threads:
                th.join(timeout=30)
            for line in log:
                print("nemesis: " + line)
            hist = [o for o in history if not (o["kind"] == "get" and o["ret"] is None)]
            nput = sum(1 for o in hist if o["kind"] == "put")
            nunk = sum(1 for o in hist if o["ret"] is None)
            print(f"history: {len(hist)} operations ({nput} puts, {nunk} with unknown "
                  f"outcome, {len(history) - len(hist)} failed gets dropped)", flush=True)
            if os.environ.get("LINCHECK_HISTORY"):
                with open(os.environ["LINCHECK_HISTORY"], "w") as f:
                    for o in history:
                        f.write(json.dumps(o) + "\n")
            t0 = time.time()
            ok, bad = lincheck.check(hist)
            print(f"check: {'linearizable' if ok else 'NOT linearizable, keys %s' % bad} "
                  f"({time.time() - t0:.2f} s)")
            completed = sum(1 for o in hist if o["ret"] is not None)
            if completed < 50:
                print("FAIL: too few operations completed")
                ok = False
        finally:
            if not ok:
                c.dump_logs(2000)
    if len(sys.argv) <= 2 and ok:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
