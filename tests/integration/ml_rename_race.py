#!/usr/bin/env python3
"""ml_rename_race.py — `mv f f` (rename of a file onto its own name) through
node 0's mount while node 1 keeps writing and deleting the same keys over
its control socket must return, not hang.

Found by ml_cluster.py's chaos scenario (which now skips self-renames).
Not masterless-specific: a standalone node hangs the same way when the
writes and deletes come over its own control socket (about 240 renames in).
What happens (kvfs at commit 6980a8a + libfuse 3.14, masterless, 3 nodes):
within a few hundred renames the rename(2) never returns. gdb on the node:
one libfuse worker sits in pthread_cond_wait inside libfuse's high-level
path locking (get_path2 -> queue_path/wait_path), no kvfs callback on the
stack, every other worker idle. Our reading: the kernel sends a RENAME
whose old and new (parent, name) are identical -- the usual same-dentry
short-cut of vfs_rename does not apply once remote changes have
invalidated one of the two dentries (invalidation / ESTALE revalidation
between the two lookups) -- and libfuse's try_get_path2 write-locks the
node for the old name, then finds the same node locked for the new name,
queues and waits for itself forever. The process stays blocked until the
mount goes away (then ECONNABORTED). Without concurrent remote writes a
self-rename returns at once. A fix has to keep such a request from
reaching libfuse's locking (e.g. a low-level rename handler that answers
old == new itself) or stop the dentry churn.

Each rename runs in a thread with a 10 s deadline; a hang is reported
(FAIL) and the cluster is torn down, which unblocks it. Exit 1 on a hang,
77 without /dev/fuse.
"""
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ml_lib  # noqa: E402
from ml_lib import MlCluster  # noqa: E402

SECONDS = float(os.environ.get("ML_RENAME_S", "6"))


def main():
    ml_lib.skip_without_fuse()
    kvfs = ml_lib.find_kvfs(sys.argv)
    scratch = tempfile.mkdtemp(prefix="kvfs-ml-rn-")
    hung = None
    done = {"renames": 0, "self": 0}
    with MlCluster(kvfs, scratch, n=3) as c:
        c.start_all()
        n0 = c.nodes[0]
        keys = [f"sh/k{j}" for j in range(4)]
        for k in keys:
            n0.write_file(k, "init")
        c.wait_converged({k: "init" for k in keys})
        stop = time.time() + SECONDS
        last = {}

        def renamer():
            r = random.Random(1)
            while time.time() < stop:
                a, b = r.choice(keys), r.choice(keys)
                last["op"] = (a, b)
                try:
                    os.rename(n0.path(a), n0.path(b))
                except FileNotFoundError:
                    pass
                done["renames"] += 1
                done["self"] += a == b

        def writer():
            cl = c.ctl(1)
            r = random.Random(2)
            i = 0
            while time.time() < stop:
                i += 1
                try:
                    if r.random() < 0.3:
                        cl.delete(r.choice(keys))
                    else:
                        cl.put(r.choice(keys), f"v{i}")
                except ml_lib.CtlError:
                    pass
            cl.close()

        tr = threading.Thread(target=renamer, daemon=True)
        tw = threading.Thread(target=writer, daemon=True)
        tr.start()
        tw.start()
        tr.join(SECONDS + 10)
        if tr.is_alive():
            hung = last.get("op")
            print(f"FAIL: rename {hung[0]} -> {hung[1]} on node 0 has not returned after 10 s "
                  f"({done['renames']} renames done, {done['self']} of them onto the same name)")
        tw.join(5)
    shutil.rmtree(scratch, ignore_errors=True)
    if hung:
        return 1
    print(f"OK: {done['renames']} renames ({done['self']} onto the same name) under remote writes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
