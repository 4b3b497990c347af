"""harness.py — process-wide set-up shared by the integration harnesses
(raft_lib, ml_lib and fs_mount call setup() when imported).

Mounts must not outlive a test, however it ends. meson stops a test that
overran its timeout with SIGTERM to its process group and SIGKILL half a
second later; no clean-up code is sure to run in that half second (the
main thread may be inside a system call on a dying node's mount). So:

- as root, the test re-executes itself in a mount namespace of its own
  (`unshare -m --propagation private`): every mount it makes (FUSE, tmpfs)
  lives there and vanishes with the last process in it, even after a
  SIGKILL; the host's mount table never sees them. KVFS_TEST_NO_UNSHARE=1
  turns this off (to look at a test's mounts from outside while it runs);
- SIGTERM unwinds the stack like an exception (SystemExit), so the `with`
  and `finally` blocks stop the nodes and unmount when there is time.
"""
import os
import shutil
import signal
import subprocess
import sys


def _exit(signum, _frame):
    print(f"stopped by signal {signum}: cleaning up", file=sys.stderr, flush=True)
    sys.exit(128 + signum)


def exit_on_sigterm():
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit)


def private_mounts():
    """Re-executes this script in a private mount namespace (see above),
    once; does nothing when not root, when asked not to, or when the
    namespace cannot be made."""
    if os.geteuid() != 0 or os.environ.get("KVFS_TEST_NO_UNSHARE") or \
            os.environ.get("KVFS_TEST_UNSHARED"):
        return
    unshare = shutil.which("unshare")
    argv = sys.argv
    if not unshare or not argv or not argv[0] or not os.path.exists(argv[0]):
        return  # not a script run from a file (python -c, stdin)
    if subprocess.run([unshare, "-m", "--propagation", "private", "true"],
                      capture_output=True).returncode != 0:
        return
    os.environ["KVFS_TEST_UNSHARED"] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(unshare, [unshare, "-m", "--propagation", "private", sys.executable,
                       os.path.abspath(argv[0])] + argv[1:])


def setup():
    private_mounts()
    exit_on_sigterm()
