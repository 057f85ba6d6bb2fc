"""What the stress runs share (test_stress.py, test_filter_stress.py,
test_peer_stress.py, test_mixed_stress.py): the seed, the writers' side of
the checker, readers started in either view, the threads that run beside
the writers (signals, settings, status snapshots, members joining and
leaving), the copies of the writers that run as another user, and the end
of the daemon under the address sanitizer.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import traceback
from collections import Counter

import checker as ck
import procs

WSPAN = 64          # writer ids are < WSPAN (tiny messages encode counter * WSPAN + writer)
NOBODY = 65534


def run_seed() -> int:
    """$RELIABILITY_SEED, or a new one (printed with the figures)."""
    return int(os.environ.get("RELIABILITY_SEED", "0")) or random.randrange(1, 1 << 30)


def show(problems: list[str], limit: int = 25) -> str:
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n".join(problems[:limit]) + more


def is_asan(binary: str) -> bool:
    return subprocess.run(["grep", "-qa", "AddressSanitizer", binary], timeout=60).returncode == 0


def stop_daemon(m) -> list[str]:
    """SIGTERM the stress run's daemon: it must exit 0, unmount, and, under
    the address sanitizer, report nothing (no leak, no error)."""
    code = m.stop(signal.SIGTERM, timeout=30.0)
    with open(m.stderr_path, errors="replace") as f:
        text = f.read()
    if code != 0:
        return [f"the daemon exited with {code} after SIGTERM: {text[-3000:]}"]
    if re.search(r"ERROR: \w*Sanitizer", text):
        return [f"the daemon exited 0 with a sanitizer report: {text[-3000:]}"]
    return [] if not m.mounted() else ["the daemon exited 0 but left the mount behind"]


def ck_end(path: str) -> dict:
    """The counts on a writer log's END line."""
    with open(path) as f:
        ends = [line.split()[1:] for line in f if line.startswith("END ")]
    return {k: int(v) for k, _, v in (kv.partition("=") for kv in (ends[-1] if ends else [])) if v.lstrip("-").isdigit()}


# --- readers ---------------------------------------------------------------------


def start_reader(rbin, path_of, name: str, log: str, seed: int, o: dict) -> procs.Worker:
    """A record reader of G/NAME (mcr) or, with framed=True, a framed reader
    of G/frames/NAME (mcfr); peer=True reads G/peers/NAME (record view only)."""
    o = dict(o)
    if o.pop("peer", False):
        return procs.reader(rbin, path_of("peers/" + name), log, seed=seed, **o)
    if o.pop("framed", False):
        o.pop("bufsize", None)
        return procs.framed_reader(rbin, path_of("frames/" + name), log, seed=seed, **o)
    return procs.reader(rbin, path_of(name), log, seed=seed, **o)


def parse_log(r: procs.Worker, wspan: int = WSPAN):
    return ck.parse_frame_log(r.log, wspan) if r.info.get("framed") else ck.parse_reader_log(r.log, wspan)


def wait_readers(readers, timeout: float = 60):
    """Every reader reaches end of file and exits 0 (its members have left)."""
    for r in readers:
        code = r.wait(timeout)
        assert code == 0, f"reader {r.info.get('path')} exited with {code} (None: still running): {r.stderr()}"


# --- writers ---------------------------------------------------------------------


def writer_side(wids: dict, wspan: int = WSPAN) -> tuple[ck.Traffic, dict, list[str], dict]:
    """The writers' logs of one group (wids: writer id -> Worker whose info
    has `member`, "send" or the member it writes as, or `private_to`, the
    member whose peer file it writes): (the Traffic, the parsed logs, problems
    (a writer that did not finish cleanly, a short write of one message),
    failed writes by errno name)."""
    accepted, attempts, sender, private_to, problems, failed, wlogs = {}, {}, {}, {}, [], Counter(), {}
    for wid, w in wids.items():
        wl = ck.parse_writer_log(w.log, wid)
        wlogs[wid] = wl
        label = w.info.get("label", wid)
        if not wl.ended or wl.fatal:
            problems.append(f"writer {label} did not finish cleanly (fatal {wl.fatal}; -1: a count that did not "
                            "end a record or a line)")
        for a in wl.short():
            problems.append(f"writer {label}: short write {a.ret} of {a.length} (counter {a.counter})")
        accepted.update(wl.accepted)
        attempts.update({(wid, a.counter): a for a in wl.attempts.values()})
        failed.update(ck.errname(a.err) for a in wl.failed())
        if "private_to" in w.info:
            private_to[wid] = w.info["private_to"]
        elif w.info.get("member", "send") != "send":
            sender[wid] = w.info["member"]
    starts = {m: ck.payload_start(m, n, wspan) for m, n in accepted.items()}
    return ck.Traffic(accepted, attempts, sender, private_to, starts), wlogs, problems, dict(failed)


def received(got: dict, traffic: ck.Traffic, transients: list = ()) -> tuple[dict, list[str]]:
    """What one group's readers received, each log checked against the
    writers' (ck.check_received): (reader -> the messages in the order it
    read them, problems). `got` maps a member to its readers' parsed logs
    (a member read by several readers is `name[k]` for each); a transient
    member's log is parsed here and kept as its `log`."""
    seqs: dict = {}
    problems: list[str] = []
    for name, rl in got.items():
        problems += ck.check_received(name, rl, traffic.accepted, traffic.attempts)
        for k, r in enumerate(rl):
            seqs[name if len(rl) == 1 else f"{name}[{k}]"] = [m for m, _ in r.msgs]
    for t in transients:
        t["log"] = parse_log(t["reader"])
        problems += ck.check_received(t["name"], [t["log"]], traffic.accepted, traffic.attempts)
        seqs[t["name"]] = [m for m, _ in t["log"].msgs]
    return seqs, problems


def check_anchor(seqs: dict, traffic: ck.Traffic, anchor: str, what: str = "messages") -> tuple[list, list[str]]:
    """The anchor member (present throughout, unfiltered, never dropping)
    received every group message accepted, once: (its sequence, problems)."""
    ref = seqs[anchor]
    group = [m for m in traffic.accepted if not traffic.private(m)]
    if set(ref) != set(group) or len(ref) != len(group):
        return ref, [f"{anchor} got {len(ref)} {what}, {len(group)} group {what} were accepted"]
    return ref, []


def own_messages(traffic: ck.Traffic) -> dict:
    """member -> the set of group messages it sent."""
    out: dict = {}
    for m in traffic.accepted:
        if m[0] in traffic.sender:
            out.setdefault(traffic.sender[m[0]], set()).add(m)
    return out


class AsNobody:
    """Copies of the C writers that uid 65534 may run (the helpers' bin/ may
    sit where it cannot), and logs it may write, in a directory of their own."""

    def __init__(self, rbin, workdir_base: str, tag: str, names=("mcw", "mcfw")):
        self.dir = os.path.join(workdir_base, f"nobody-{tag}")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.bin = {}
        for name in names:
            self.bin[name] = os.path.join(self.dir, name)
            shutil.copy(rbin[name], self.bin[name])
            os.chmod(self.bin[name], 0o755)

    def log(self, name: str) -> str:
        path = os.path.join(self.dir, name)
        open(path, "w").close()
        os.chown(path, NOBODY, NOBODY)
        return path


# --- threads beside the writers --------------------------------------------------


class Threads:
    """Functions run in daemon threads until `stop` is set; whatever one
    raises is kept and reported by finish()."""

    def __init__(self):
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def start(self, fn, *args, **kwargs):
        def run():
            try:
                fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - reported by finish()
                self.errors.append(e)

        t = threading.Thread(target=run, daemon=True)
        self.threads.append(t)
        t.start()

    def finish(self, timeout: float = 30):
        self.stop.set()
        for t in self.threads:
            t.join(timeout)
        assert not self.errors, "a thread beside the writers failed: " + \
            "".join(traceback.format_exception(self.errors[0]))[-2000:]
        assert not any(t.is_alive() for t in self.threads), "a thread beside the writers is stuck"


def inject(stop: threading.Event, rng: random.Random, pool, usr1: dict, stops: dict | None = None,
           stop_share: float = 0.2):
    """Signals at random to the live workers of pool() until stop: SIGUSR1
    (an interrupted write delivers nothing, an interrupted read consumes
    nothing), or, with `stops`, now and then SIGSTOP then SIGCONT (a stopped
    call returns EINTR once resumed). Counts by role in usr1 and stops."""
    while not stop.is_set():
        time.sleep(rng.uniform(0.005, 0.03))
        live = [w for w in pool() if w.alive()]
        if not live:
            continue
        victim = rng.choice(live)
        try:
            if stops is None or rng.random() >= stop_share:
                os.kill(victim.pid, signal.SIGUSR1)
                usr1[victim.role] += 1
            else:
                os.kill(victim.pid, signal.SIGSTOP)
                time.sleep(rng.uniform(0.001, 0.02))
                os.kill(victim.pid, signal.SIGCONT)
                stops[victim.role] += 1
        except ProcessLookupError:
            pass


def sample(stop: threading.Event, group, samples: dict, problems: list, extra=None, every: float = 0.02, **rules):
    """Status snapshots all along, each judged by ck.check_snapshot(**rules)
    against the one before (and by extra(st), if given, for problems of its
    own); counted in samples["n"]."""
    prev = None
    while not stop.is_set():
        time.sleep(every)
        st = group.status()
        samples["n"] = samples.get("n", 0) + 1
        problems += ck.check_snapshot(st, prev, **rules)
        if extra is not None:
            problems += extra(st)
        prev = st


def creds_of(wids: dict) -> dict:
    """writer id -> what its frames must carry: its pid, uid and gid (info
    `uid`, 0 unless it runs as another user) and the member it writes as
    ("" on send, and for a private writer)."""
    return {wid: (w.pid, w.info.get("uid", 0), w.info.get("uid", 0),
                  "" if "private_to" in w.info or w.info.get("member", "send") == "send" else w.info["member"])
            for wid, w in wids.items()}


def conclude(mnt, record, figures: dict, problems: list[str], seed: int):
    """The end of a stress run: its daemon stopped (stop_daemon), the
    figures recorded with the problems counted, and the test failed on any."""
    problems += stop_daemon(mnt)
    figures["problems"] = len(problems)
    record(**figures)
    assert not problems, f"{len(problems)} problems (seed {seed}):\n{show(problems)}"


def churn(stop: threading.Event, rng: random.Random, group, rbin, logs, max_live: int, transients: list,
          live_readers: list, settings=({}, {}, {"capacity": 3}, {"queue_bytes": 2048}), patterns=("",),
          framed_share: float = 0.0, prefix: str = "t"):
    """Members join and leave until stop, at most max_live at once, each for
    20 .. 400 ms with its own reader (record, or framed for framed_share of
    them, in parts for 40%), settings and patterns drawn from those given
    (patterns set once it is in). Each one's dict goes to `transients` with
    its times: j0 .. j1 around its create, s0 .. s1 around its subscribe
    command, l0 .. l1 around its rm (CLOCK_MONOTONIC ns), for
    checker.check_transient. Their names are `prefix` and a number (a
    churn per node of a cluster: names are unique across nodes)."""
    k = 0
    live: list[dict] = []
    while True:
        now = time.monotonic()
        if not stop.is_set() and len(live) < max_live and rng.random() < 0.5:
            t = dict(name=f"{prefix}{k}", settings=rng.choice(settings), patterns=rng.choice(patterns),
                     framed=rng.random() < framed_share)
            k += 1
            t["j0"] = time.monotonic_ns()
            os.close(os.open(group.p(t["name"]), os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o644))
            t["j1"] = time.monotonic_ns()
            if t["settings"]:
                group.configure(t["name"], **t["settings"])
            if t["patterns"]:
                t["s0"] = time.monotonic_ns()
                group.ctl(f"member {t['name']} subscribe={t['patterns']}")
                t["s1"] = time.monotonic_ns()
            t["reader"] = start_reader(rbin, group.p, t["name"], str(logs / f"t-{t['name']}.log"),
                                       rng.randrange(1 << 30), dict(framed=t["framed"], variable=rng.random() < 0.4))
            live_readers.append(t["reader"])
            t["until"] = now + rng.uniform(0.02, 0.4)
            live.append(t)
            transients.append(t)
        for t in list(live):
            if stop.is_set() or time.monotonic() >= t["until"]:
                t["l0"] = time.monotonic_ns()
                os.unlink(group.p(t["name"]))
                t["l1"] = time.monotonic_ns()
                live.remove(t)
        if stop.is_set() and not live:
            return
        time.sleep(rng.uniform(0.005, 0.04))


def flip_patterns(stop: threading.Event, group, member: str, lists, counts: dict, key: str = "subscribe",
                  every: float = 0.005):
    """A member's patterns switched between `lists` until stop, counted in counts[key]."""
    k = 0
    while not stop.is_set():
        k += 1
        group.ctl(f"member {member} subscribe={lists[k % len(lists)]}")
        counts[key] = counts.get(key, 0) + 1
        time.sleep(every)
