"""loop_probe.py — how long a node's event loop is held up.

    with LoopProbe(control_socket_path) as p:
        ... the work to measure ...
    p.worst  # seconds, the longest ping answer; p.count pings

A thread pings the node's control socket (unix:PATH, the JSON `ping` op)
every 2 ms while the block runs. The control socket is served by the
node's loop, so the worst answer time is the longest stretch the loop
could not serve anyone. Used by scripts/bench-fs and scripts/bench-bigvalue.
"""
import socket
import threading
import time


class LoopProbe:
    def __init__(self, path):
        self.path = path
        self.worst, self.count = 0.0, 0
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.path)
            f = s.makefile("rb")
            while not self.halt.is_set():
                t = time.perf_counter()
                s.sendall(b'{"op":"ping"}\n')
                f.readline()
                self.worst = max(self.worst, time.perf_counter() - t)
                self.count += 1
                time.sleep(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.thread.join()
