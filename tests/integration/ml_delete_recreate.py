#!/usr/bin/env python3
"""ml_delete_recreate.py — a key deleted behind the kernel's back (by
replication from another node, or over this node's control socket) must be
gone for the mount at once: `stat f` says ENOENT and `echo new > f` creates
it again.

A regression test. Found by ml_cluster.py's chaos scenario and fixed in
526736b (fs: open of a key deleted under a cached dentry answers ESTALE, so
the kernel looks the name up again). What happened before the fix: the kernel keeps the positive dentry for the deleted file until
entry_timeout (1 s) runs out. fuse_invalidate_path() (fs/main.c, inval_main)
only invalidates the inode (attributes and pages), not the directory entry,
and the control socket path does not invalidate at all (fs/fsops.c kv_init
comment). Within that second open(O_CREAT|O_TRUNC) is sent to kvfs as a
plain OPEN (the kernel drops O_CREAT for a still-valid positive dentry),
which kvfs answers ENOENT: `echo x > f` fails ("No such file or directory";
dash says "Directory nonexistent") although the directory exists. Measured:
about 0.93 s of failed creates after a replicated delete. The keys here sit
at the top level so the parent directory surely exists.

Cases (each prints PASS/FAIL; exit 1 if any fails):
  replicated   rm on node 0, converged (node 1's socket says not_found),
               then `echo new > f` on node 1's mount
  socket       file created through node 0's mount, deleted over node 0's
               control socket, then `echo new > f` on node 0's mount
Exit 77 when /dev/fuse is missing.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ml_lib  # noqa: E402
from ml_lib import MlCluster  # noqa: E402


def sh_write(path, value):
    r = subprocess.run(["sh", "-c", 'echo "$1" > "$2"', "sh", value, path],
                       capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def main():
    ml_lib.skip_without_fuse()
    kvfs = ml_lib.find_kvfs(sys.argv)
    scratch = tempfile.mkdtemp(prefix="kvfs-ml-dr-")
    failed = []
    with MlCluster(kvfs, scratch, n=3) as c:
        try:
            c.start_all()
            n0, n1 = c.nodes[0], c.nodes[1]

            # replicated delete
            n0.write_file("rr.txt", "v1")
            c.wait_converged({"rr.txt": "v1"})        # node 1 has read it: cached dentry
            os.unlink(n0.path("rr.txt"))
            cl = n1.ctl()
            t0 = time.time()
            while cl.get("rr.txt") is not None:
                assert time.time() - t0 < 10, "delete never replicated"
                time.sleep(0.01)
            cl.close()
            exists = os.path.exists(n1.path("rr.txt"))
            rc, err = sh_write(n1.path("rr.txt"), "v2")
            if exists or rc != 0:
                failed.append("replicated")
                print(f"FAIL replicated: after the delete reached node 1 (socket: not_found), "
                      f"its mount says exists={exists}; `echo v2 > f` rc={rc} {err!r}")
            else:
                print("PASS replicated")

            # local control-socket delete
            n0.write_file("ss.txt", "v1")
            assert n0.read_file("ss.txt") == "v1"
            cl = n0.ctl()
            cl.delete("ss.txt")
            cl.close()
            exists = os.path.exists(n0.path("ss.txt"))
            rc, err = sh_write(n0.path("ss.txt"), "v2")
            if exists or rc != 0:
                failed.append("socket")
                print(f"FAIL socket: after a control-socket delete the mount says exists={exists}; "
                      f"`echo v2 > f` rc={rc} {err!r}")
            else:
                print("PASS socket")
        finally:
            pass
    shutil.rmtree(scratch, ignore_errors=True)
    print("OK" if not failed else f"FAILED: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
