#!/usr/bin/env python3
"""raft_disk_full.py — the Raft leader's disk fills up (SPEC §6: "If the disk
fills ... writes fail with an error and nothing acknowledged is lost"), on a
3-node cluster of real kvfs processes on loopback, each data directory on
its own small tmpfs:

  1. writes go to the leader until its file system is full; each one is
     acknowledged or fails with an error reply, none hangs;
  2. the full node stays up (its control socket answers), stops leading,
     and the two others elect a leader and take writes again;
  3. every acknowledged write is readable, with its value, on the others;
  4. with space freed and the node restarted, it catches up: it serves
     every acknowledged write too.

Needs root (tmpfs mounts) and /dev/fuse; exits 77 (SKIP) without them.

usage: raft_disk_full.py KVFS_BINARY
"""
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from raft_lib import Cluster, CtlError, retry_put, skip_without_fuse  # noqa: E402

TMPFS_MB = 48          # per node: a log segment grows as it is written
VALUE_KB = 64          # writes to fill the last megabytes quickly
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL: " + msg, flush=True)
    return cond


def value_of(i):
    """A 64 KiB value that names its key's number (a mixed-up value shows)."""
    head = f"value {i:06d} "
    return (head * (VALUE_KB * 1024 // len(head) + 1))[:VALUE_KB * 1024]


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


def scenario(c, acked):
    lead = c.leader(timeout=15)
    full = c.nodes[lead]
    others = [i for i in range(len(c.nodes)) if i != lead]
    print(f"leader is node {lead}; filling its tmpfs {full.data}", flush=True)

    # Some writes while there is room.
    ctl = full.ctl(timeout=20)
    for i in range(20):
        ctl.put(f"df/{i:06d}", value_of(i))
        acked[f"df/{i:06d}"] = value_of(i)
    filler = fill(full.data)

    # 1. Keep writing to the leader: the preallocated end of its log takes
    # a few more, then a write fails. Every call must come back.
    errors = []
    i = 20
    t0 = time.time()
    while time.time() - t0 < 60 and len(errors) < 3:
        key = f"df/{i:06d}"
        try:
            ctl.put(key, value_of(i))
            acked[key] = value_of(i)
        except CtlError as e:
            errors.append(e.code)
        except OSError as e:  # a timeout: the call did not come back
            check(False, f"write {key} to the full leader got no answer ({e})")
            ctl.close()
            break
        i += 1
    check(errors, "the full leader never refused a write")
    print(f"full leader: {len(acked)} writes acknowledged, then errors {errors}", flush=True)

    # 2. The full node is still up and answers; the others elect a leader.
    check(full.alive(), "the node whose disk filled exited")
    try:
        st = full.status(timeout=5)
        check(st.get("failed") is True and st.get("store_error"),
              f"the full node's status does not say it failed: {st}")
        print(f"full node status: role {st.get('role')}, failed {st.get('failed')}, "
              f"store_error {st.get('store_error')!r}", flush=True)
    except (OSError, CtlError) as e:
        check(False, f"the full node's status does not answer: {e}")
    # A write through its mount fails too (close() reports it), in bounded time.
    try:
        r = subprocess.run(["sh", "-c", f"echo lost > {full.mnt}/df-mount"], timeout=30,
                           capture_output=True, text=True)
        check(r.returncode != 0, "a write through the full node's mount succeeded")
        print(f"write through the full node's mount: {r.stderr.strip()}", flush=True)
    except subprocess.TimeoutExpired:
        check(False, "a write through the full node's mount did not return in 30 s")
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

    # 3. Everything acknowledged is on the others.
    for j in others:
        cj = c.ctl(j, timeout=10)
        bad = [k for k, v in acked.items() if cj.get(k) != v]
        cj.close()
        check(not bad, f"node {j} lost or changed {len(bad)} acknowledged writes, "
                       f"e.g. {bad[:3]}")

    # 4. Room again, a restart, and the node catches up.
    os.unlink(filler)
    full.stop()
    full.start()
    deadline = time.time() + 30
    bad = list(acked)
    while bad and time.time() < deadline:
        try:
            cf = full.ctl(timeout=5)
            bad = [k for k, v in acked.items() if cf.get(k) != v]
            cf.close()
        except (OSError, CtlError):
            pass
        if bad:
            time.sleep(0.2)
    check(not bad, f"after the restart node {full.i} misses {len(bad)} acknowledged "
                   f"writes, e.g. {bad[:3]}")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    skip_without_fuse()
    if os.geteuid() != 0:
        print("SKIP: needs root for the tmpfs mounts")
        return 77
    kvfs = os.path.abspath(sys.argv[1])
    scratch = tempfile.mkdtemp(prefix="kvfs-raft-full-")
    tmpfs = []
    t0 = time.time()
    acked = {}
    try:
        with Cluster(kvfs, scratch, n=3, env={"KVFS_RAFT_TIMEOUT_MS": "3000"}) as c:
            try:
                for nd in c.nodes:
                    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m",
                                        "kvfs-test", nd.data], capture_output=True, text=True)
                    if r.returncode != 0:
                        print(f"SKIP: cannot mount a tmpfs: {r.stderr.strip()}")
                        return 77
                    tmpfs.append(nd.data)
                c.start_all()
                scenario(c, acked)
            except Exception as e:  # noqa: BLE001 — report, then clean up
                check(False, f"{type(e).__name__}: {e}")
            finally:
                if failures:
                    c.dump_logs()
    finally:
        for d in tmpfs:  # after every node stopped (Cluster's exit)
            subprocess.run(["umount", d], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"raft_disk_full: {len(acked)} writes acknowledged, {len(failures)} failures, "
          f"{time.time() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
