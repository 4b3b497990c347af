"""ports.py — TCP ports on 127.0.0.1 for tests that start listeners.

A port the kernel hands out for bind(0) comes from the ephemeral range, the
range every outgoing connection takes its source port from: one picked that
way, closed and bound later by a node can be taken meanwhile by any
connection on the machine, the cluster's own included. So ports are picked
at random below the ephemeral range, where only explicit listeners go, and
checked free with a bind (tests/lib/ports.c does the same for C tests).
"""
import random
import socket


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n):
    """n distinct ports that were free a moment ago."""
    lo, hi = 10000, _ephemeral_low()
    if hi <= lo + 1000:
        lo, hi = 61000, 65535
    ports = []
    for _ in range(1000 * n):
        if len(ports) == n:
            break
        p = random.randrange(lo, hi)
        if p in ports:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            ports.append(p)
        except OSError:
            pass
        finally:
            s.close()
    if len(ports) < n:
        raise RuntimeError(f"no {n} free ports in [{lo}, {hi})")
    return ports


def free_port():
    return free_ports(1)[0]
