"""The bench process itself: SIGTERM handled like Ctrl-C, and runs whose process is gone.

* :func:`sigterm_as_interrupt` turns SIGTERM (a timeout, Slurm's time limit, ``docker
  stop``) into :class:`Terminated`, a ``KeyboardInterrupt``: every path that closes a run
  on Ctrl-C (KILLED, the remaining cells not started) closes it on SIGTERM too, and the
  ``bench`` command exits with 143 (128 + 15).
* SIGKILL (the OOM killer, ``kill -9``, a lost node) cannot be caught: the run stays
  RUNNING. Every run records where its process lives (:func:`process_tags`: host, pid,
  the pid's start time, the kernel boot and pid namespace), and :func:`lost_run_reason`
  tells, for a RUNNING run, whether that process is *provably* gone: same host, same boot,
  same pid namespace, and the pid no longer alive or now another process (a different
  start time). Runs elsewhere, or without these tags, are never judged.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

TAG_HOST = "bench.host"
TAG_PID = "bench.pid"
TAG_PID_START = "bench.pid_start"
TAG_PID_SCOPE = "bench.pid_scope"

EXIT_TERMINATED = 128 + int(signal.SIGTERM)  # 143, what a shell reports for a process killed by SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, handled like Ctrl-C (runs end KILLED)."""

    def __init__(self, signum: int = int(signal.SIGTERM)) -> None:
        super().__init__(signum)
        self.signum = int(signum)

    def __str__(self) -> str:
        return f"terminated by {signal.Signals(self.signum).name}"


@dataclass
class TerminationState:
    """What :func:`sigterm_as_interrupt` saw: the signal number once one arrived."""

    signum: int | None = None

    @property
    def terminated(self) -> bool:
        return self.signum is not None


@contextmanager
def sigterm_as_interrupt(signums: tuple[int, ...] = (int(signal.SIGTERM),)) -> Iterator[TerminationState]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread; the previous
    handlers are restored on exit. A second SIGTERM while the first one is being handled is
    ignored, so closing the runs is not cut short (SIGKILL still stops the process).

    Outside the main thread (signal handlers cannot be installed there) it does nothing.
    """
    state = TerminationState()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if state.signum is not None:
            return
        state.signum = signum
        raise Terminated(signum)

    previous = {s: signal.getsignal(s) for s in signums}
    for s in signums:
        signal.signal(s, handler)
    try:
        yield state
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)


# ----------------------------------------------------------------------------- process identity


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def pid_start_time(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks after boot (``/proc/<pid>/stat`` field 22), if known."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def pid_scope() -> str:
    """Where a pid means one process: the kernel boot and this process's pid namespace ("" if unknown)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return f"{boot}/{namespace}" if boot and namespace else ""


def process_tags() -> dict[str, str]:
    """Run tags naming this process: host, pid, the pid's start time and scope (where known)."""
    pid = os.getpid()
    tags = {TAG_HOST: socket.gethostname(), TAG_PID: str(pid)}
    start = pid_start_time(pid)
    if start:
        tags[TAG_PID_START] = start
    scope = pid_scope()
    if scope:
        tags[TAG_PID_SCOPE] = scope
    return tags


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return True  # cannot tell: count it as alive
    stat = _read(f"/proc/{pid}/stat")
    if stat:
        fields = stat.rsplit(")", 1)[-1].split()
        if fields and fields[0] in ("Z", "X"):
            return False
    return True


def lost_run_reason(tags: Mapping[str, str], here: Mapping[str, str] | None = None) -> str | None:
    """``"process lost (host H, pid P)"`` when the process a RUNNING run records is provably gone.

    Judged only for runs of this host, boot and pid namespace (``here``: :func:`process_tags`
    of the caller); anything else, or a run without these tags, gives None.
    """
    here = process_tags() if here is None else here
    host, raw_pid = tags.get(TAG_HOST), tags.get(TAG_PID)
    if not host or not raw_pid or host != here.get(TAG_HOST):
        return None
    if tags.get(TAG_PID_SCOPE, "") != here.get(TAG_PID_SCOPE, ""):
        return None  # another boot or container: this pid says nothing
    try:
        pid = int(raw_pid)
    except ValueError:
        return None
    reason = f"process lost (host {host}, pid {pid})"
    if pid <= 0 or not pid_alive(pid):
        return reason
    recorded = tags.get(TAG_PID_START)
    current = pid_start_time(pid)
    if recorded and current and recorded != current:
        return reason + ": the pid now belongs to another process"
    return None


__all__ = [
    "EXIT_TERMINATED",
    "TAG_HOST",
    "TAG_PID",
    "TAG_PID_SCOPE",
    "TAG_PID_START",
    "Terminated",
    "TerminationState",
    "lost_run_reason",
    "pid_alive",
    "pid_scope",
    "pid_start_time",
    "process_tags",
    "sigterm_as_interrupt",
]
