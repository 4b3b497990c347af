#!/usr/bin/env python3
"""disk_faults.py — one node's disk fails, on 3-node clusters of real kvfs
processes on loopback (SPEC §6: "If the disk fills ... writes fail with an
error and nothing acknowledged is lost"; a failed fsync is an error too,
never a silent success). Raft: the leader's disk, and a follower's while
the other follower is down. Masterless: a node taking writes while the
others replicate to it. Two faults:

  full       each data directory on its own small tmpfs; the node's fills
             up (needs root for the tmpfs mounts);
  syncfail   the node's fsync() and fdatasync() start failing with EIO
             (tests/lib/failsync.c, preloaded into every node; a trigger
             file per node switches it on), as a dying disk's would.

For each:
  1. writes go to the node until three fail; each one is acknowledged or
     fails with an error reply, none hangs; a write through its mount
     fails too;
  2. the broken node stays up (its control socket answers, status says it
     failed and names no leader); the others take writes (Raft: after
     electing a leader);
  3. every acknowledged write is readable, with its value, on the others;
  4. with the fault gone and the node restarted, it catches up: it serves
     every acknowledged write too.

The Raft follower scenario: a follower's disk fails while the other
follower is stopped, so no follower can store a write: the leader must
not acknowledge one (beyond what still fits on a full disk).

Needs /dev/fuse; exits 77 (SKIP) without it, or without root for `full`.

usage: disk_faults.py KVFS_BINARY full
       disk_faults.py KVFS_BINARY syncfail FAILSYNC_MODULE
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


def break_and_write(full, acked, fault, bound):
    """Steps 1 and 2 on node `full` (a raft_lib or ml_lib node): a few
    writes, the fault switched on, writes until three fail (at most `bound`
    acknowledged meanwhile, unless None); its mount and status."""
    ctl = full.ctl(timeout=20)
    for i in range(20):
        ctl.put(f"df/{i:06d}", value_of(i))
        acked[f"df/{i:06d}"] = value_of(i)
    fault.inject(full)
    # (A full disk: the preallocated end of its log takes a few more.)
    # Every call must come back.
    errors = []
    i = 20
    t0 = time.time()
    while time.time() - t0 < 60 and len(errors) < 3:
        key = f"df/{i:06d}"
        try:
            ctl.put(key, value_of(i))
            acked[key] = value_of(i)
            if bound is not None and i - 20 >= bound:
                check(False, f"the broken node acknowledged {i - 19} writes after the "
                             f"fault (at most {bound} can be durable)")
                break
        except (CtlError, ml_lib.CtlError) as e:
            errors.append(e.code)
        except OSError as e:  # a timeout: the call did not come back
            check(False, f"write {key} to the broken node got no answer ({e})")
            break
        i += 1
    ctl.close()
    check(errors, "the broken node never refused a write")
    print(f"broken node {full.i}: {len(acked)} writes acknowledged, then errors {errors}",
          flush=True)
    # (in a child process, with a deadline: a hang must not hang the test;
    # not through a shell, which ignores what close() returns)
    try:
        r = subprocess.run([sys.executable, "-c", MOUNT_WRITE, f"{full.mnt}/df-mount"],
                           timeout=30, capture_output=True, text=True)
        check(r.returncode == 1, f"a write through the broken node's mount: {r.stdout.strip()}")
        print(f"write through the broken node's mount: {r.stdout.strip()}", flush=True)
    except subprocess.TimeoutExpired:
        check(False, "a write through the broken node's mount did not return in 30 s")
    check(full.alive(), "the node whose disk failed exited")
    try:
        st = full.status(timeout=5)
        check(st.get("failed") is True and st.get("store_error"),
              f"the broken node's status does not say it failed: {st}")
        check(st.get("leader") is None,
              f"the broken node's status names a leader: {st.get('leader')}")
        print(f"broken node status: role {st.get('role')}, failed {st.get('failed')}, "
              f"store_error {st.get('store_error')!r}", flush=True)
    except (OSError, CtlError, ml_lib.CtlError) as e:
        check(False, f"the broken node's status does not answer: {e}")


def missing(node, acked):
    """The acknowledged keys `node` does not serve with their values."""
    cl = node.ctl(timeout=10)
    try:
        return [k for k, v in acked.items() if cl.get(k) != v]
    finally:
        cl.close()


def restart_and_catch_up(full, fault, acked, timeout=30):
    """Step 4."""
    fault.clear(full)
    full.stop()
    full.start()
    bad = wait_serves(full, acked, timeout)
    check(not bad, f"after the restart node {full.i} misses {len(bad)} acknowledged "
                   f"writes, e.g. {bad[:3]}")


def wait_serves(node, acked, timeout):
    """Waits until `node` serves every acknowledged write (it may still be
    starting or catching up); returns those it does not at the deadline."""
    deadline = time.time() + timeout
    bad = list(acked)
    while bad and time.time() < deadline:
        try:
            bad = missing(node, acked)
        except (OSError, CtlError, ml_lib.CtlError):
            pass
        if bad:
            time.sleep(0.2)
    return bad


def raft_scenario(c, acked, fault):
    lead = c.leader(timeout=15)
    full = c.nodes[lead]
    others = [i for i in range(len(c.nodes)) if i != lead]
    print(f"raft: leader is node {lead}; {fault.what}", flush=True)
    # (no bound: the followers form a quorum without the leader's disk)
    break_and_write(full, acked, fault, None)
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
    restart_and_catch_up(full, fault, acked)


def raft_follower_scenario(c, acked, fault):
    """A follower's disk fails while the other follower is down: the
    leader has no majority left that can store a write, so a write must
    fail or time out; acknowledged, it would rest on a follower that did
    not store it (an acknowledgement of an entry it never made durable)."""
    lead = c.leader(timeout=15)
    bad, down = [i for i in range(len(c.nodes)) if i != lead]
    print(f"raft: leader {lead}; node {down} stopped, node {bad}: {fault.what}", flush=True)
    ctl = c.ctl(lead, timeout=20)
    for i in range(10):
        ctl.put(f"ff/{i}", value_of(i))
        acked[f"ff/{i}"] = value_of(i)
    c.nodes[down].stop()
    fault.inject(c.nodes[bad])
    for i in range(10, 10 + fault.acks_after + 1):
        key = f"ff/{i}"
        try:
            ctl.put(key, value_of(i))
        except (CtlError, OSError) as e:
            print(f"write {i - 10} with no follower able to store it: "
                  f"{type(e).__name__}: {e}", flush=True)
            break
        acked[key] = value_of(i)
    else:
        check(False, f"{fault.acks_after + 1} writes were acknowledged while the only "
                     f"follower up could store at most {fault.acks_after}")
    ctl.close()
    # The failure must be the follower's, not the leader's own disk's.
    try:
        st = c.nodes[lead].status(timeout=5)
        check(not st.get("failed") and not st.get("store_error"),
              f"the leader failed itself: {st}")
    except (OSError, CtlError) as e:
        check(False, f"the leader's status does not answer: {e}")
    try:
        st = c.nodes[bad].status(timeout=5)
        check(st.get("failed") is True, f"the broken follower's status does not say it "
                                        f"failed: {st}")
    except (OSError, CtlError) as e:
        check(False, f"the broken follower's status does not answer: {e}")
    c.nodes[down].start()
    restart_and_catch_up(c.nodes[bad], fault, acked)
    for j in range(len(c.nodes)):
        bad_keys = wait_serves(c.nodes[j], acked, 20)
        check(not bad_keys, f"node {j} lost or changed {len(bad_keys)} acknowledged writes, "
                            f"e.g. {bad_keys[:3]}")


def ml_scenario(c, acked, fault):
    full = c.nodes[0]
    print(f"masterless: node 0; {fault.what}", flush=True)
    break_and_write(full, acked, fault, fault.acks_after)
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
    restart_and_catch_up(full, fault, acked)


class DiskFull:
    """The node's tmpfs filled up by one file, removed to clear it."""
    what = "filling its tmpfs"
    # Writes that fit in the log's preallocated end (1 MiB: 16 values of
    # 64 KiB) are stored, durably, and may be acknowledged; twice that
    # leaves room for record headers and a segment's first page.
    acks_after = 32

    def inject(self, node):
        self.filler = fill(node.data)

    def clear(self, node):
        os.unlink(self.filler)


class SyncFails:
    """failsync.c's trigger file for the node: its syncs fail while it
    exists. Every node gets the module and a trigger path of its own."""
    what = "its fsync and fdatasync fail from now on"
    acks_after = 0  # nothing it writes from now on is durable

    def __init__(self, module):
        self.module = module

    @staticmethod
    def trigger(node):
        return node.data.rstrip("/") + ".failsync"

    def prepare(self, c):
        for nd in c.nodes:
            env = nd.env  # the node's own, over the cluster's
            env["LD_PRELOAD"] = " ".join(filter(None, (os.environ.get("LD_PRELOAD"),
                                                      self.module)))
            # (an ASan build wants its runtime loaded first; this module
            # has no allocator or memory calls for it to mind)
            env["ASAN_OPTIONS"] = ":".join(filter(None, (os.environ.get("ASAN_OPTIONS"),
                                                        "verify_asan_link_order=0")))
            env["KVFS_TEST_FAILSYNC"] = self.trigger(nd)

    def inject(self, node):
        open(self.trigger(node), "w").close()

    def clear(self, node):
        os.unlink(self.trigger(node))


def run_cluster(c, run, fault, acked):
    """Starts the cluster, runs `run(c, acked, fault)`; a failure is
    reported, with the nodes' logs."""
    try:
        c.start_all()
        run(c, acked, fault)
    except Exception as e:  # noqa: BLE001 — report, then clean up
        check(False, f"{type(e).__name__}: {e}")
    finally:
        if failures:
            c.dump_logs()


def with_sync_fault(cluster, run, module):
    """The cluster with failsync.c preloaded; returns the number of
    acknowledged writes."""
    acked = {}
    fault = SyncFails(module)
    with cluster as c:
        fault.prepare(c)
        run_cluster(c, run, fault, acked)
    return len(acked)


def with_tmpfs(cluster, run):
    """Mounts a tmpfs on every node's data directory, starts the cluster,
    runs `run(cluster, acked, DiskFull())`, and cleans up whatever happens.
    Returns the number of acknowledged writes, or None when no tmpfs can be
    mounted."""
    tmpfs = []
    acked = {}
    try:
        with cluster as c:
            for nd in c.nodes:
                r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m",
                                    "kvfs-test", nd.data], capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"SKIP: cannot mount a tmpfs: {r.stderr.strip()}")
                    return None
                tmpfs.append(nd.data)
            run_cluster(c, run, DiskFull(), acked)
    finally:
        for d in tmpfs:  # after every node stopped (the cluster's exit)
            r = subprocess.run(["umount", d], capture_output=True, text=True)
            if r.returncode != 0:  # still busy: detach it, say so
                check(False, f"umount {d}: {r.stderr.strip()}; detaching it (umount -l)")
                subprocess.run(["umount", "-l", d], check=False)
    return len(acked)


def main():
    args = sys.argv[1:]
    if len(args) < 2 or args[1] not in ("full", "syncfail") or \
            (args[1] == "syncfail") != (len(args) == 3):
        print(__doc__)
        return 2
    kvfs, mode = os.path.abspath(args[0]), args[1]
    skip_without_fuse()
    if mode == "full" and os.geteuid() != 0:
        print("SKIP: needs root for the tmpfs mounts")
        return 77
    scratch = tempfile.mkdtemp(prefix=f"kvfs-disk-{mode}-")
    # (made when needed: a cluster picks its ports when made)
    def raft(name="raft"):
        return Cluster(kvfs, os.path.join(scratch, name), n=3,
                       env={"KVFS_RAFT_TIMEOUT_MS": "3000"})

    def ml():
        return ml_lib.MlCluster(kvfs, os.path.join(scratch, "ml"), n=3)

    t0 = time.time()
    try:
        if mode == "full":
            n = with_tmpfs(raft(), raft_scenario)
            if n is None:
                return 77
            print(f"raft: {n} writes acknowledged", flush=True)
            n = with_tmpfs(raft("raft-follower"), raft_follower_scenario)
            check(n is not None, "raft, a follower: no tmpfs could be mounted (before, one could)")
            print(f"raft, a follower: {n} writes acknowledged", flush=True)
            n = with_tmpfs(ml(), ml_scenario)
            check(n is not None, "masterless: no tmpfs could be mounted (the Raft part could)")
        else:
            module = os.path.abspath(args[2])
            print(f"raft: {with_sync_fault(raft(), raft_scenario, module)} writes acknowledged",
                  flush=True)
            n = with_sync_fault(raft("raft-follower"), raft_follower_scenario, module)
            print(f"raft, a follower: {n} writes acknowledged", flush=True)
            n = with_sync_fault(ml(), ml_scenario, module)
        print(f"masterless: {n} writes acknowledged", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"disk_faults {mode}: {len(failures)} failures, {time.time() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
