#!/usr/bin/env python3
"""lincheck.py — a linearizability checker for key-value histories, with a
per-key register model.

Algorithm: Wing & Gong (1993) search, with Lowe's (2017) memoisation of
(set of linearised operations, register state) as used by Knossos and
Porcupine. Keys are independent registers, so the history is split per key
(linearizability is compositional, Herlihy & Wing 1990) and each key is
checked alone.

An operation is a dict (or Op):
    process   client id (informational)
    kind      "put" or "get"
    key
    value     put: the value written; get: the value read (None = missing)
    call      invocation time (seconds, one monotonic clock for all clients)
    ret       completion time, or None when the outcome is unknown (a put
              that failed or timed out may or may not have taken effect;
              it is then pending forever and may be linearised at any point
              after its call, or never)
A get that failed has no effect and is left out by the caller.

check(history, initial=None) -> (ok, details)

Run as a script with no arguments to run the self-tests, or with a JSON-lines
history file to check it.
"""
import json
import sys
from collections import defaultdict

INF = float("inf")


class _Ev:
    __slots__ = ("op", "is_call", "prev", "next", "match", "time")

    def __init__(self, op, is_call, time):
        self.op = op
        self.is_call = is_call
        self.time = time
        self.prev = self.next = self.match = None


def _prune(ops):
    """Drops pending puts whose value nobody read: never linearising them is
    always at least as good as linearising them (they only change the state
    to a value no read needs), and each one would double the search."""
    read = {o["value"] for o in ops if o["kind"] == "get"}
    return [o for o in ops if not (o["kind"] == "put" and o["ret"] is None
                                   and o["value"] not in read)]


def check_key(ops, initial=None, max_states=2_000_000):
    """True/False for one key's operations; raises RuntimeError when the
    search exceeds max_states (history too concurrent to decide)."""
    ops = _prune(ops)
    evs = []
    for i, o in enumerate(ops):
        o = dict(o)
        o["id"] = i
        c = _Ev(o, True, o["call"])
        evs.append(c)
        if o["ret"] is not None:
            r = _Ev(o, False, o["ret"])
            c.match = r
            evs.append(r)
    # Calls before returns at equal times: such operations overlap.
    evs.sort(key=lambda e: (e.time, 0 if e.is_call else 1))
    head = _Ev(None, False, -INF)
    prev = head
    for e in evs:
        prev.next = e
        e.prev = prev
        prev = e

    def lift(e):
        e.prev.next = e.next
        if e.next:
            e.next.prev = e.prev
        m = e.match
        if m:
            m.prev.next = m.next
            if m.next:
                m.next.prev = m.prev

    def unlift(e):
        m = e.match
        if m:
            m.prev.next = m
            if m.next:
                m.next.prev = m
        e.prev.next = e
        if e.next:
            e.next.prev = e

    state = initial
    linearized = 0
    cache = set()
    stack = []
    entry = head.next
    while True:
        if entry is None:
            return True  # every completed operation is linearised
        if entry.is_call:
            o = entry.op
            if o["kind"] == "put":
                ok, new_state = True, o["value"]
            else:
                ok, new_state = (state == o["value"]), state
            if ok:
                nl = linearized | (1 << o["id"])
                key = (nl, new_state)
                if key not in cache:
                    cache.add(key)
                    if len(cache) > max_states:
                        raise RuntimeError("search space too large")
                    stack.append((entry, state))
                    state = new_state
                    linearized = nl
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # A completed operation that could not be linearised before its
            # return: undo the last choice.
            if not stack:
                return False
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op["id"])
            unlift(entry)
            entry = entry.next


def check(history, initial=None):
    """Returns (ok, bad_keys)."""
    per = defaultdict(list)
    for o in history:
        per[o["key"]].append(o)
    bad = [k for k, ops in sorted(per.items()) if not check_key(ops, initial)]
    return not bad, bad


def _op(kind, value, call, ret, key="k"):
    return {"process": 0, "kind": kind, "key": key, "value": value, "call": call, "ret": ret}


def selftest():
    cases = [
        # sequential
        (True, [_op("put", "a", 0, 1), _op("get", "a", 2, 3)]),
        (False, [_op("put", "a", 0, 1), _op("get", None, 2, 3)]),
        # a read concurrent with a write may see either
        (True, [_op("put", "a", 0, 10), _op("get", None, 1, 2), _op("get", "a", 3, 4)]),
        # ... but not new then old (no going back in time)
        (False, [_op("put", "a", 0, 10), _op("get", "a", 1, 2), _op("get", None, 3, 4)]),
        # stale read after a completed write elsewhere
        (False, [_op("put", "a", 0, 1), _op("put", "b", 2, 3), _op("get", "a", 4, 5)]),
        # a pending (failed) put may take effect late...
        (True, [_op("put", "a", 0, None), _op("get", None, 1, 2), _op("get", "a", 3, 4)]),
        # ... or never
        (True, [_op("put", "a", 0, None), _op("get", None, 1, 2)]),
        # ... but not before it was called
        (False, [_op("get", "a", 0, 1), _op("put", "a", 2, None)]),
        # a value nobody wrote
        (False, [_op("get", "zz", 0, 1)]),
        # concurrent writes, reads agree on one order
        (True, [_op("put", "a", 0, 5), _op("put", "b", 0, 5), _op("get", "b", 6, 7),
                _op("get", "b", 8, 9)]),
        (False, [_op("put", "a", 0, 5), _op("put", "b", 0, 5), _op("get", "b", 6, 7),
                 _op("get", "a", 8, 9)]),
    ]
    for i, (want, h) in enumerate(cases):
        got, _ = check(h)
        if got != want:
            print(f"selftest case {i}: expected {want}, got {got}")
            return 1
    # A larger linearizable history: one writer, readers see a prefix order.
    h, t = [], 0.0
    for i in range(300):
        h.append(_op("put", str(i), t, t + 1.0, key="k%d" % (i % 3)))
        h.append(_op("get", str(i), t + 0.5, t + 1.5, key="k%d" % (i % 3)))
        t += 0.7
    ok, bad = check(h)
    if not ok:
        print("selftest: long history rejected", bad)
        return 1
    print("lincheck selftest: ok (%d cases)" % (len(cases) + 1))
    return 0


def main(argv):
    if len(argv) < 2:
        return selftest()
    with open(argv[1]) as f:
        h = [json.loads(line) for line in f if line.strip()]
    ok, bad = check(h)
    print("linearizable" if ok else "NOT linearizable: keys %s" % bad)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
