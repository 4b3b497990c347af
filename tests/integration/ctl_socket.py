#!/usr/bin/env python3
"""ctl_socket.py — the control socket of a real, mounted kvfs node.

    ctl_socket.py KVFS_BINARY KVFS_CLI_BINARY

Covers: JSON-lines and RESP round trips for every command over a real Unix
socket and over TCP, pipelining, binary values, redis-cli (SET/GET/MSET/SCAN)
and a short redis-benchmark, kvfs-cli, socket and mount seeing the same keys,
malformed input (truncated JSON, invalid UTF-8, wrong types, huge RESP
lengths, a fixed-seed fuzz loop of random bytes) with the node staying up,
and the limits (connection count, idle timeout).

Every process is started here in the foreground and stopped by its pid; the
mounts are removed on exit, also on failure.
"""
import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fs_mount import free_port  # noqa: E402

if not os.path.exists("/dev/fuse"):
    print("SKIP: /dev/fuse is missing")
    sys.exit(77)

KVFS, CLI = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
TMP = tempfile.mkdtemp(prefix="kvfs-ctl.")
NODES = []
BAD_EXITS = []


def mounted(path):
    with open("/proc/mounts") as f:
        return any(l.split()[1] == os.path.realpath(path) for l in f)


class Node:
    def __init__(self, name, control=None, env=None, args=(), wait=True):
        self.mnt = os.path.join(TMP, name + "-mnt")
        self.data = os.path.join(TMP, name + "-data")
        self.sock = os.path.join(TMP, name + ".sock")
        os.makedirs(self.mnt)
        self.control = control or "unix:" + self.sock
        e = dict(os.environ)
        e.update(env or {})
        self.log = open(os.path.join(TMP, name + ".log"), "w")
        self.proc = subprocess.Popen([KVFS, self.mnt, "--data", self.data, "--control",
                                      self.control, "-f"] + list(args),
                                     stdout=self.log, stderr=self.log, env=e)
        NODES.append(self)
        if wait:
            self.wait_up()

    def wait_up(self):
        for _ in range(400):
            if mounted(self.mnt) and self.try_connect():
                return
            if self.proc.poll() is not None:
                raise SystemExit("FAIL: kvfs exited early, see " + self.log.name)
            time.sleep(0.05)
        raise SystemExit("FAIL: kvfs did not come up")

    def connect(self):
        if self.control.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.control[5:])
        else:
            host, port = self.control.rsplit(":", 1)
            s = socket.create_connection((host, int(port)))
        s.settimeout(20)
        return s

    def try_connect(self):
        try:
            self.connect().close()
            return True
        except OSError:
            return False

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.returncode != 0:
                # A clean shutdown exits 0 (under ASan, also without leaks).
                BAD_EXITS.append(self.proc.returncode)
                with open(self.log.name) as f:
                    print("kvfs exit status %d; log tail:\n%s" % (self.proc.returncode, f.read()[-3000:]))
        if mounted(self.mnt):
            subprocess.call(["fusermount3", "-u", "-z", self.mnt])
        self.log.close()


def cleanup():
    for n in NODES:
        try:
            n.stop()
        except Exception as e:  # keep cleaning up the others
            print("cleanup:", e)
    shutil.rmtree(TMP, ignore_errors=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# ---- protocol helpers ---------------------------------------------------

class Json:
    def __init__(self, node):
        self.s = node.connect()
        self.f = self.s.makefile("rb")

    def send(self, *reqs):
        self.s.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))

    def recv(self):
        line = self.f.readline()
        check(line.endswith(b"\n"), "reply is a full line: %r" % line)
        return json.loads(line)

    def call(self, **req):
        self.send(req)
        return self.recv()

    def close(self):
        self.f.close()
        self.s.close()


def resp_cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Resp:
    def __init__(self, node):
        self.s = node.connect()
        self.f = self.s.makefile("rb")

    def read(self):
        line = self.f.readline()
        check(line.endswith(b"\r\n"), "RESP line: %r" % line)
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return Exception(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise AssertionError("bad RESP type %r" % line)

    def call(self, *args):
        self.s.sendall(resp_cmd(*args))
        return self.read()

    def close(self):
        self.f.close()
        self.s.close()


def redis_cli(node, *args, stdin=None):
    return subprocess.run(["redis-cli", "-s", node.sock] + list(args), input=stdin,
                          capture_output=True, timeout=30, check=True).stdout


def cli(node, *args, stdin=None, rc=0):
    p = subprocess.run([CLI, "--socket", node.control] + list(args), input=stdin,
                       capture_output=True, timeout=30)
    check(p.returncode == rc, "kvfs-cli %s: rc %d (want %d) %s" % (args, p.returncode, rc, p.stderr))
    return p.stdout


# ---- tests ----------------------------------------------------------------

def test_json_round_trips(n):
    j = Json(n)
    check(j.call(op="ping", id=1) == {"ok": True, "id": 1, "pong": True}, "ping")
    check(j.call(op="put", key="j/a.txt", value="hello json", id="p")["ok"], "put")
    r = j.call(op="get", key="j/a.txt")
    check(r["value"] == "hello json" and r["version"] > 0, "get %r" % r)
    blob = bytes(range(256)) * 3
    check(j.call(op="put", key="j/bin", value_b64=base64.b64encode(blob).decode())["ok"], "put b64")
    r = j.call(op="get", key="j/bin")
    check(base64.b64decode(r["value_b64"]) == blob, "binary round trip")
    with open(os.path.join(n.mnt, "j/bin"), "rb") as f:
        check(f.read() == blob, "binary value visible in the mount")
    r = j.call(op="stat", key="j/a.txt")
    check(r["size"] == 10 and r["type"] == "file" and r["mode"] == 0o100644, "stat %r" % r)
    check(abs(r["mtime"] - time.time()) < 60, "mtime is now")
    r = j.call(op="batch", ops=[{"op": "put", "key": "j/b", "value": "1"},
                                {"op": "put", "key": "j/c", "value": "2"},
                                {"op": "delete", "key": "j/a.txt"}])
    check(r["ok"] and r["n"] == 3, "batch %r" % r)
    r = j.call(op="list", prefix="j/", limit=2)
    check(r["keys"] == ["j/b", "j/bin"] and r["cursor"] == "j/bin", "list page 1 %r" % r)
    r = j.call(op="list", prefix="j/", limit=2, cursor=r["cursor"])
    check(r["keys"] == ["j/c"] and r["cursor"] is None, "list page 2 %r" % r)
    check(j.call(op="get", key="j/a.txt")["error"]["code"] == "not_found", "deleted by batch")
    check(j.call(op="delete", key="j/b")["ok"], "delete")
    check(j.call(op="delete", key="j/b")["error"]["code"] == "not_found", "delete missing")
    j.call(op="put", key="jd/sub/f", value="x")
    check(j.call(op="delete", key="jd/sub")["error"]["code"] == "is_directory",
          "delete of a directory (keys below it) says so")
    os.mkdir(os.path.join(n.mnt, "jm"))  # an explicit, empty directory
    check(j.call(op="delete", key="jm")["error"]["code"] == "is_directory",
          "delete of an explicit directory by its name says so")
    r = j.call(op="status")
    for f in ("role", "term", "leader", "peers", "keys"):
        check(f in r, "status has " + f)
    check(r["role"] == "standalone", "standalone role")
    check(j.call(op="put", key="s/doc", value="python programming is fun")["ok"], "put doc")
    r = j.call(op="search", query="python", mode="text", limit=5)
    check(r["ok"] and r["results"] and r["results"][0]["key"] == "s/doc", "search %r" % r)
    check(isinstance(r["results"][0]["score"], float), "score is a number")
    check(j.call(op="search", query="python", mode="nope")["error"]["code"] == "bad_request", "bad mode")
    j.close()


def test_json_pipelining(n):
    j = Json(n)
    reqs = []
    for i in range(200):
        reqs.append({"op": "put", "key": "pipe/%03d" % i, "value": str(i), "id": 2 * i})
        reqs.append({"op": "get", "key": "pipe/%03d" % i, "id": 2 * i + 1})
    j.send(*reqs)
    for i in range(400):
        r = j.recv()
        check(r["id"] == i and r["ok"], "pipelined reply %d in order: %r" % (i, r))
        if i % 2:
            check(r["value"] == str(i // 2), "read-your-writes in a pipeline")
    j.close()


def test_resp_round_trips(n):
    c = Resp(n)
    check(c.call("PING") == "PONG", "PING")
    check(c.call("ECHO", "x y") == b"x y", "ECHO")
    check(c.call("SET", "r/k", b"v\x00\xff") == "OK", "SET")
    check(c.call("GET", "r/k") == b"v\x00\xff", "GET binary")
    check(c.call("MSET", "r/a", "1", "r/b", "2") == "OK", "MSET")
    check(c.call("MGET", "r/a", "r/none", "r/b") == [b"1", None, b"2"], "MGET")
    check(c.call("EXISTS", "r/a", "r/none") == 1, "EXISTS")
    check(c.call("DEL", "r/a", "r/none") == 1, "DEL")
    check(isinstance(c.call("DBSIZE"), int), "DBSIZE")
    check(sorted(c.call("KEYS", "r/*")) == [b"r/b", b"r/k"], "KEYS")
    check(b"redis_version" in c.call("INFO"), "INFO")
    check(isinstance(c.call("COMMAND", "COUNT"), int), "COMMAND COUNT")
    check(c.call("SELECT", "0") == "OK", "SELECT 0")
    check(c.call("CONFIG", "GET", "save") == [], "CONFIG GET")
    check(isinstance(c.call("NOSUCH"), Exception), "unknown command")
    check("invalid key" in str(c.call("SET", "/abs", "v")), "invalid key refused")
    check(isinstance(c.call("SET", "r/k/under", "v"), Exception), "key under a file refused")
    # A new key that is a directory of other keys is refused, whether its
    # children sort right after it ("rd/x") or after "rd-x", "rd.x"; keys
    # never used as directories are created (the store's directory filter
    # answers for them without an ordered lookup).
    check(c.call("SET", "rd/sub/x", "1") == "OK", "SET rd/sub/x")
    check(c.call("SET", "rd-x", "1") == "OK" and c.call("SET", "rd.x", "1") == "OK", "SET rd-x")
    for k in ("rd", "rd/sub"):
        check("is a directory" in str(c.call("SET", k, "v")), "SET over directory %s refused" % k)
    check(c.call("SET", "rd/sub/y", "2") == "OK", "SET beside a key")
    check(c.call("SET", "rd/sub/x.d", "3") == "OK", "SET of a name that is no directory")
    # Pipelined: 500 SETs then GETs in one write.
    c.s.sendall(b"".join(resp_cmd("SET", "rp/%d" % i, i) for i in range(500)) +
                b"".join(resp_cmd("GET", "rp/%d" % i) for i in range(500)))
    for i in range(500):
        check(c.read() == "OK", "pipelined SET %d" % i)
    for i in range(500):
        check(c.read() == str(i).encode(), "pipelined GET %d" % i)
    c.s.sendall(b"PING\r\nQUIT\r\n")
    check(c.read() == "PONG" and c.read() == "OK", "inline PING, QUIT")
    check(c.f.read() == b"", "QUIT closes")
    c.close()


def test_redis_cli_and_mount(n):
    check(redis_cli(n, "SET", "cli/x", "from redis") == b"OK\n", "redis-cli SET")
    check(redis_cli(n, "GET", "cli/x") == b"from redis\n", "redis-cli GET")
    check(redis_cli(n, "MSET", "cli/a", "1", "cli/b", "2") == b"OK\n", "redis-cli MSET")
    # SCAN cursors are shared by the server's connections (pooled clients).
    r = redis_cli(n, "SCAN", "0", "COUNT", "1").split()
    r2 = redis_cli(n, "SCAN", r[0].decode(), "COUNT", "1").split()
    check(len(r2) == 2 and r2[1] != r[1], "SCAN continued on another connection %r %r" % (r, r2))
    keys = redis_cli(n, "--scan", "--pattern", "cli/*").split()
    check(sorted(keys) == [b"cli/a", b"cli/b", b"cli/x"], "redis-cli --scan %r" % keys)
    # socket -> mount
    with open(os.path.join(n.mnt, "cli/x")) as f:
        check(f.read() == "from redis", "socket write visible as a file")
    check(sorted(os.listdir(os.path.join(n.mnt, "cli"))) == ["a", "b", "x"], "ls of the mount")
    # mount -> socket
    os.makedirs(os.path.join(n.mnt, "m/dir"), exist_ok=True)
    with open(os.path.join(n.mnt, "m/dir/file.txt"), "w") as f:
        f.write("from the mount")
    check(redis_cli(n, "GET", "m/dir/file.txt") == b"from the mount\n", "file visible over RESP")
    check(Json(n).call(op="get", key="m/dir/file.txt")["value"] == "from the mount", "file over JSON")
    os.unlink(os.path.join(n.mnt, "cli/a"))
    check(redis_cli(n, "EXISTS", "cli/a") == b"0\n", "rm visible over the socket")
    # Explicit directories are files' parents: a key cannot be written over one.
    check(b"directory" in redis_cli(n, "SET", "m/dir", "x"), "SET over a directory refused")
    out = subprocess.run(["redis-benchmark", "-s", n.sock, "-t", "set,get", "-n", "2000",
                          "-c", "10", "-q"], capture_output=True, timeout=120)
    check(out.returncode == 0 and b"SET" in out.stdout, "redis-benchmark runs")


def test_kvfs_cli(n):
    cli(n, "put", "c/one", "1")
    check(cli(n, "get", "c/one") == b"1", "cli get")
    cli(n, "put", "c/bin", "-", stdin=b"\x00\x01\xfe")
    check(cli(n, "get", "c/bin") == b"\x00\x01\xfe", "cli binary")
    check(cli(n, "ls", "c/") == b"c/bin\nc/one\n", "cli ls")
    cli(n, "del", "c/one")
    cli(n, "get", "c/one", rc=1)
    check(b'"role"' in cli(n, "status"), "cli status")
    cli(n, "put", "c/doc", "kvfs keeps every file in a write-ahead log")
    check(b"c/doc" in cli(n, "search", "--mode", "text", "write-ahead"), "cli search")
    cli(n, "put", "../x", "1", rc=1)
    cli(n, "ping")


def test_malformed_input(n):
    keep = Resp(n)  # a connection open across the abuse must keep working
    check(keep.call("PING") == "PONG", "before")
    j = Json(n)
    bad = [b'{"op":"put","key":', b'{"op":"put","key":"a","value":"\xff\xfe"}', b'[1]',
           b'{"op":7}', b'{"op":"get","key":5}', b'{"op":"list","limit":"x"}',
           b'{"op":"batch","ops":"x"}', b'{"op":"put","key":"a","value_b64":"!!"}', b'{}']
    j.s.sendall(b"\n".join(bad) + b"\n")
    for b in bad:
        r = j.recv()
        check(r["ok"] is False and r["error"]["code"] == "bad_request", "bad request %r: %r" % (b, r))
    check(j.call(op="ping")["ok"], "JSON connection survives")
    j.close()
    # Bad framing: an error, then the connection goes on at the next line.
    for payload, what in [(b"*1\r\n$-7\r\n", "negative bulk"), (b"*2\r\n$3\r\nGET\r\n:1\r\n", "bad type"),
                          (b"*x\r\n", "bad count")]:
        c = Resp(n)
        c.s.sendall(payload + b"PING\r\n")
        r = c.read()
        check(isinstance(r, Exception) and "Protocol error" in str(r), "%s: %r" % (what, r))
        check(c.read() == "PONG", what + ": connection still served")
        c.close()
    # Over the limits: an error; the request is skipped, or for absurd
    # lengths the connection is closed.
    c = Resp(n)
    c.s.sendall(b"*1\r\n$999999999999\r\n")
    check("Protocol error" in str(c.read()), "absurd bulk length refused")
    check(c.f.read() == b"", "absurd bulk length: connection closed after the error")
    c.close()
    c = Resp(n)
    c.s.sendall(b"*99999999\r\n")
    check("Protocol error" in str(c.read()), "huge argument count refused")
    c.close()
    # A too-large value over RESP is refused and skipped, not buffered.
    c = Resp(n)
    size = (32 << 20) + 1
    c.s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % size)
    check("too large" in str(c.read()), "oversized value refused")
    chunk = b"y" * (1 << 20)
    for _ in range(size // len(chunk)):
        c.s.sendall(chunk)
    c.s.sendall(b"y" * (size % len(chunk)) + b"\r\nPING\r\n")
    check(c.read() == "PONG", "connection served after the skipped value")
    c.close()
    # Fuzz: random bytes and mutated requests on many connections.
    rng = random.Random(1234)
    seeds = [resp_cmd("SET", "fz", "v") + resp_cmd("GET", "fz"),
             b'{"op":"put","key":"fz","value":"v","id":1}\n{"op":"list"}\n']
    for i in range(300):
        s = n.connect()
        s.settimeout(2)
        if i % 3 == 0:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 400)))
        else:
            data = bytearray(seeds[i % 2])
            for _ in range(rng.randrange(1, 5)):
                data[rng.randrange(len(data))] = rng.getrandbits(8)
            data = bytes(data)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except (socket.timeout, ConnectionError):
            pass
        s.close()
    check(n.alive(), "node survived the fuzz loop")
    check(keep.call("PING") == "PONG", "old connection still served")
    check(Resp(n).call("PING") == "PONG", "new connection served")
    keep.close()


def test_limits():
    n = Node("lim", env={"KVFS_CTL_MAX_CONNS": "4", "KVFS_CTL_IDLE_MS": "600"})
    time.sleep(0.3)  # the start-up probe connection must be gone first
    conns = [Resp(n) for _ in range(4)]
    for c in conns:
        check(c.call("PING") == "PONG", "under the limit")
    extra = Json(n)
    r = extra.call(op="ping")
    check(r["ok"] is False and r["error"]["code"] == "unavailable", "over the limit: %r" % r)
    extra.close()
    for c in conns:
        c.close()
    time.sleep(0.3)
    idle = Resp(n)
    check(idle.call("PING") == "PONG", "after the others left")
    time.sleep(1.5)
    check(idle.f.read() == b"", "idle connection closed")
    idle.close()
    # A client that sends but never reads: backpressure, then the idle close.
    hog = n.connect()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.settimeout(5)
    sent = 0
    try:
        while sent < (64 << 20):
            sent += hog.send(resp_cmd("ECHO", "x" * 60000) * 16)
    except (socket.timeout, ConnectionError):
        pass
    check(sent < (64 << 20), "the node stopped reading from a client that does not read")
    time.sleep(1.5)
    try:
        hog.setblocking(False)
        while hog.recv(1 << 20):
            pass
        closed = False
    except BlockingIOError:
        closed = False
    except ConnectionError:
        closed = True
    else:
        closed = True
    check(closed, "a client that stopped reading is closed after the idle timeout")
    hog.close()
    check(n.alive(), "node up after the limits")
    n.stop()


def test_tcp():
    port = free_port()
    n = Node("tcp", control="127.0.0.1:%d" % port)
    out = subprocess.run(["redis-cli", "-p", str(port), "SET", "t/k", "v"], capture_output=True, timeout=30)
    check(out.stdout == b"OK\n", "redis-cli over TCP")
    check(cli(n, "get", "t/k") == b"v", "kvfs-cli over TCP")
    n.stop()


def test_raft():
    """Three Raft nodes: a SET sent to a follower's socket is forwarded to the
    leader, and a GET on the other follower sees it (reads wait for a
    ReadIndex barrier)."""
    ports = [free_port() for _ in range(3)]
    addrs = ["127.0.0.1:%d" % p for p in ports]
    nodes = [Node("raft%d" % i, args=["--listen", addrs[i], "--peers",
                                      ",".join(a for a in addrs if a != addrs[i])], wait=False)
             for i in range(3)]
    for nd in nodes:
        nd.wait_up()
    leader = None
    deadline = time.time() + 20
    while leader is None and time.time() < deadline:
        for i, nd in enumerate(nodes):
            try:
                if Json(nd).call(op="status").get("role") == "leader":
                    leader = i
            except (OSError, ValueError):
                pass
        time.sleep(0.1)
    check(leader is not None, "a leader was elected")
    f1, f2 = [i for i in range(3) if i != leader]
    st = Json(nodes[f1]).call(op="status")
    check(st["role"] == "follower" and "term" in st and "leader" in st, "follower status %r" % st)
    c1, c2 = Resp(nodes[f1]), Resp(nodes[f2])
    for i in range(20):
        check(c1.call("SET", "raft/%d" % i, "v%d" % i) == "OK", "SET on a follower is forwarded")
        check(c2.call("GET", "raft/%d" % i) == b"v%d" % i, "GET on another follower sees it")
    check(c1.call("MSET", "raft/a", "1", "raft/b", "2") == "OK", "MSET forwarded")
    check(c2.call("MGET", "raft/a", "raft/b") == [b"1", b"2"], "MGET on another follower")
    j = Json(nodes[leader])
    check(j.call(op="get", key="raft/19")["value"] == "v19", "JSON get on the leader")
    c1.close()
    c2.close()
    j.close()
    for nd in nodes:
        nd.stop()


def main():
    n = Node("main")
    tests = [lambda: test_json_round_trips(n), lambda: test_json_pipelining(n),
             lambda: test_resp_round_trips(n), lambda: test_redis_cli_and_mount(n),
             lambda: test_kvfs_cli(n), lambda: test_malformed_input(n), test_limits, test_tcp,
             test_raft]
    names = ["json_round_trips", "json_pipelining", "resp_round_trips", "redis_cli_and_mount",
             "kvfs_cli", "malformed_input", "limits", "tcp", "raft"]
    failed = 0
    for name, t in zip(names, tests):
        try:
            t()
            print("ok   ", name)
        except Exception as e:
            failed += 1
            print("FAIL ", name, ":", repr(e))
        sys.stdout.flush()
    check(n.alive(), "node still up at the end")
    n.stop()
    if BAD_EXITS:
        print("FAIL  clean shutdown: exit statuses", BAD_EXITS)
        failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        cleanup()
    sys.exit(rc)
