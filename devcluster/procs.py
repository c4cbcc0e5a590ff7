"""Starting and stopping background processes by pid and process group, safely.

Every process is started in a new session, so it leads its own process group and stopping it
(``killpg``) also stops whatever it spawned. A stored pid is only trusted together with the
process start time read from ``/proc``: after a reboot or a long pause the pid may belong to an
unrelated process, which must never be signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any


def start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class Proc:
    """A started process: enough to find and stop it again from another Python process."""

    name: str
    pid: int
    started: int

    def alive(self) -> bool:
        # A zombie still has its start time; it is not running though.
        return start_time(self.pid) == self.started and not _is_zombie(self.pid)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proc:
        return cls(name=str(data["name"]), pid=int(data["pid"]), started=int(data["started"]))


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def spawn(
    name: str,
    argv: list[str],
    log: IO[bytes] | int,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    pass_fds: tuple[int, ...] = (),
) -> tuple[Proc, subprocess.Popen[bytes]]:
    """Start ``argv`` in its own session with stdout and stderr going to ``log``."""
    popen = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
        pass_fds=pass_fds,
    )
    started = start_time(popen.pid)
    assert started is not None, f"{name} vanished before it could be recorded"
    return Proc(name, popen.pid, started), popen


def signal_group(proc: Proc, sig: signal.Signals) -> None:
    """Signal the process group led by ``proc``, if that process is still the one we started."""
    if start_time(proc.pid) != proc.started:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop(proc: Proc, grace: float = 10.0) -> None:
    """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL what is left."""
    signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    # The group may outlive its leader (a child that ignored SIGTERM): KILL it either way,
    # but only while the leader's pid still names our process.
    signal_group(proc, signal.SIGKILL)
    _kill_orphaned_group(proc.pid)
    deadline = time.monotonic() + 2  # SIGKILL is not instant
    while not _reap(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _reap(pid: int) -> bool:
    """Collect the exit status if ``pid`` is our own child (the pytest fixture starts and stops
    the cluster from one process), so it does not linger as a zombie. True when there is nothing
    (more) to wait for. A Go program's main thread shows as a zombie before its other threads
    are gone, and cannot be reaped until then: hence callers retry."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return reaped != 0


def _kill_orphaned_group(pgid: int) -> None:
    """SIGKILL members of ``pgid`` left after its leader exited (the leader check no longer holds).

    Process group ids are not reused while any member is alive, so members found here are ours.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pgid:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
