"""ml_lib.py — a local masterless kvfs cluster of real processes, for the
masterless integration tests (ml_cluster.py) and scripts/bench-masterless.

    with MlCluster(kvfs, scratch, n=3) as c:   # every node mounted, loopback only
        c.start_all()
        c.ctl(0).put("k", "v"); c.ctl(1).get("k")
        c.write_file(1, "k", "v"); c.read_file(2, "k")  # through the mounts
        c.kill(i) / c.nodes[i].start()                 # SIGKILL, restart
        c.isolate(i) / c.heal()                        # KVFS_FAULTS=file=PATH
        c.wait_converged({key: value_or_None}, timeout=10)

n=1 gives a standalone node (no --peers), for comparisons.

Every process is started by us in the foreground; we signal only our own
pids, and on exit (also on exceptions) every node is stopped and every mount
removed (fusermount3 -u, or -u -z for a killed node). Self-contained on
purpose: it does not import the Raft harness.
"""
import base64
import errno
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


def skip_without_fuse():
    if not os.path.exists("/dev/fuse") or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        print("SKIP: /dev/fuse is missing")
        sys.exit(77)


def find_kvfs(argv):
    if len(argv) > 1:
        return os.path.abspath(argv[1])
    root = os.environ.get("KVFS_BUILD_ROOT")
    if root:
        return os.path.join(root, "fs", "kvfs")
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "build-mt", "fs", "kvfs")


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[1] == path:
                return True
    return False


class CtlError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class Ctl:
    """One JSON-lines connection to a control socket (unix path or
    ("127.0.0.1", port))."""

    def __init__(self, addr, timeout=10.0):
        self.addr = addr
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def connect(self):
        if isinstance(self.addr, tuple):
            s = socket.create_connection(self.addr, timeout=self.timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            s.connect(self.addr)
        self.sock = s
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def send_raw(self, data):
        if self.sock is None:
            self.connect()
        self.sock.sendall(data)

    def recv_line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionResetError("control socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, obj):
        """The reply; OSError on a broken connection (then closed), CtlError
        on an error reply."""
        try:
            self.send_raw(json.dumps(obj).encode() + b"\n")
            rep = self.recv_line()
        except (OSError, socket.timeout):
            self.close()
            raise
        if not rep.get("ok"):
            err = rep.get("error", {})
            raise CtlError(err.get("code", "?"), err.get("message", ""))
        return rep

    def put(self, key, value):
        return self.call({"op": "put", "key": key, "value": value})

    def delete(self, key):
        return self.call({"op": "delete", "key": key})

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

    def list_all(self, prefix=""):
        """Every key under prefix (follows the cursor)."""
        out, cur = [], ""
        while True:
            rep = self.call({"op": "list", "prefix": prefix, "cursor": cur, "limit": 1000})
            out += rep.get("keys", [])
            cur = rep.get("cursor")
            if not cur:
                return out

    def pipeline_puts(self, items, window=256):
        """Puts (key, value) pairs with up to `window` requests in flight on
        this one connection; raises on the first error reply."""
        items = list(items)
        sent = done = 0
        while done < len(items):
            batch = b""
            while sent < len(items) and sent - done < window:
                k, v = items[sent]
                batch += json.dumps({"op": "put", "key": k, "value": v}).encode() + b"\n"
                sent += 1
            if batch:
                self.send_raw(batch)
            rep = self.recv_line()
            if not rep.get("ok"):
                raise CtlError(rep.get("error", {}).get("code", "?"), str(rep))
            done += 1


class Node:
    def __init__(self, cluster, i):
        self.c = cluster
        self.i = i
        base = os.path.join(cluster.scratch, f"n{i}")
        self.mnt = base + "-mnt"
        self.data = base + "-data"
        self.log = base + ".log"
        self.addr = cluster.addrs[i]
        self.ctl_port = cluster.ctl_ports[i] if cluster.ctl_ports else None
        self.proc = None
        self.env = {}  # this node's own environment, over the cluster's
        os.makedirs(self.mnt, exist_ok=True)
        os.makedirs(self.data, exist_ok=True)

    @property
    def ctl_addr(self):
        if self.ctl_port:
            return ("127.0.0.1", self.ctl_port)
        return os.path.join(self.data, "control.sock")

    @property
    def faults(self):
        return os.path.join(self.data, "faults")

    def argv(self):
        a = [self.c.kvfs, self.mnt, "--data", self.data, "-f"]
        if len(self.c.addrs) > 1:
            peers = ",".join(x for x in self.c.addrs if x != self.addr)
            a += ["--listen", self.addr, "--peers", peers, "--mode", "masterless"]
        if self.ctl_port:
            a += ["--control", f"127.0.0.1:{self.ctl_port}"]
        return a + self.c.extra_args

    def start(self, wait=True):
        if self.c.closed:  # a test thread still running after the cleanup
            raise RuntimeError(f"node {self.i}: cluster already closed")
        env = dict(os.environ)
        env.update(self.c.env)
        env.update(self.env)
        env["KVFS_FAULTS"] = "file=" + self.faults
        with open(self.log, "ab") as log:
            log.write(f"===== start {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, env=env,
                                         stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()

    def ctl_ready(self):
        if self.ctl_port:
            try:
                socket.create_connection(("127.0.0.1", self.ctl_port), timeout=0.5).close()
                return True
            except OSError:
                return False
        return os.path.exists(self.ctl_addr)

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while not (is_mounted(self.mnt) and self.ctl_ready()):
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
        """SIGKILL, then a lazy unmount of the dead mount."""
        if self.proc is None:
            return
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False,
                       stderr=subprocess.DEVNULL)

    def ctl(self, timeout=10.0):
        return Ctl(self.ctl_addr, timeout)

    def put_many(self, items):
        """Puts (key, value) pairs one at a time over the control socket."""
        cl = self.ctl()
        try:
            for k, v in items:
                cl.put(k, v)
        finally:
            cl.close()

    def status(self, timeout=3.0):
        c = Ctl(self.ctl_addr, timeout)
        try:
            return c.status()
        finally:
            c.close()

    def block(self, addrs):
        tmp = self.faults + ".tmp"
        with open(tmp, "w") as f:
            f.write(" ".join(addrs) + "\n")
        os.rename(tmp, self.faults)

    # ---- through the mount ----
    def path(self, key):
        return os.path.join(self.mnt, key)

    def write_file(self, key, value):
        """open/write/close through the mount; close() == 0 means durable."""
        p = self.path(key)
        d = os.path.dirname(p)
        if d != self.mnt:
            os.makedirs(d, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def read_file(self, key):
        """Contents through the mount, or None when the file is missing."""
        try:
            with open(self.path(key), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return None

    def cat(self, key):
        """`cat` through the mount: contents, or None when it fails with
        'No such file or directory'."""
        r = subprocess.run(["cat", self.path(key)], capture_output=True)
        if r.returncode != 0:
            if b"No such file" in r.stderr:
                return None
            raise OSError(f"cat {self.path(key)}: {r.stderr.decode().strip()}")
        return r.stdout.decode("utf-8", "replace")


class MlCluster:
    def __init__(self, kvfs, scratch, n=3, env=None, extra_args=(), tcp_control=False):
        self.kvfs = kvfs
        self.scratch = scratch
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        ports = free_ports(2 * n if tcp_control else n)
        self.addrs = [f"127.0.0.1:{p}" for p in ports[:n]]
        self.ctl_ports = ports[n:] if tcp_control else None
        self.closed = False
        self.nodes = [Node(self, i) for i in range(n)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.closed = True
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
            nd.wait_ready()

    def ctl(self, i, timeout=10.0):
        return self.nodes[i].ctl(timeout)

    def kill(self, i):
        self.nodes[i].kill()

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

    def live(self):
        return [nd for nd in self.nodes if nd.alive()]

    def cat_many(self_unused, nd, keys):
        """`cat` of every key through node nd's mount, in one shell: a list
        of contents, None where the file does not exist."""
        script = ('for f do if [ -e "$f" ]; then cat -- "$f" || printf "\\001ERR"; '
                  'else printf "\\001MISSING"; fi; printf "\\000"; done')
        r = subprocess.run(["sh", "-c", script, "sh"] + [nd.path(k) for k in keys],
                           capture_output=True, check=True)
        parts = r.stdout.split(b"\0")[:-1]
        assert len(parts) == len(keys), (len(parts), len(keys), r.stderr[-500:])
        out = []
        for p in parts:
            if p == b"\1MISSING":
                out.append(None)
            elif p.endswith(b"\1ERR"):
                raise OSError(f"cat failed on node {nd.i}: {r.stderr[-500:]!r}")
            else:
                out.append(p.decode("utf-8", "replace"))
        return out

    def divergence(self, expect, nodes=None, via="file"):
        """[(node, key, expected, seen)] for every key of `expect`
        (key -> value, or None for 'absent') that a node serves differently."""
        bad = []
        for nd in (nodes if nodes is not None else self.live()):
            if via == "cat":
                keys = list(expect)
                for k, got in zip(keys, self.cat_many(nd, keys)):
                    if got != expect[k]:
                        bad.append((nd.i, k, expect[k], got))
                continue
            c = nd.ctl() if via == "ctl" else None
            try:
                for k, v in expect.items():
                    got = c.get(k) if c else nd.read_file(k)
                    if got != v:
                        bad.append((nd.i, k, v, got))
            finally:
                if c:
                    c.close()
        return bad

    def wait_converged(self, expect, nodes=None, timeout=10.0, via="file"):
        """Polls until every node serves `expect` (through the mount by
        default); returns the seconds it took, raises with the remaining
        differences at the deadline."""
        t0 = time.time()
        while True:
            bad = self.divergence(expect, nodes, via)
            if not bad:
                return time.time() - t0
            if time.time() - t0 > timeout:
                raise AssertionError(f"not converged after {timeout} s: {len(bad)} differences, "
                                     f"first: {bad[:5]}")
            time.sleep(0.05)

    def dump_logs(self, tail=3000):
        for nd in self.nodes:
            try:
                print(f"----- {nd.log} -----\n" + open(nd.log).read()[-tail:], file=sys.stderr)
            except OSError:
                pass
