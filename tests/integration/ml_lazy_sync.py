#!/usr/bin/env python3
"""ml_lazy_sync.py — a masterless receiver syncs replicated versions in
groups (cluster/ml_node.c, "Lazy batch"), and what it has not synced yet is
neither relied on by its peers nor lost for good when it crashes.

Node 2 runs with KVFS_ML_LAZY_MS=600000: what it receives stays unsynced
(and so not yet applied: the store applies after the sync) until a local
write on node 2 adopts the batch, or the node stops or crashes.

Cases (each prints PASS/FAIL; exit 1 if any fails):
  piggyback    versions received by node 2 are not served there until a
               local write on node 2, which makes them durable and visible
               with its own sync
  lost_on_kill node 2 receives 200 versions, is SIGKILLed before syncing
               them (its store never had them), restarts with the normal
               window and gets every one back through anti-entropy
  tombstone    node 2 receives a delete but does not sync it: for several
               acknowledgement periods no node collects the tombstone
               (collection needs every node's durable copy); after a
               SIGKILL and restart of node 2 the key is deleted everywhere,
               the tombstone is collected on every node, and the old value
               never comes back
Exit 77 when /dev/fuse is missing.
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ml_lib  # noqa: E402
from ml_lib import MlCluster  # noqa: E402

HOLD = {"KVFS_ML_LAZY_MS": "600000"}
TIMEOUT = 20.0


def wait(cond, what, timeout=TIMEOUT):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"timed out ({timeout} s): {what}")
        time.sleep(0.02)


def stat(nd, key):
    return int(nd.status().get(key, 0))


def gets(nd, keys):
    cl = nd.ctl()
    try:
        return {k: cl.get(k) for k in keys}
    finally:
        cl.close()


def received(nd, before, n):
    """Waits until node nd has received n more versions than `before`."""
    wait(lambda: stat(nd, "versions_recv") >= before + n,
         f"node {nd.i} receives {n} versions")


def t_piggyback(c):
    n0, n2 = c.nodes[0], c.nodes[2]
    items = [(f"pb/{i}", f"piggyback {i}") for i in range(20)]
    r0 = stat(n2, "versions_recv")
    n0.put_many(items)
    received(n2, r0, len(items))
    time.sleep(0.3)
    have = gets(n2, [k for k, _ in items])
    assert all(v is None for v in have.values()), \
        f"node 2 serves versions it was told to hold unsynced: {have}"
    n2.put_many([("pb/local", "local write on node 2")])
    # acknowledged: the adopted versions were in the same durable batch
    have = gets(n2, [k for k, _ in items])
    assert have == dict(items), f"after a local write node 2 serves {have}"
    assert stat(n2, "piggybacked_ops") >= len(items)


def t_lost_on_kill(c):
    n0, n2 = c.nodes[0], c.nodes[2]
    items = [(f"lk/{i:03d}", f"lost on kill {i}") for i in range(200)]
    r0 = stat(n2, "versions_recv")
    syncs0 = stat(n2, "syncs")
    n0.put_many(items)
    received(n2, r0, len(items))
    assert stat(n2, "syncs") == syncs0, "node 2 synced while holding its batch"
    assert all(v is None for v in gets(n2, [k for k, _ in items]).values())
    c.kill(2)
    n2.env = {}
    n2.start()
    wait(lambda: gets(n2, [k for k, _ in items]) == dict(items),
         "node 2 gets back the versions its crash lost")
    n2.env = dict(HOLD)
    c.kill(2)
    n2.start()


def t_tombstone(c):
    n0, n1, n2 = c.nodes
    key = "tb/doomed"
    r0 = stat(n2, "versions_recv")
    n0.put_many([(key, "about to be deleted")])
    received(n2, r0, 1)
    n2.put_many([("tb/flush", "adopts what node 2 holds")])
    assert gets(n2, [key])[key] == "about to be deleted"
    col = [stat(nd, "tombstones_collected") for nd in c.nodes]
    r0 = stat(n2, "versions_recv")
    cl = n0.ctl()
    cl.delete(key)
    cl.close()
    received(n2, r0, 1)
    wait(lambda: gets(n1, [key])[key] is None, "node 1 applies the delete")
    # 250 ms acknowledgement period: eight of them without node 2's ack
    time.sleep(2.0)
    now = [stat(nd, "tombstones_collected") for nd in c.nodes]
    assert now == col, f"a tombstone was collected before node 2 synced it: {col} -> {now}"
    assert stat(n0, "tombstones") >= 1 and stat(n1, "tombstones") >= 1
    assert gets(n2, [key])[key] == "about to be deleted", "node 2 applied an unsynced delete"
    c.kill(2)
    n2.env = {}
    n2.start()
    wait(lambda: all(gets(nd, [key])[key] is None for nd in c.nodes),
         "the key is deleted on every node")
    wait(lambda: all(stat(nd, "tombstones_collected") > x for nd, x in zip(c.nodes, col)),
         "the tombstone is collected on every node")
    time.sleep(1.0)
    assert all(gets(nd, [key])[key] is None for nd in c.nodes), "the deleted value came back"


def run_case(c, name, fn):
    t0 = time.time()
    try:
        fn(c)
    except Exception as e:  # noqa: BLE001 - reported, the next case runs
        print(f"FAIL {name}: {e!r}", flush=True)
        return False
    print(f"PASS {name} ({time.time() - t0:.1f} s)", flush=True)
    return True


def main():
    ml_lib.skip_without_fuse()
    kvfs = ml_lib.find_kvfs(sys.argv)
    cases = (("piggyback", t_piggyback), ("lost_on_kill", t_lost_on_kill),
             ("tombstone", t_tombstone))
    scratch = tempfile.mkdtemp(prefix="kvfs-ml-ls-")
    try:
        with MlCluster(kvfs, scratch, n=3) as c:
            c.nodes[2].env = dict(HOLD)
            c.start_all()
            failed = [name for name, fn in cases if not run_case(c, name, fn)]
            if failed:
                c.dump_logs()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("OK" if not failed else f"FAILED: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
