"""harness.py — process-wide set-up shared by the integration harnesses.

meson stops a test that overran its timeout with SIGTERM. Python's default
for SIGTERM is to die on the spot, which skips every `with` and `finally`
block: nodes keep running, mounts and tmpfs mounts stay behind. The
harness libraries (raft_lib, ml_lib, fs_mount) call exit_on_sigterm() when
imported, so that a SIGTERM unwinds the stack like an exception and the
clean-up code runs.
"""
import signal
import sys


def _exit(signum, _frame):
    print(f"stopped by signal {signum}: cleaning up", file=sys.stderr, flush=True)
    sys.exit(128 + signum)


def exit_on_sigterm():
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit)
