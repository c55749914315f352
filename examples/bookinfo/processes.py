"""Child processes that can be stopped without leaving anything behind.

Each child is the leader of its own process group (a new session), so:

- Ctrl-C in the terminal reaches only the demo, which then stops the children in order
  (services first, then the shim, so the shim stores what the services flushed);
- stopping signals the whole group, which also reaches anything the child started itself
  (gunicorn workers, the shim's ``--workers``);
- on Linux each child also gets SIGTERM if the demo dies without cleaning up (a SIGKILL),
  through ``PR_SET_PDEATHSIG``, which survives the ``exec`` of ``opentracing-sls run``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from typing import IO, List, Mapping, Optional, Sequence

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - best effort: without it, stop() still cleans up
        pass


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ManagedProcess:
    """One child in its own process group, its output in ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str],
                 log_path: str, cwd: Optional[str] = None) -> None:
        self.name = name
        self.argv: List[str] = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.popen: Optional[subprocess.Popen] = None
        self._log: Optional[IO[bytes]] = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

    @property
    def pid(self) -> int:
        assert self.popen is not None, "not started"
        return self.popen.pid

    @property
    def pgid(self) -> int:
        # The leader of a new session: its process group id is its pid, even after it exits.
        return self.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> Optional[int]:
        return None if self.popen is None else self.popen.poll()

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM to the group, SIGKILL after ``timeout``; returns the leader's exit status
        (negative: killed by that signal). Idempotent."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(5)
        # The leader is gone; a child it left behind in the group goes too.
        deadline = time.monotonic() + timeout
        while group_alive(self.pgid) and time.monotonic() < deadline:
            self._signal_group(signal.SIGTERM)
            time.sleep(0.05)
        if group_alive(self.pgid):
            self._signal_group(signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.popen.returncode

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                data = handle.read()
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
