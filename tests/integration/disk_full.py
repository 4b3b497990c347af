#!/usr/bin/env python3
"""disk_full.py — one node's disk fills up (SPEC §6: "If the disk fills ...
writes fail with an error and nothing acknowledged is lost"), on 3-node
clusters of real kvfs processes on loopback, each data directory on its own
small tmpfs. Raft: the leader's disk. Masterless: a node taking writes
while the others replicate to it.

  1. writes go to the node until its file system is full; each one is
     acknowledged or fails with an error reply, none hangs; a write through
     its mount fails too;
  2. the full node stays up (its control socket answers, status says it
     failed); the others take writes (Raft: after electing a leader);
  3. every acknowledged write is readable, with its value, on the others;
  4. with space freed and the node restarted, it catches up: it serves
     every acknowledged write too.

Needs root (tmpfs mounts) and /dev/fuse; exits 77 (SKIP) without them.

usage: disk_full.py KVFS_BINARY
"""
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ml_lib  # noqa: E402
from raft_lib import (Cluster, CtlError, check, failures, retry_put,  # noqa: E402
                      skip_without_fuse)

TMPFS_MB = 48          # per node: a log segment grows as it is written
VALUE_KB = 64          # writes to fill the last megabytes quickly


def value_of(i):
    """A 64 KiB value that names its key's number (a mixed-up value shows)."""
    head = f"value {i:06d} "
    return (head * (VALUE_KB * 1024 // len(head) + 1))[:VALUE_KB * 1024]


# open, write, close; exit status 1 and the error when one of them fails.
MOUNT_WRITE = r"""
import os, sys
try:
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"lost\n")
    finally:
        os.close(fd)
except OSError as e:
    print(f"failed: {e.strerror}")
    sys.exit(1)
print("succeeded")
"""


def fill(path):
    """Fills the file system holding `path` with one file; returns its name."""
    filler = os.path.join(path, "filler")
    chunk = b"\xa5" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) <= 4096:
                    break
                chunk = chunk[:len(chunk) // 2]
    return filler


def fill_and_write(full, acked):
    """Steps 1 and 2 on node `full` (a raft_lib or ml_lib node): a few
    writes, the disk filled, writes until three fail; its mount and status.
    Returns the filler file."""
    ctl = full.ctl(timeout=20)
    for i in range(20):
        ctl.put(f"df/{i:06d}", value_of(i))
        acked[f"df/{i:06d}"] = value_of(i)
    filler = fill(full.data)
    # The preallocated end of its log takes a few more, then a write fails.
    # Every call must come back.
    errors = []
    i = 20
    t0 = time.time()
    while time.time() - t0 < 60 and len(errors) < 3:
        key = f"df/{i:06d}"
        try:
            ctl.put(key, value_of(i))
            acked[key] = value_of(i)
        except (CtlError, ml_lib.CtlError) as e:
            errors.append(e.code)
        except OSError as e:  # a timeout: the call did not come back
            check(False, f"write {key} to the full node got no answer ({e})")
            break
        i += 1
    ctl.close()
    check(errors, "the full node never refused a write")
    print(f"full node {full.i}: {len(acked)} writes acknowledged, then errors {errors}",
          flush=True)
    # (in a child process, with a deadline: a hang must not hang the test;
    # not through a shell, which ignores what close() returns)
    try:
        r = subprocess.run([sys.executable, "-c", MOUNT_WRITE, f"{full.mnt}/df-mount"],
                           timeout=30, capture_output=True, text=True)
        check(r.returncode == 1, f"a write through the full node's mount: {r.stdout.strip()}")
        print(f"write through the full node's mount: {r.stdout.strip()}", flush=True)
    except subprocess.TimeoutExpired:
        check(False, "a write through the full node's mount did not return in 30 s")
    check(full.alive(), "the node whose disk filled exited")
    try:
        st = full.status(timeout=5)
        check(st.get("failed") is True and st.get("store_error"),
              f"the full node's status does not say it failed: {st}")
        check(st.get("leader") is None,
              f"the full node's status names a leader: {st.get('leader')}")
        print(f"full node status: role {st.get('role')}, failed {st.get('failed')}, "
              f"store_error {st.get('store_error')!r}", flush=True)
    except (OSError, CtlError, ml_lib.CtlError) as e:
        check(False, f"the full node's status does not answer: {e}")
    return filler


def missing(node, acked):
    """The acknowledged keys `node` does not serve with their values."""
    cl = node.ctl(timeout=10)
    try:
        return [k for k, v in acked.items() if cl.get(k) != v]
    finally:
        cl.close()


def restart_and_catch_up(full, filler, acked, timeout=30):
    """Step 4."""
    os.unlink(filler)
    full.stop()
    full.start()
    deadline = time.time() + timeout
    bad = list(acked)
    while bad and time.time() < deadline:
        try:
            bad = missing(full, acked)
        except (OSError, CtlError, ml_lib.CtlError):
            pass
        if bad:
            time.sleep(0.2)
    check(not bad, f"after the restart node {full.i} misses {len(bad)} acknowledged "
                   f"writes, e.g. {bad[:3]}")


def raft_scenario(c, acked):
    lead = c.leader(timeout=15)
    full = c.nodes[lead]
    others = [i for i in range(len(c.nodes)) if i != lead]
    print(f"raft: leader is node {lead}; filling its tmpfs", flush=True)
    filler = fill_and_write(full, acked)
    try:
        new = c.leader(among=others, timeout=20)
    except RuntimeError as e:
        check(False, f"the two others elected no leader: {e}")
        return
    print(f"node {new} leads now", flush=True)
    for k in range(5):
        key = f"df/after/{k}"
        retry_put(lambda: c.ctl(new, timeout=5), key, value_of(1000 + k), timeout=20)
        acked[key] = value_of(1000 + k)
    for j in others:
        bad = missing(c.nodes[j], acked)
        check(not bad, f"node {j} lost or changed {len(bad)} acknowledged writes, "
                       f"e.g. {bad[:3]}")
    restart_and_catch_up(full, filler, acked)


def ml_scenario(c, acked):
    full = c.nodes[0]
    print("masterless: filling node 0's tmpfs", flush=True)
    filler = fill_and_write(full, acked)
    # The others keep taking writes (which node 0 can no longer store).
    for k in range(5):
        key = f"df/after/{k}"
        c.nodes[1 + k % 2].put_many([(key, value_of(1000 + k))])
        acked[key] = value_of(1000 + k)
    for nd in c.nodes[1:]:
        try:
            c.wait_converged(acked, nodes=[nd], timeout=20, via="ctl")
        except AssertionError as e:
            check(False, f"node {nd.i}: {e}")
    restart_and_catch_up(full, filler, acked)


def with_tmpfs(cluster, run):
    """Mounts a tmpfs on every node's data directory, starts the cluster,
    runs `run(cluster, acked)`, and cleans up whatever happens. Returns the
    number of acknowledged writes, or None when no tmpfs can be mounted."""
    tmpfs = []
    acked = {}
    try:
        with cluster as c:
            try:
                for nd in c.nodes:
                    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m",
                                        "kvfs-test", nd.data], capture_output=True, text=True)
                    if r.returncode != 0:
                        print(f"SKIP: cannot mount a tmpfs: {r.stderr.strip()}")
                        return None
                    tmpfs.append(nd.data)
                c.start_all()
                run(c, acked)
            except Exception as e:  # noqa: BLE001 — report, then clean up
                check(False, f"{type(e).__name__}: {e}")
            finally:
                if failures:
                    c.dump_logs()
    finally:
        for d in tmpfs:  # after every node stopped (the cluster's exit)
            r = subprocess.run(["umount", d], capture_output=True, text=True)
            if r.returncode != 0:  # still busy: detach it, say so
                check(False, f"umount {d}: {r.stderr.strip()}; detaching it (umount -l)")
                subprocess.run(["umount", "-l", d], check=False)
    return len(acked)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    skip_without_fuse()
    if os.geteuid() != 0:
        print("SKIP: needs root for the tmpfs mounts")
        return 77
    kvfs = os.path.abspath(sys.argv[1])
    scratch = tempfile.mkdtemp(prefix="kvfs-disk-full-")
    t0 = time.time()
    try:
        n = with_tmpfs(Cluster(kvfs, os.path.join(scratch, "raft"), n=3,
                               env={"KVFS_RAFT_TIMEOUT_MS": "3000"}), raft_scenario)
        if n is None:
            return 77
        print(f"raft: {n} writes acknowledged", flush=True)
        n = with_tmpfs(ml_lib.MlCluster(kvfs, os.path.join(scratch, "ml"), n=3), ml_scenario)
        check(n is not None, "masterless: no tmpfs could be mounted (the Raft part could)")
        print(f"masterless: {n} writes acknowledged", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"disk_full: {len(failures)} failures, {time.time() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
