"""fs_mount.py — a kvfs mount for the Python test drivers and scripts/bench-fs.

    with Mount(kvfs_binary, scratch_dir) as m:   # mounts m.mnt, data in m.data
        ...
        m.restart()     # clean unmount + mount on the same data
        m.crash()       # SIGKILL + fusermount3 -u -z, then mount again

The process is always started by us in the foreground, so we kill only our
own pid; on exit (also on exceptions) the mount is removed and the process
stopped.
"""
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ports import free_port, free_ports  # noqa: E402,F401
import harness  # noqa: E402

harness.setup()


def skip_without_fuse():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        sys.exit(77)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path and line.split()[2].startswith("fuse")
                   for line in f)


class Mount:
    def __init__(self, kvfs, scratch, args=(), name="kv", preexec_fn=None):
        self.kvfs = os.path.abspath(kvfs)
        self.mnt = os.path.join(scratch, name + "-mnt")
        self.data = os.path.join(scratch, name + "-data")
        self.log = os.path.join(scratch, name + ".log")
        self.args = list(args)
        self.proc = None
        self.preexec_fn = preexec_fn  # run in the child before kvfs starts
        os.makedirs(self.mnt, exist_ok=True)

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.kvfs, self.mnt, "--data", self.data, "-f"] +
                                         self.args, stdout=log, stderr=log,
                                         preexec_fn=self.preexec_fn)
        deadline = time.time() + 15
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None:
                raise RuntimeError(f"kvfs exited with {self.proc.returncode}; see {self.log}:\n" +
                                   open(self.log).read()[-2000:])
            if time.time() > deadline:
                raise RuntimeError("kvfs did not mount within 15 s")
            time.sleep(0.02)

    def stop(self):
        if self.proc is None:
            return
        subprocess.run(["fusermount3", "-u", self.mnt], check=False)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False)
        if rc != 0:
            raise RuntimeError(f"kvfs exited with status {rc} after unmount")

    def kill(self):
        """SIGKILL at an arbitrary moment, then drop the dead mount. The wait
        is bounded: a daemon stuck in the kernel (a FUSE deadlock) does not
        die until its connection is aborted, and must not hang the test."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            print(f"kvfs (pid {self.proc.pid}) does not die: stuck in the kernel",
                  file=sys.stderr, flush=True)
        self.proc = None
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False)

    def restart(self):
        self.stop()
        self.start()

    def crash(self):
        self.kill()
        self.start()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            if exc[0] is None:
                self.stop()
            else:
                self.kill()
        elif is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False)
        return False
