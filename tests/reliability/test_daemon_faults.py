"""Parts 2b and 2c: the daemon goes away under blocked clients.

Blocked clients of every kind (MIX below; threads of the mcblock helper,
each in one call): readers of members, of framed members (G/frames/NAME) and
of peers (G/peers/NAME) on empty queues; record writers on members and on
G/send, batch writers on G/frames/NAME and G/frames/send, and line writers
(a message=line group; each with a partial line waiting in its file) on
members and G/send, all held back by one full member; private writers on
G/peers/x (x full: they wait in x's own line, and blocked_writers does not
count them), record and batch writers on a member whose full peer queue
holds its writes back. Each blocked call is seen waiting first (the groups'
blocked_writers, the threads' syscalls in /proc). In the line group, a few
files were closed with a line begun: their tails wait for room as writes
that answer nobody.

2b. The daemon is killed with SIGKILL. Every blocked call must fail at once
    (within 1 s) with ENOTCONN or ECONNABORTED; new opens, stat and readdir
    fail with ENOTCONN; `fusermount3 -u` (plain, then `-z` only if plain
    fails) removes the dead mount; and a new daemon on the same mount point
    works.

    Clients in full flow at that moment (record, framed, peer and line
    readers and writers, the C helpers of the stress run, in groups of their
    own) end within a second with ENOTCONN or ECONNABORTED too, or EIO: the
    kernel's answer to a request it was copying into the daemon as it died.

2c. The daemon gets SIGTERM (unmount) with a thousand blocked clients of
    every kind: all are released (an error, ENOTCONN) within a second, the
    daemon exits 0 (the orphan tails waiting do not hold it) and the mount is
    gone; clients in full flow end with ENOTCONN or ECONNABORTED. (The long
    run alternates SIGTERM and SIGINT between rounds.)

Release times are measured from the signal to the moment the last blocked
call returned (CLOCK_MONOTONIC on both sides), for every kind.
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
from helpers import Call, blocked_tasks, wait_for

LIMIT_S = 1.0
RELEASE_ERRNOS = {errno.ENOTCONN, errno.ECONNABORTED}
# A client in full flow may also get EIO: when the daemon dies while the kernel is copying that client's
# request into the daemon's buffer (a fault aborted by the fatal signal), fs/fuse/dev.c fuse_dev_do_read
# ends the request with -EIO while the connection is still up. Kernel behaviour, not the daemon's.
STREAM_ERRNOS = RELEASE_ERRNOS | {errno.EIO}


# Every kind of blocked client, as the share of a round's clients it takes: (kind, mcblock KIND, share).
# Each waits for a different reason: a full member `x` holds every group write back (and, in the line
# group, every line write: each begins with a partial line that waits in its file), a full member also
# holds private writes to it back (in their own line), a full peer queue holds its member's writes back,
# and readers wait on empty queues: members, framed members, peers.
MIX = [
    ("record_readers", "r", 15), ("framed_readers", "f", 15), ("peer_readers", "r", 10),
    ("member_writers", "w", 8), ("send_writers", "W", 7), ("batch_member_writers", "b", 8),
    ("batch_send_writers", "B", 7), ("private_writers", "W", 5), ("peer_full_writers", "W", 5),
    ("peer_full_batch_writers", "B", 5), ("line_member_writers", "l", 5), ("line_send_writers", "L", 5),
    ("line_private_writers", "L", 5),
]
READERS = {"record_readers", "framed_readers", "peer_readers"}
UNCOUNTED = {"private_writers", "line_private_writers"}   # private writes are not in blocked_writers
ORPHAN_TAILS = 3   # lines closed unfinished: their tails wait for room, a write that answers nobody


def mix(n: int) -> dict[str, int]:
    counts = {k: n * share // 100 for k, _, share in MIX}
    counts["record_readers"] += n - sum(counts.values())
    return counts


class Blockers:
    """mcblock with clients of every kind (MIX), each call blocked, in three groups of one mount:
    `NAME-w` (records, frames, peers: a full member x), `NAME-p` (a member t with send_to_peer=1 whose
    peer queue is full), `NAME-l` (message=line, a full member x, and ORPHAN_TAILS closed files whose
    tails wait)."""

    def __init__(self, mcblock: str, m, name: str, n: int):
        self.counts = mix(n)
        c = self.counts
        self.groups = []
        w = m.group(f"{name}-w")
        w.member("x", capacity=1)
        w.send(b"fills x")  # x alone: nobody else gets it, so the readers will block
        members = {"r": c["record_readers"], "f": c["framed_readers"], "w": c["member_writers"],
                   "b": c["batch_member_writers"]}
        for prefix, k in members.items():
            for i in range(k):
                os.close(os.open(w.p(f"{prefix}{i}"), os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o644))
        assert c["peer_readers"] <= c["record_readers"]
        p = m.group(f"{name}-p")
        p.member("t", capacity=1, send_to_peer=1)
        p.member("y")
        p.send_as("t", b"fills t's peer queue")
        ln = m.group(f"{name}-l")
        ln.set(message="line")
        ln.member("x", capacity=1)
        ln.send(b"fills x\n")
        for i in range(c["line_member_writers"]):
            os.close(os.open(ln.p(f"l{i}"), os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o644))
        for i in range(ORPHAN_TAILS):
            fd = os.open(ln.p("send"), os.O_WRONLY)
            os.write(fd, b"an orphan tail %d" % i)
            os.close(fd)
        paths = {
            "record_readers": w.p("r"), "framed_readers": w.p("frames/f"), "peer_readers": w.p("peers/r"),
            "member_writers": w.p("w"), "send_writers": w.p("send"), "batch_member_writers": w.p("frames/b"),
            "batch_send_writers": w.p("frames/send"), "private_writers": w.p("peers/x"),
            "peer_full_writers": p.p("t"), "peer_full_batch_writers": p.p("frames/t"),
            "line_member_writers": ln.p("l"), "line_send_writers": ln.p("send"),
            "line_private_writers": ln.p("peers/x"),
        }
        self.kind_of: list[str] = []   # by call index
        specs = []
        for kind, letter, _ in MIX:
            if c[kind]:
                specs.append(f"{letter}:{paths[kind]}:{c[kind]}")
                self.kind_of += [kind] * c[kind]
        self.expected_blocked = {
            w.path: sum(c[k] for k in ("member_writers", "send_writers", "batch_member_writers",
                                       "batch_send_writers")),
            p.path: c["peer_full_writers"] + c["peer_full_batch_writers"],
            ln.path: c["line_member_writers"] + c["line_send_writers"] + ORPHAN_TAILS,
        }
        self.group_objs = {w.path: w, p.path: p, ln.path: ln}
        self.n_read = sum(c[k] for k in READERS)
        self.n_write = n - self.n_read
        self.total = n
        self.proc = subprocess.Popen([mcblock, "-A", "300", *specs], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = Call(self.proc.stdout.readline).result(120).strip()
        assert first == f"ready {self.total}", f"mcblock: {first!r} {self.proc.stderr.read() if first == '' else ''}"

    def blocked_writers(self) -> dict[str, int]:
        return {path: g.status().group["blocked_writers"] for path, g in self.group_objs.items()}

    def wait_all_blocked(self):
        wait_for(lambda: self.blocked_writers() == self.expected_blocked, timeout=120, interval=0.1,
                 what=f"blocked_writers {self.expected_blocked}")
        wait_for(lambda: blocked_tasks(self.proc.pid, "write") >= self.n_write, timeout=120, interval=0.1,
                 what=f"{self.n_write} writers (private ones included) blocked in write")
        wait_for(lambda: blocked_tasks(self.proc.pid, "read") >= self.n_read, timeout=120, interval=0.1,
                 what=f"{self.n_read} readers blocked in read")

    def results(self, timeout: float = 30.0) -> list[tuple[str, int, int, int]]:
        """[(kind, ret, errno, t_ns)] of every call, once all have returned."""
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
                calls.append((self.kind_of[int(p[1])], int(p[3]), int(p[4]), int(p[5])))
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
    """Clients in full flow, in groups of their own: two record readers (one reading in parts) and two
    record writers; a framed reader and a batch writer; a member with send_to_peer=1 written by a record
    writer and its peer's reader; in a message=line group, a line writer and a line reader."""

    def __init__(self, rbin, m, name: str, logs):
        self.flow = m.group(name)
        f = self.flow
        self.workers: list[procs.Worker] = []
        for k in range(2):
            f.member(f"s{k}")
            self.workers.append(procs.reader(rbin, f.p(f"s{k}"), str(logs / f"{name}-r{k}.log"),
                                             variable=bool(k)))
        f.member("s2")
        self.workers.append(procs.framed_reader(rbin, f.p("frames/s2"), str(logs / f"{name}-fr.log"), variable=True))
        f.member("s3", send_to_peer=1, drop_when_full=1, capacity=1)
        self.workers.append(procs.reader(rbin, f.p("peers/s3"), str(logs / f"{name}-peer.log")))
        for k in range(2):
            self.workers.append(procs.writer(rbin, f.p("send"), k, str(logs / f"{name}-w{k}.log"), wspan=64,
                                             count=0, deadline_ms=120000, pause_us=100 * k, large_pm=0))
        self.workers.append(procs.framed_writer(rbin, f.p("frames/send"), 2, str(logs / f"{name}-fw.log"), wspan=64,
                                                deadline_ms=120000, pause_us=100, large_pm=0, max_batch=8))
        self.workers.append(procs.writer(rbin, f.p("s3"), 3, str(logs / f"{name}-w3.log"), wspan=64,
                                         deadline_ms=120000, pause_us=100, large_pm=0))
        self.lines = m.group(f"{name}-l")
        self.lines.set(message="line")
        self.lines.member("l0")
        self.workers.append(procs.reader(rbin, self.lines.p("l0"), str(logs / f"{name}-lr.log"), text=True))
        self.workers.append(procs.line_writer(rbin, self.lines.p("send"), 4, str(logs / f"{name}-lw.log"),
                                              deadline_ms=120000, pause_us=100))

    def wait_flowing(self):
        wait_for(lambda: self.flow.status().group["sent"] > 200 and self.lines.status().group["sent"] > 50,
                 what="traffic in the flowing groups")

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
    name = lambda r, e: errno.errorcode.get(e, str(e)) if r < 0 else f"ret={r}"  # noqa: E731
    by_kind: dict[str, Counter] = {}
    slowest: dict[str, float] = {}
    for kind, r, e, t in calls:
        by_kind.setdefault(kind, Counter())[name(r, e)] += 1
        slowest[kind] = max(slowest.get(kind, 0.0), round((t - t_signal_ns) / 1e6, 1))
    return dict(
        release_ms=round(release / 1e6, 1),
        first_release_ms=round((min(t for *_, t in calls) - t_signal_ns) / 1e6, 1),
        errnos=dict(Counter(name(r, e) for _, r, e, _ in calls)),
        errnos_by_kind={k: dict(v) for k, v in by_kind.items()},
        release_ms_by_kind=slowest,
        wrong=[(kind, r, errno.errorcode.get(e, e)) for kind, r, e, _ in calls
               if r >= 0 or e not in RELEASE_ERRNOS][:5],
    )


def slowest_by_kind(rounds) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rounds:
        for k, ms in r["release_ms_by_kind"].items():
            out[k] = max(out.get(k, 0.0), ms)
    return out


@pytest.mark.timeout(600)
def test_daemon_killed_releases_blocked_clients_and_remounts(mount_factory, rbin, scale, record, tmp_path):
    rounds = []
    problems = []
    stream_errs = []
    for rnd in range(scale.daemon_kill_rounds):
        m = mount_factory()
        n = scale.daemon_kill_blocked
        blockers = Blockers(rbin["mcblock"], m, f"killed-{rnd}", n)
        g = blockers.group_objs[m.path + f"/killed-{rnd}-w"]
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
            problems.append(f"round {rnd}: blocked calls ended with {r['errnos_by_kind']} (expected ENOTCONN/"
                            f"ECONNABORTED), e.g. {r['wrong']}")

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
        rounds.append(dict(blocked=len(calls), blocked_by_kind=blockers.counts,
                           **{k: v for k, v in r.items() if k != "wrong"},
                           plain_unmount_ok=plain.returncode == 0, needed_lazy=lazy is not None,
                           dead_mount=dead))
    record(rounds=len(rounds), daemons_killed=len(rounds), blocked_per_round=scale.daemon_kill_blocked,
           clients_released=sum(r["blocked"] for r in rounds), kinds=len(MIX),
           max_release_ms=max(r["release_ms"] for r in rounds),
           max_release_ms_by_kind=slowest_by_kind(rounds),
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
        n = scale.unmount_blocked
        t_setup = time.monotonic()
        blockers = Blockers(rbin["mcblock"], m, f"unmount-{rnd}", n)
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
            problems.append(f"round {rnd}: blocked calls ended with {r['errnos_by_kind']} (expected ENOTCONN/"
                            f"ECONNABORTED), e.g. {r['wrong']}")
        if m.mounted():
            problems.append(f"round {rnd}: still mounted after the daemon exited")
        rounds.append(dict(signal=sig.name, blocked=len(calls), blocked_by_kind=blockers.counts, exit_code=code,
                           daemon_exit_ms=round(daemon_exit_ms, 1), setup_s=round(setup_s, 1),
                           **{k: v for k, v in r.items() if k != "wrong"}))
    record(rounds=len(rounds), blocked_per_round=scale.unmount_blocked,
           clients_released=sum(r["blocked"] for r in rounds), kinds=len(MIX), orphan_tails_per_round=ORPHAN_TAILS,
           max_release_ms=max(r["release_ms"] for r in rounds),
           max_release_ms_by_kind=slowest_by_kind(rounds),
           max_daemon_exit_ms=max(r["daemon_exit_ms"] for r in rounds),
           streaming_clients_ended_with=dict(Counter(stream_errs)), per_round=rounds, problems=len(problems))
    assert not problems, "\n".join(problems)
