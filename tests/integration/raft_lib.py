"""raft_lib.py — a local Raft cluster of real kvfs processes for the Raft
integration tests, tests/integration/lincheck tests and scripts/bench-raft.

    with Cluster(kvfs, scratch, n=3) as c:     # every node mounted, loopback only
        c.start_all(); c.wait_leader()
        c.ctl(0).put("k", "v"); c.ctl(1).get("k")
        c.kill(i) / c.restart(i) / c.stop_proc(i) / c.cont_proc(i)
        c.isolate(i) / c.heal()                # the transport's fault switch

Every process is started by us in the foreground; we signal only our own pids,
and on exit (also on exceptions) every node is stopped and every mount removed
(fusermount3 -u, or -u -z for a killed node).
"""
import base64
import json
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


# The failed checks of a test script, for its summary and exit status.
failures = []


def check(cond, msg):
    """Records (and prints) a failed check; returns cond."""
    if not cond:
        failures.append(msg)
        print("FAIL: " + msg, flush=True)
    return cond


def skip_without_fuse():
    if not os.path.exists("/dev/fuse") or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        print("SKIP: /dev/fuse is missing")
        sys.exit(77)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f if len(line.split()) > 2)


class CtlError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class Ctl:
    """One JSON-lines connection to a node's control socket."""

    def __init__(self, path, timeout=10.0):
        self.path = path
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def call(self, obj):
        """Returns the reply object; raises OSError on a broken connection
        (the connection is then closed) and CtlError on an error reply."""
        if self.sock is None:
            self.connect()
        try:
            self.sock.sendall(json.dumps(obj).encode() + b"\n")
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("control socket closed")
                self.buf += chunk
        except (OSError, socket.timeout):
            self.close()
            raise
        line, self.buf = self.buf.split(b"\n", 1)
        rep = json.loads(line)
        if not rep.get("ok"):
            err = rep.get("error", {})
            raise CtlError(err.get("code", "?"), err.get("message", ""))
        return rep

    def put(self, key, value):
        return self.call({"op": "put", "key": key, "value": value})

    def get(self, key):
        """The value, or None when the key is missing."""
        try:
            rep = self.call({"op": "get", "key": key})
        except CtlError as e:
            if e.code == "not_found":
                return None
            raise
        if "value_b64" in rep:
            return base64.b64decode(rep["value_b64"]).decode("utf-8", "replace")
        return rep.get("value")

    def status(self):
        return self.call({"op": "status"})


class Node:
    def __init__(self, cluster, i):
        self.c = cluster
        self.i = i
        base = os.path.join(cluster.scratch, f"n{i}")
        self.mnt = base + "-mnt"
        self.data = base + "-data"
        self.log = base + ".log"
        self.addr = cluster.addrs[i]
        self.proc = None
        self.stopped = False  # SIGSTOP
        self.env = {}   # this node's own environment on top of the cluster's
        os.makedirs(self.mnt, exist_ok=True)
        os.makedirs(self.data, exist_ok=True)

    @property
    def sock(self):
        return os.path.join(self.data, "control.sock")

    @property
    def faults(self):
        return os.path.join(self.data, "faults")

    def start(self, wait=True):
        peers = ",".join(a for a in self.c.addrs if a != self.addr)
        env = dict(os.environ)
        env.update(self.c.env)
        env.update(self.env)
        env["KVFS_FAULTS"] = "file=" + self.faults
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.c.kvfs, self.mnt, "--data", self.data, "--listen", self.addr,
                 "--peers", peers, "-f"] + self.c.extra_args,
                stdout=log, stderr=log, env=env)
        self.stopped = False
        if wait:
            self.wait_mounted()

    def wait_mounted(self, timeout=20):
        deadline = time.time() + timeout
        while not (is_mounted(self.mnt) and os.path.exists(self.sock)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.i} exited with {self.proc.returncode}; "
                                   f"see {self.log}:\n" + open(self.log).read()[-3000:])
            if time.time() > deadline:
                raise RuntimeError(f"node {self.i} did not mount within {timeout} s")
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Clean stop: unmount, wait; SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.stopped:
            self.proc.send_signal(signal.SIGCONT)
            self.stopped = False
        if self.alive():
            subprocess.run(["fusermount3", "-u", self.mnt], check=False,
                           stderr=subprocess.DEVNULL)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False,
                           stderr=subprocess.DEVNULL)
        self.proc = None

    def kill(self):
        if self.proc is None:
            return
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self.stopped = False
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False,
                       stderr=subprocess.DEVNULL)

    def sigstop(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def ctl(self, timeout=10.0):
        return Ctl(self.sock, timeout)

    def status(self, timeout=3.0):
        c = Ctl(self.sock, timeout)
        try:
            return c.status()
        finally:
            c.close()

    def block(self, addrs):
        tmp = self.faults + ".tmp"
        with open(tmp, "w") as f:
            f.write(" ".join(addrs) + "\n")
        os.rename(tmp, self.faults)


class Cluster:
    def __init__(self, kvfs, scratch, n=3, env=None, extra_args=()):
        self.kvfs = kvfs
        self.scratch = scratch
        self.env = {"KVFS_RAFT_ELECTION_MS": "300", "KVFS_RAFT_HEARTBEAT_MS": "50"}
        self.env.update(env or {})
        self.extra_args = list(extra_args)
        ports = free_ports(n)
        self.addrs = [f"127.0.0.1:{p}" for p in ports]
        self.nodes = [Node(self, i) for i in range(n)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for nd in self.nodes:
            try:
                nd.stop()
            except Exception as e:  # keep stopping the others
                print(f"cleanup of node {nd.i}: {e}", file=sys.stderr)
                nd.kill()

    def start_all(self):
        for nd in self.nodes:
            nd.start(wait=False)
        for nd in self.nodes:
            nd.wait_mounted()

    def ctl(self, i, timeout=10.0):
        return self.nodes[i].ctl(timeout)

    def leader(self, among=None, timeout=10.0):
        """Index of a node among `among` (default: all running) that says
        it leads and has not failed (a replica stopped by a log write or
        sync error keeps its role but leads nothing)."""
        among = [i for i in (among if among is not None else range(len(self.nodes)))
                 if self.nodes[i].alive() and not self.nodes[i].stopped]
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i in among:
                try:
                    st = self.nodes[i].status(timeout=1.0)
                except (OSError, CtlError, ValueError):
                    continue
                if st.get("role") == "leader" and not st.get("failed"):
                    return i
            time.sleep(0.05)
        raise RuntimeError("no leader elected within %.1f s" % timeout)

    wait_leader = leader

    def isolate(self, i):
        """Cuts node i off from every other node (both directions)."""
        me = self.nodes[i]
        me.block([a for a in self.addrs if a != me.addr])
        for nd in self.nodes:
            if nd is not me:
                nd.block([me.addr])

    def heal(self):
        for nd in self.nodes:
            nd.block([])

    def dump_logs(self, tail=4000):
        for nd in self.nodes:
            try:
                print(f"----- {nd.log} -----\n" + open(nd.log).read()[-tail:], file=sys.stderr)
            except OSError:
                pass


def retry_put(ctl_factory, key, value, timeout=15.0):
    """Puts until one attempt succeeds; returns the seconds it took."""
    t0 = time.time()
    c = None
    while True:
        try:
            if c is None:
                c = ctl_factory()
            c.put(key, value)
            c.close()
            return time.time() - t0
        except (OSError, CtlError):
            if c:
                c.close()
            c = None
            if time.time() - t0 > timeout:
                raise
            time.sleep(0.02)
