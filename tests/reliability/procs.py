"""Processes of the reliability tests: the C writers (mcw; mcfw, batches on
G/frames/; mclw, line messages) and readers (mcr; mcfr, frames),
started and waited for with bounds, and signalled with a precise measure of
how long they took to exit (a pidfd polled with the signal's time as origin).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

from helpers import read_line, syscall_numbers, syscall_of, task_state

READ_WRITE = syscall_numbers(["read", "write"])
READ = syscall_numbers(["read"])
WRITE = syscall_numbers(["write"])


class Worker:
    """One mcw or mcr process. `first` is the line it must print once its file
    is open ("ready" for mcw, "opened" for mcr)."""

    def __init__(self, cmd: list[str], first: str, role: str, log: str, **info):
        self.cmd = cmd
        self.role = role
        self.log = log
        self.info = info
        self.signalled: int | None = None
        self.signal_ns: int | None = None   # CLOCK_MONOTONIC when signalled
        self.exit_ns: int | None = None     # ... when seen gone
        self.exit_s: float | None = None
        self.state_at_signal: str | None = None
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pidfd = os.pidfd_open(self.proc.pid)
        line = read_line(self.proc.stdout, 15.0).strip()
        if line != first:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"{role} {cmd}: expected {first!r}, got {line!r}; stderr "
                                 f"{self.proc.stderr.read().decode(errors='replace')!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def blocked_in(self, numbers=READ_WRITE) -> bool:
        """True when the process sleeps in read(2)/write(2) right now."""
        info = syscall_of(self.pid)
        return bool(info and info[0] in numbers and task_state(self.pid) in ("S", "D"))

    def signal_and_time(self, sig: int, limit: float = 5.0) -> float | None:
        """Send sig; the seconds until the process had exited (None: still
        alive after `limit`). The process is reaped."""
        self.signalled = sig
        t0 = time.monotonic()
        self.signal_ns = time.monotonic_ns()
        os.kill(self.pid, sig)
        p = select.poll()
        p.register(self.pidfd, select.POLLIN)
        ready = p.poll(limit * 1000)
        elapsed = time.monotonic() - t0
        if not ready:
            return None
        self.exit_ns = time.monotonic_ns()
        self.exit_s = elapsed
        self.proc.wait(5)
        self.close()
        return elapsed

    def wait(self, timeout: float) -> int | None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.close()
        return code

    def stderr(self) -> str:
        try:
            return self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
        except (OSError, ValueError):
            return ""

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.close()

    def close(self):
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass


def writer(rbin, path: str, wid: int, log: str, *, wspan: int, count: int = 0, deadline_ms: int = 0,
           seed: int = 1, maxmsg: int = 1044480, nonblock_pct: int = 0, large_pm: int = 3, medium_pct: int = 8,
           pause_us: int = 0, edges: bool = False, log_begin: bool = False, alarm_s: int = 600,
           as_user: int | None = None, binary: str | None = None, **info) -> Worker:
    """mcw; as_user runs it as that uid and gid (as framed_writer does)."""
    cmd = [binary or rbin["mcw"], "-p", path, "-i", str(wid), "-l", log, "-W", str(wspan), "-n", str(count),
           "-T", str(deadline_ms), "-s", str(seed), "-m", str(maxmsg), "-b", str(nonblock_pct),
           "-L", str(large_pm), "-M", str(medium_pct), "-u", str(pause_us), "-A", str(alarm_s)]
    if edges:
        cmd.append("-x")
    if log_begin:
        cmd.append("-B")
    if as_user is not None:
        cmd = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", "--"] + cmd
    return Worker(cmd, "ready", "writer", log, wid=wid, path=path, **info)


def reader(rbin, path: str, log: str, *, bufsize: int | None = None, variable: bool = False, seed: int = 1,
           delay_us: int = 0, alarm_s: int = 600, text: bool = False, **info) -> Worker:
    cmd = [rbin["mcr"], "-p", path, "-l", log, "-s", str(seed), "-d", str(delay_us), "-A", str(alarm_s)]
    if text:
        cmd.append("-t")
    if bufsize is not None:
        cmd += ["-b", str(bufsize)]
    if variable:
        cmd.append("-v")
    return Worker(cmd, "opened", "reader", log, path=path, **info)


def framed_writer(rbin, path: str, wid: int, log: str, *, wspan: int, count: int = 0, deadline_ms: int = 0,
                  seed: int = 1, maxmsg: int = 1044480, nonblock_pct: int = 0, large_pm: int = 3,
                  medium_pct: int = 8, pause_us: int = 0, max_batch: int = 16, alarm_s: int = 600,
                  as_user: int | None = None, binary: str | None = None, **info) -> Worker:
    """mcfw, batches of 1 .. max_batch records; as_user runs it as that uid
    and gid (setpriv execs it, so its pid is the writer's)."""
    cmd = [binary or rbin["mcfw"], "-p", path, "-i", str(wid), "-l", log, "-W", str(wspan), "-n", str(count),
           "-T", str(deadline_ms), "-s", str(seed), "-m", str(maxmsg), "-b", str(nonblock_pct),
           "-L", str(large_pm), "-M", str(medium_pct), "-u", str(pause_us), "-k", str(max_batch),
           "-A", str(alarm_s)]
    if as_user is not None:
        cmd = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", "--"] + cmd
    return Worker(cmd, "ready", "writer", log, wid=wid, path=path, **info)


def line_writer(rbin, path: str, wid: int, log: str, *, count: int = 0, deadline_ms: int = 0, seed: int = 1,
                nonblock_pct: int = 0, pause_us: int = 0, fsync_pct: int = 0, close_flush: bool = False,
                alarm_s: int = 600, **info) -> Worker:
    cmd = [rbin["mclw"], "-p", path, "-i", str(wid), "-l", log, "-n", str(count), "-T", str(deadline_ms),
           "-s", str(seed), "-b", str(nonblock_pct), "-u", str(pause_us), "-f", str(fsync_pct), "-A", str(alarm_s)]
    if close_flush:
        cmd.append("-E")
    return Worker(cmd, "ready", "writer", log, wid=wid, path=path, **info)


def framed_reader(rbin, path: str, log: str, *, variable: bool = False, text: bool = False, seed: int = 1,
                  delay_us: int = 0, alarm_s: int = 600, **info) -> Worker:
    cmd = [rbin["mcfr"], "-p", path, "-l", log, "-s", str(seed), "-d", str(delay_us), "-A", str(alarm_s)]
    if variable:
        cmd.append("-v")
    if text:
        cmd.append("-t")
    return Worker(cmd, "opened", "reader", log, path=path, framed=True, **info)


def stop_all(workers, timeout: float = 10.0):
    """Kill whatever still runs (cleanup)."""
    for w in workers:
        if w.alive():
            try:
                w.proc.send_signal(signal.SIGKILL)
            except OSError:
                pass
    for w in workers:
        w.kill()
