"""Child processes that never outlive the process that started them, and never die of its Ctrl-C.

`spawn(argv)` starts `argv` (1) in a session of its own, so the SIGINT a terminal sends to its
foreground process group on Ctrl-C (and a SIGTERM sent to that group) reaches only the parent,
which then stops its children itself, after its trials in flight are done; and (2) under this
module as a launcher: it asks the kernel for SIGKILL when the parent dies (Linux
`prctl(PR_SET_PDEATHSIG)`, kept across the `exec` of `argv`), so a parent killed by SIGKILL or a
crash leaves no child holding a port or a CPU. Nothing of a dead parent's child is worth saving.

Contract: call `spawn` from the thread that stays alive as long as the child should (the
kernel signals the child when the *thread* that forked it exits; the harness's main thread).
On platforms without prctl the launcher only execs `argv` (children then rely on EOF of their
pipes, or on being stopped by the parent).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def spawn(argv: list[str], **popen_kwargs: Any) -> "subprocess.Popen[bytes]":
    """`subprocess.Popen(argv, **popen_kwargs)` in its own session, killed if this process dies."""
    launcher = [sys.executable, "-m", "mock_orders_api.lifeline", str(os.getpid()), *argv]
    return subprocess.Popen(launcher, start_new_session=True, **popen_kwargs)


def die_with_parent(parent_pid: int) -> None:
    """From now on this process is killed when `parent_pid` (its parent) dies; exits if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _main(args: list[str]) -> None:
    die_with_parent(int(args[0]))
    os.execv(args[1], args[1:]) if os.path.isabs(args[1]) else os.execvp(args[1], args[1:])


if __name__ == "__main__":
    _main(sys.argv[1:])
