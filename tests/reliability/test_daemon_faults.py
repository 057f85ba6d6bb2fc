"""Parts 2b and 2c: the daemon goes away under blocked clients.

2b. The daemon is killed with SIGKILL while clients (threads of the mcblock
    helper) are blocked in read(2) on members and in write(2) on members and
    on G/send, held back by one full member. Every blocked call must fail at
    once with ENOTCONN or ECONNABORTED; new opens, stat and readdir fail with
    ENOTCONN; `fusermount3 -u` (plain, then `-z` only if plain fails) removes
    the dead mount; and a new daemon on the same mount point works.

    Clients in full flow at that moment (two writers, two readers, in another
    group) end within a second with ENOTCONN or ECONNABORTED too, or EIO: the
    kernel's answer to a request it was copying into the daemon as it died.

2c. The daemon gets SIGTERM (unmount) with a thousand blocked clients,
    readers and writers: all are released (an error) within a second, the
    daemon exits 0 and the mount is gone; clients in full flow end with
    ENOTCONN or ECONNABORTED. (The long run alternates SIGTERM and SIGINT
    between rounds.)

Release times are measured from the signal to the moment the last blocked
call returned (CLOCK_MONOTONIC on both sides).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections import Counter

import pytest

import procs
from helpers import Call, Group, blocked_tasks, wait_for

LIMIT_S = 1.0
RELEASE_ERRNOS = {errno.ENOTCONN, errno.ECONNABORTED}
# A client in full flow may also get EIO: when the daemon dies while the kernel is copying that client's
# request into the daemon's buffer (a fault aborted by the fatal signal), fs/fuse/dev.c fuse_dev_do_read
# ends the request with -EIO while the connection is still up. Kernel behaviour, not the daemon's.
STREAM_ERRNOS = RELEASE_ERRNOS | {errno.EIO}


class Blockers:
    """mcblock: readers on r0.., writers on w0.., writers on G/send, every
    call blocked (one full member `x` holds every write back)."""

    def __init__(self, mcblock: str, g: Group, readers: int, member_writers: int, send_writers: int):
        self.g = g
        self.n_read = readers
        self.n_write = member_writers + send_writers
        g.member("x", capacity=1)
        g.send(b"fills x")  # x alone: nobody else gets it, so the readers will block
        for i in range(readers):
            os.close(os.open(g.p(f"r{i}"), os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o644))
        for i in range(member_writers):
            os.close(os.open(g.p(f"w{i}"), os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o644))
        specs = []
        if readers:
            specs.append(f"r:{g.p('r')}:{readers}")
        if member_writers:
            specs.append(f"w:{g.p('w')}:{member_writers}")
        if send_writers:
            specs.append(f"W:{g.p('send')}:{send_writers}")
        self.proc = subprocess.Popen([mcblock, "-A", "300", *specs], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.total = readers + self.n_write
        first = Call(self.proc.stdout.readline).result(120).strip()
        assert first == f"ready {self.total}", f"mcblock: {first!r} {self.proc.stderr.read() if first == '' else ''}"

    def wait_all_blocked(self):
        wait_for(lambda: self.g.status().group["blocked_writers"] == self.n_write, timeout=120, interval=0.1,
                 what=f"{self.n_write} writers blocked")
        wait_for(lambda: blocked_tasks(self.proc.pid, "read") >= self.n_read, timeout=120, interval=0.1,
                 what=f"{self.n_read} readers blocked in read")

    def results(self, timeout: float = 30.0) -> list[tuple[str, int, int, int]]:
        """[(op, ret, errno, t_ns)] of every call, once all have returned."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"blocked clients still blocked {timeout} s after the daemon went away") from None
        calls = []
        for line in out.splitlines():
            p = line.split()
            if p and p[0] == "call":
                calls.append((p[2], int(p[3]), int(p[4]), int(p[5])))
        assert len(calls) == self.total, f"mcblock reported {len(calls)} of {self.total} calls: {out[-500:]} {err}"
        return calls

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                pass


class Streaming:
    """Two readers (one reading in parts) and two writers in full flow, in their own group."""

    def __init__(self, rbin, m, name: str, logs):
        self.flow = m.group(name)
        self.workers: list[procs.Worker] = []
        for k in range(2):
            self.flow.member(f"s{k}")
            self.workers.append(procs.reader(rbin, self.flow.p(f"s{k}"), str(logs / f"{name}-r{k}.log"),
                                             variable=bool(k)))
        for k in range(2):
            self.workers.append(procs.writer(rbin, self.flow.p("send"), k, str(logs / f"{name}-w{k}.log"), wspan=64,
                                             count=0, deadline_ms=120000, pause_us=100 * k, large_pm=0))

    def wait_flowing(self):
        wait_for(lambda: self.flow.status().group["sent"] > 200, what="traffic in the flowing group")

    def ended(self, allowed: set, limit: float) -> tuple[list[str], list[str]]:
        """(errno names the clients ended with, problems): each must have stopped within `limit` s with one
        of `allowed` (mcw logs "END attempts=N fatal=E", mcr "ERR E")."""
        names, problems = [], []
        for w in self.workers:
            left = w.wait(limit)
            if left is None:
                problems.append(f"a streaming {w.role} still runs {limit} s after the daemon went away")
                continue
            lines = open(w.log).read().splitlines()
            last = lines[-1].split() if lines else []
            code = None
            if last and last[0] == "ERR":
                code = int(last[1])
            elif last and last[0] == "END" and last[-1].startswith("fatal="):
                code = int(last[-1].split("=")[1])
            names.append(errno.errorcode.get(code, str(code)))
            if code not in allowed:
                problems.append(f"a streaming {w.role} ended with {' '.join(last)!r} (exit {left})")
        return names, problems

    def close(self):
        procs.stop_all(self.workers)


def judge(calls, t_signal_ns: int) -> dict:
    release = max(t for *_, t in calls) - t_signal_ns
    return dict(
        release_ms=round(release / 1e6, 1),
        first_release_ms=round((min(t for *_, t in calls) - t_signal_ns) / 1e6, 1),
        errnos=dict(Counter(errno.errorcode.get(e, str(e)) if r < 0 else f"ret={r}" for _, r, e, _ in calls)),
        wrong=[(op, r, errno.errorcode.get(e, e)) for op, r, e, _ in calls if r >= 0 or e not in RELEASE_ERRNOS][:5],
    )


@pytest.mark.timeout(600)
def test_daemon_killed_releases_blocked_clients_and_remounts(mount_factory, rbin, scale, record, tmp_path):
    rounds = []
    problems = []
    stream_errs = []
    for rnd in range(scale.daemon_kill_rounds):
        m = mount_factory()
        g = m.group(f"killed-{rnd}")
        n = scale.daemon_kill_blocked
        blockers = Blockers(rbin["mcblock"], g, readers=n // 2, member_writers=n // 4, send_writers=n - n // 2 - n // 4)
        # and clients in full flow, in another group: writers and readers that are not blocked
        streaming = None
        try:
            streaming = Streaming(rbin, m, f"flowing-{rnd}", tmp_path)
            blockers.wait_all_blocked()
            streaming.wait_flowing()
            t_kill = time.monotonic_ns()
            os.kill(m.pid, signal.SIGKILL)
            calls = blockers.results()
            m.proc.wait(10)
            names, p = streaming.ended(STREAM_ERRNOS, LIMIT_S + 0.5)
            stream_errs += names
            problems += [f"round {rnd}: {x}" for x in p]
        finally:
            blockers.close()
            if streaming:
                streaming.close()
        r = judge(calls, t_kill)
        if r["release_ms"] > LIMIT_S * 1000:
            problems.append(f"round {rnd}: the last blocked client was released {r['release_ms']} ms after SIGKILL")
        if r["wrong"]:
            problems.append(f"round {rnd}: blocked calls ended with {r['errnos']} (expected ENOTCONN/ECONNABORTED)")

        # the dead mount: new opens, stat and readdir fail with ENOTCONN
        dead = {}
        for what, fn in [
            ("open member", lambda: os.open(g.p("r0"), os.O_RDONLY)),
            ("create member", lambda: os.open(g.p("new"), os.O_CREAT | os.O_RDONLY, 0o644)),
            ("open send", lambda: os.open(g.p("send"), os.O_WRONLY)),
            ("stat root", lambda: os.stat(m.path)),
            ("readdir root", lambda: os.listdir(m.path)),
        ]:
            try:
                res = Call(fn).result(5)
                dead[what] = "succeeded"
                if isinstance(res, int):
                    os.close(res)
            except OSError as e:
                dead[what] = errno.errorcode.get(e.errno, str(e.errno))
        # stat may still succeed from the kernel's attribute cache (nothing is asked of the daemon): not judged
        bad = {k: v for k, v in dead.items() if v != "ENOTCONN" and k != "stat root"}
        if bad:
            problems.append(f"round {rnd}: on the dead mount {bad} (expected ENOTCONN)")

        # fusermount3 -u cleans it (plain first; -z only if that fails)
        plain = subprocess.run(["fusermount3", "-u", m.path], capture_output=True, text=True, timeout=10)
        lazy = None
        if plain.returncode != 0:
            lazy = subprocess.run(["fusermount3", "-u", "-z", m.path], capture_output=True, text=True, timeout=10)
            problems.append(f"round {rnd}: plain fusermount3 -u failed ({plain.stderr.strip()}); "
                            f"-z: {lazy.returncode} {lazy.stderr.strip()}")
        if m.mounted():
            problems.append(f"round {rnd}: still mounted after fusermount3 -u")
            m.force_unmount()

        # a new daemon on the same mount point works
        m.start()
        g2 = m.group("again")
        g2.member("a")
        g2.send(b"alive again")
        again = g2.take("a")
        if again != [b"alive again"]:
            problems.append(f"round {rnd}: the new mount received {again!r}")
        rounds.append(dict(blocked=len(calls), **{k: v for k, v in r.items() if k != "wrong"},
                           plain_unmount_ok=plain.returncode == 0, needed_lazy=lazy is not None,
                           dead_mount=dead))
    record(rounds=len(rounds), blocked_per_round=scale.daemon_kill_blocked,
           max_release_ms=max(r["release_ms"] for r in rounds),
           errnos=dict(sum((Counter(r["errnos"]) for r in rounds), Counter())),
           plain_unmount_ok=all(r["plain_unmount_ok"] for r in rounds),
           streaming_clients_ended_with=dict(Counter(stream_errs)),
           per_round=rounds, problems=len(problems))
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(600)
def test_unmount_with_a_thousand_blocked_clients(mount_factory, rbin, scale, record, tmp_path):
    rounds = []
    problems = []
    stream_errs = []
    for rnd in range(scale.unmount_rounds):
        m = mount_factory()
        g = m.group(f"unmount-{rnd}")
        n = scale.unmount_blocked
        readers, member_writers = n // 2, (3 * n) // 10
        t_setup = time.monotonic()
        blockers = Blockers(rbin["mcblock"], g, readers=readers, member_writers=member_writers,
                            send_writers=n - readers - member_writers)
        streaming = None
        try:
            streaming = Streaming(rbin, m, f"flowing-{rnd}", tmp_path)
            blockers.wait_all_blocked()
            streaming.wait_flowing()
            setup_s = time.monotonic() - t_setup
            sig = (signal.SIGTERM, signal.SIGINT)[rnd % 2]
            t_term = time.monotonic_ns()
            os.kill(m.pid, sig)
            try:
                code = m.proc.wait(10)
            except subprocess.TimeoutExpired:
                code = None
            daemon_exit_ms = (time.monotonic_ns() - t_term) / 1e6
            calls = blockers.results()
            names, p = streaming.ended(RELEASE_ERRNOS, LIMIT_S + 0.5)
            stream_errs += names
            problems += [f"round {rnd}: {x}" for x in p]
        finally:
            blockers.close()
            if streaming:
                streaming.close()
        r = judge(calls, t_term)
        if code != 0:
            problems.append(f"round {rnd}: the daemon exited with {code} after {sig.name} (expected 0)")
        if r["release_ms"] > LIMIT_S * 1000:
            problems.append(f"round {rnd}: the last of {n} blocked clients was released {r['release_ms']} ms "
                            f"after {sig.name}")
        if r["wrong"]:
            problems.append(f"round {rnd}: blocked calls ended with {r['errnos']} (expected errors)")
        if m.mounted():
            problems.append(f"round {rnd}: still mounted after the daemon exited")
        rounds.append(dict(signal=sig.name, blocked=len(calls), readers=readers, writers=n - readers, exit_code=code,
                           daemon_exit_ms=round(daemon_exit_ms, 1), setup_s=round(setup_s, 1),
                           **{k: v for k, v in r.items() if k != "wrong"}))
    record(rounds=len(rounds), blocked_per_round=scale.unmount_blocked,
           max_release_ms=max(r["release_ms"] for r in rounds),
           max_daemon_exit_ms=max(r["daemon_exit_ms"] for r in rounds),
           streaming_clients_ended_with=dict(Counter(stream_errs)), per_round=rounds, problems=len(problems))
    assert not problems, "\n".join(problems)
