#!/usr/bin/env python3
"""fs_shutdown.py — SIGTERM, SIGINT and SIGHUP stop a busy mount: kvfs exits 0 and
unmounts within a few seconds, also while its invalidation thread still has
thousands of remote changes to hand to the kernel and other processes keep
sending requests.

The hazard: the kernel's invalidation calls (fuse_lowlevel_notify_inval_*)
wait for the locks of the inode or directory they touch. A process whose
lookup holds a directory's lock waits in turn for the daemon's answer. If
the daemon stops answering requests (its FUSE workers leave on the signal)
before its invalidation thread has finished, that thread waits for ever on
the directory, and so does the daemon's shutdown that joins it.

Each round: one directory of FS_SHUTDOWN_FILES files, all known to the
kernel (stat through the mount); a helper process keeps looking up missing
names in that directory; one control-socket batch deletes every file (each
delete is an entry invalidation that needs the directory's lock); the
daemon gets its signal while those invalidations run. It must exit within
FS_SHUTDOWN_WAIT seconds with status 0, and the data must be intact after a
restart (the batch either applied whole or not at all). At least one round
must have found invalidations still queued (the daemon logs how many it
dropped), or the test tested nothing. Then the signal dispositions kvfs may
inherit: SIGTERM blocked, SIGHUP and SIGINT ignored.

Usage: fs_shutdown.py KVFS_BINARY; exit 77 without /dev/fuse.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fs_mount import Mount, is_mounted, skip_without_fuse  # noqa: E402

FILES = int(os.environ.get("FS_SHUTDOWN_FILES", "6000"))
ROUNDS = int(os.environ.get("FS_SHUTDOWN_ROUNDS", "6"))
WAIT = float(os.environ.get("FS_SHUTDOWN_WAIT", "20"))

# Looks up missing names in a directory until killed (each lookup holds the
# directory's lock while the daemon answers).
LOOKER = r"""
import os, sys
d = sys.argv[1]
i = 0
while True:
    try:
        os.stat(os.path.join(d, "missing%d" % i))
    except OSError:
        pass
    i += 1
"""


def ctl_send(path, obj):
    """Sends one request and returns the socket without reading the reply."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall((json.dumps(obj) + "\n").encode())
    return s


def ctl_req(path, obj):
    s = ctl_send(path, obj)
    f = s.makefile("rb")
    r = json.loads(f.readline())
    f.close()
    s.close()
    if not r.get("ok"):
        raise RuntimeError(f"{obj['op']}: {r}")
    return r


def fuse_conn(mnt):
    """The kernel's FUSE connection number of a mount (its device minor)."""
    mnt = os.path.realpath(mnt)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == mnt:
                return int(fields[2].split(":")[1])
    return None


def abort_conn(conn):
    """Breaks a deadlocked mount the only way left: the kernel's abort of the
    connection (fusectl), which fails every request still waiting, so that the
    daemon and the looker can be killed. Mounts fusectl if needed."""
    ctl = "/sys/fs/fuse/connections"
    mounted_here = False
    if conn is None:
        return
    if not os.path.exists(os.path.join(ctl, str(conn))):
        mounted_here = subprocess.run(["mount", "-t", "fusectl", "none", ctl],
                                      check=False).returncode == 0
    try:
        with open(os.path.join(ctl, str(conn), "abort"), "w") as f:
            f.write("1")
    except OSError as e:
        print(f"cannot abort FUSE connection {conn}: {e}")
    if mounted_here:
        subprocess.run(["umount", ctl], check=False)


def dropped_at_stop(log, start):
    """Invalidations the daemon dropped at its last shutdown (its log from
    byte `start`): proof that the signal came while they were running."""
    with open(log, errors="replace") as f:
        f.seek(start)
        found = re.findall(r"(\d+) cache invalidations dropped at shutdown", f.read())
    return int(found[-1]) if found else 0


def one_round(m, rnd, sig):
    d = f"r{rnd}"
    sock = os.path.join(m.data, "control.sock")
    ctl_req(sock, {"op": "batch", "ops": [{"op": "put", "key": f"{d}/f{i}", "value": "x"}
                                          for i in range(FILES)]})
    dpath = os.path.join(m.mnt, d)
    for i in range(FILES):
        os.stat(os.path.join(dpath, f"f{i}"))
    conn = fuse_conn(m.mnt)
    looker = subprocess.Popen([sys.executable, "-c", LOOKER, dpath])
    pending = None
    try:
        time.sleep(0.2)
        pending = ctl_send(sock, {"op": "batch", "ops": [{"op": "delete", "key": f"{d}/f{i}"}
                                                        for i in range(FILES)]})
        # The batch has committed and its invalidations have started once
        # the kernel has dropped the first name (f0 goes first); the signal
        # comes then, long before their end (thousands of directory locks
        # shared with the looker's lookups), however slow the build.
        first = os.path.join(dpath, "f0")
        deadline = time.time() + 20
        while os.path.exists(first) and time.time() < deadline:
            time.sleep(0.001)
        m.proc.send_signal(sig)
        try:
            rc = m.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            abort_conn(conn)
            m.kill()
            return [f"round {rnd} ({sig.name}): kvfs still running {WAIT:.0f} s after the signal"]
        m.proc = None
        if rc != 0:
            return [f"round {rnd} ({sig.name}): kvfs exited with status {rc}"]
        if is_mounted(m.mnt):
            return [f"round {rnd} ({sig.name}): still mounted after kvfs exited"]
        return []
    finally:
        looker.kill()
        try:
            looker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            print(f"the looker (pid {looker.pid}) is stuck in the dead mount", flush=True)
        if pending is not None:
            pending.close()


def check_whole(m, rnd):
    """After a restart the delete batch applied whole or not at all."""
    names = os.listdir(os.path.join(m.mnt, f"r{rnd}")) if os.path.isdir(
        os.path.join(m.mnt, f"r{rnd}")) else []
    if len(names) not in (0, FILES):
        return [f"round {rnd}: {len(names)} of {FILES} files left after restart (a torn batch)"]
    return []


def inherited_dispositions(kvfs, scratch):
    """What kvfs inherits from whoever starts it: a stop signal blocked in
    its signal mask must not keep another from stopping it; a SIGHUP
    ignored (nohup) stays ignored, while SIGINT and SIGTERM work even when
    ignored (a shell starts background jobs with SIGINT ignored)."""
    bad = []

    def block_term():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def ignore_hup_int():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    cases = (("started with SIGTERM blocked", block_term, [signal.SIGINT]),
             ("started with SIGHUP and SIGINT ignored", ignore_hup_int,
              [signal.SIGHUP, signal.SIGINT]))
    for name, pre, sigs in cases:
        m = Mount(kvfs, scratch, name="inh", preexec_fn=pre)
        conn = None
        try:
            m.start()
            conn = fuse_conn(m.mnt)
            for sig in sigs:
                m.proc.send_signal(sig)
                if sig == signal.SIGHUP:
                    time.sleep(1)
                    if m.proc.poll() is not None:
                        bad.append(f"{name}: SIGHUP stopped kvfs (nohup must hold)")
                        m.proc = None
                        break
                    continue
                try:
                    rc = m.proc.wait(timeout=WAIT)
                except subprocess.TimeoutExpired:
                    bad.append(f"{name}: kvfs still running {WAIT:.0f} s after {sig.name}")
                    abort_conn(conn)
                    m.kill()
                    break
                m.proc = None
                if rc != 0:
                    bad.append(f"{name}: kvfs exited with status {rc} after {sig.name}")
                elif is_mounted(m.mnt):
                    bad.append(f"{name}: still mounted after kvfs exited")
        finally:
            if m.proc is not None:
                m.kill()
            elif is_mounted(m.mnt):
                subprocess.run(["fusermount3", "-u", "-z", m.mnt], check=False)
        if not bad:
            print(f"{name}: as expected", flush=True)
    return bad


def main():
    skip_without_fuse()
    kvfs = os.path.abspath(sys.argv[1])
    scratch = tempfile.mkdtemp(prefix="kvfs-shutdown-")
    bad = []
    m = Mount(kvfs, scratch)
    try:
        m.start()
        busy_rounds = 0
        for rnd in range(ROUNDS):
            sig = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)[rnd % 3]
            start = os.path.getsize(m.log)
            bad += one_round(m, rnd, sig)
            if bad:
                break
            dropped = dropped_at_stop(m.log, start)
            busy_rounds += dropped > 0
            m.start()
            bad += check_whole(m, rnd)
            if bad:
                break
            print(f"round {rnd} ({sig.name}): exited cleanly, {dropped} queued "
                  "invalidations dropped", flush=True)
        if not bad:
            m.stop()
            bad += inherited_dispositions(kvfs, scratch)
            if busy_rounds == 0:
                bad.append("no signal came while invalidations were running: the test "
                           "tested nothing (raise FS_SHUTDOWN_FILES)")
    finally:
        if m.proc is not None:
            m.kill()
        elif is_mounted(m.mnt):
            subprocess.run(["fusermount3", "-u", "-z", m.mnt], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    for b in bad:
        print("FAIL", b)
    print("OK" if not bad else "FAILED")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
