"""Part 1: stress with a checker, on the mounted filesystem.

W writers (C processes: some on G/send, some members writing on their own
member file, one of them with loopback=1) send self-describing messages of 1
byte to max_message (mostly small, a few large, one exactly max_message and
one max_message + 1), with O_NONBLOCK switched on and off at random, while
readers (C processes, blocking read(2), some with small and varying buffers
that take messages in parts) drain the members, members join and leave, some
members are drop-when-full with slow readers, member settings change, and
SIGUSR1 and SIGSTOP/SIGCONT interrupt writers and readers at random. The
writers stop by themselves (count or time limit).

The checker then proves from the writers' logs and the readers' logs:
- every message any member received was accepted (its write returned its full
  length) and is intact (length, checksum); a write that failed (EAGAIN,
  EINTR, EMSGSIZE) reached nobody; nobody received a message twice;
- `anchor` (present throughout, not drop-when-full, never sends) received
  exactly the accepted messages: its sequence is the group order, and the
  group's `sent` equals their number;
- every other permanent member that is not drop-when-full received exactly
  the group order, less its own messages (all of it with loopback=1);
- every drop-when-full member received the group order less some messages,
  and its `dropped` count equals exactly what it misses;
- a member that joined and left received a contiguous run of the group order
  (no gap), which includes every message written entirely while it was a
  member and none written entirely before it joined or after it left;
- two readers sharing one member received the group order between them, each
  message once;
- every member's sequence keeps each writer's order, and every pair of
  members saw their common messages in the same order (checked directly);
- `delivered` of every member equals what its readers received, and
  `blocked_writers` is 0 at the end.
"""

from __future__ import annotations

import bisect
import os
import random
import signal
import threading
import time
from collections import Counter

import pytest

import checker as ck
import procs
from helpers import MAX_MESSAGE

WSPAN = 64          # writer ids are < WSPAN (tiny messages encode counter * WSPAN + writer)
LIMIT = 1.0


def show(problems: list[str], limit: int = 25) -> str:
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n".join(problems[:limit]) + more


@pytest.mark.timeout(420)
def test_stress_many_writers_readers_members_checked(mount, group, rbin, scale, record, tmp_path):
    seed = int(os.environ.get("RELIABILITY_SEED", "0")) or random.randrange(1, 1 << 30)
    rng = random.Random(seed)
    logs = tmp_path
    g = group

    # --- members ------------------------------------------------------------------
    # name -> (member settings, [reader options...])
    permanent = {
        "anchor": ({}, [dict(bufsize=2 << 20)]),
        "parts": ({}, [dict(variable=True)]),
        "tight": ({"capacity": 4}, [dict(bufsize=2 << 20)]),
        "bytes": ({"queue_bytes": 65536}, [dict(variable=True)]),
        "drop1": ({"capacity": 2, "drop_when_full": 1}, [dict(bufsize=2 << 20, delay_us=300)]),
        "drop2": ({"capacity": 16, "queue_bytes": 8192, "drop_when_full": 1}, [dict(variable=True, delay_us=100)]),
        "shared": ({"capacity": 8}, [dict(bufsize=2 << 20), dict(variable=True)]),
        # settings changed during the run by the tuner: capacity 1..8, drop_when_full on and off
        "flip": ({"capacity": 4}, [dict(variable=True, delay_us=150)]),
    }
    writer_members = [f"wm{i}" for i in range(scale.member_writers)]
    for i, name in enumerate(writer_members):
        permanent[name] = ({"loopback": 1} if i == 0 else {}, [dict(variable=bool(i % 2))])
    dwf = {n for n, (s, _) in permanent.items() if s.get("drop_when_full")} | {"flip"}
    loopback = {n for n, (s, _) in permanent.items() if s.get("loopback")}
    for name, (settings, _) in permanent.items():
        g.member(name, **settings)

    workers: list[procs.Worker] = []
    readers: dict[str, list[procs.Worker]] = {}
    try:
        for name, (_, opts) in permanent.items():
            readers[name] = []
            for k, o in enumerate(opts):
                w = procs.reader(rbin, g.p(name), str(logs / f"r-{name}-{k}.log"), seed=rng.randrange(1 << 30), **o)
                readers[name].append(w)
                workers.append(w)

        # --- churn: members join and leave during the run ----------------------------
        stop = threading.Event()
        transients: list[dict] = []
        errors: list[BaseException] = []
        live_readers: list[procs.Worker] = []

        def churn():
            try:
                k = 0
                live: list[dict] = []
                crng = random.Random(rng.randrange(1 << 30))
                while True:
                    now = time.monotonic()
                    if not stop.is_set() and len(live) < scale.churn_max_live and crng.random() < 0.5:
                        name = f"t{k}"
                        k += 1
                        settings = crng.choice([{}, {}, {"capacity": 3}, {"queue_bytes": 2048}])
                        t = dict(name=name, settings=settings, j0=time.monotonic_ns())
                        os.close(os.open(g.p(name), os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o644))
                        t["j1"] = time.monotonic_ns()
                        if settings:
                            g.configure(name, **settings)
                        t["reader"] = procs.reader(rbin, g.p(name), str(logs / f"t-{name}.log"),
                                                   variable=crng.random() < 0.4, seed=crng.randrange(1 << 30))
                        live_readers.append(t["reader"])
                        t["until"] = now + crng.uniform(0.02, 0.4)
                        live.append(t)
                        transients.append(t)
                    for t in list(live):
                        if stop.is_set() or time.monotonic() >= t["until"]:
                            t["l0"] = time.monotonic_ns()
                            os.unlink(g.p(t["name"]))
                            t["l1"] = time.monotonic_ns()
                            live.remove(t)
                    if stop.is_set() and not live:
                        return
                    time.sleep(crng.uniform(0.005, 0.04))
            except BaseException as e:  # noqa: BLE001 - reported by the test
                errors.append(e)

        # --- SIGUSR1 at random: interrupted writes deliver nothing, interrupted reads consume nothing
        usr1 = {"writer": 0, "reader": 0}
        stops = {"writer": 0, "reader": 0}
        writers: list[procs.Worker] = []

        def inject():
            try:
                irng = random.Random(rng.randrange(1 << 30))
                while not stop.is_set():
                    time.sleep(irng.uniform(0.005, 0.03))
                    pool = [w for w in writers if w.alive()] + \
                           [r for rs in readers.values() for r in rs if r.alive()] + \
                           [r for r in list(live_readers) if r.alive()]
                    if not pool:
                        continue
                    victim = irng.choice(pool)
                    try:
                        if irng.random() < 0.8:
                            os.kill(victim.pid, signal.SIGUSR1)
                            usr1[victim.role] += 1
                        else:  # a stop signal (Ctrl-Z) interrupts a blocked call too: EINTR once resumed
                            os.kill(victim.pid, signal.SIGSTOP)
                            time.sleep(irng.uniform(0.001, 0.02))
                            os.kill(victim.pid, signal.SIGCONT)
                            stops[victim.role] += 1
                    except ProcessLookupError:
                        pass
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        # --- settings change under load; status snapshots must be consistent ----------
        tuned = {"capacity": 0, "drop_when_full": 0}
        samples = {"n": 0}
        snapshot_problems: list[str] = []
        not_senders = [n for n in permanent if n not in writer_members]

        def tune():
            try:
                trng = random.Random(rng.randrange(1 << 30))
                while not stop.is_set():
                    time.sleep(trng.uniform(0.01, 0.05))
                    if trng.random() < 0.5:
                        g.configure("tight", capacity=trng.randint(1, 8))
                        tuned["capacity"] += 1
                    else:
                        g.configure("flip", capacity=trng.randint(1, 8), drop_when_full=trng.randint(0, 1))
                        tuned["drop_when_full"] += 1
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        def sample():
            try:
                while not stop.is_set():
                    time.sleep(0.02)
                    st = g.status()
                    samples["n"] += 1
                    sent = st.group["sent"]
                    if st.group["blocked_writers"] > len(targets):
                        snapshot_problems.append(f"snapshot: blocked_writers={st.group['blocked_writers']} with "
                                                 f"{len(targets)} writers")
                    for n in not_senders:
                        m = st.members.get(n)
                        if m is None:
                            snapshot_problems.append(f"snapshot: {n} missing")
                        elif m["delivered"] + m["dropped"] != sent:
                            snapshot_problems.append(f"snapshot not consistent: {n} delivered={m['delivered']} + "
                                                     f"dropped={m['dropped']} != sent={sent}")
                        elif m["delivered"] < m["queued"]:
                            snapshot_problems.append(f"snapshot: {n} queued={m['queued']} > delivered")
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        # --- writers -------------------------------------------------------------------
        wids = {}
        targets = [("send", f"ws{i}") for i in range(scale.send_writers)] + [(m, m) for m in writer_members]
        t_start = time.monotonic()
        threads = [threading.Thread(target=f, daemon=True) for f in (churn, inject, tune, sample)]
        for t in threads:
            t.start()
        for wid, (path_name, label) in enumerate(targets):
            w = procs.writer(
                rbin, g.p(path_name), wid, str(logs / f"w-{label}.log"), wspan=WSPAN,
                count=scale.attempts_per_writer, deadline_ms=int(scale.stress_time_limit_s * 1000),
                seed=rng.randrange(1 << 30), maxmsg=MAX_MESSAGE, nonblock_pct=25, large_pm=3, medium_pct=8,
                pause_us=rng.choice([0, 0, 100, 300]), edges=(wid == 0), label=label, member=path_name,
            )
            wids[wid] = w
            writers.append(w)
            workers.append(w)
        for w in writers:
            code = w.wait(scale.stress_time_limit_s + 60)
            assert code == 0, f"writer {w.info['label']} exited with {code}: {w.stderr()}"
        t_writers = time.monotonic() - t_start
        stop.set()
        for t in threads:
            t.join(30)
        assert not errors, f"churn or signal thread failed: {errors[0]!r}"
        assert not any(t.is_alive() for t in threads), "churn or signal thread stuck"

        # --- the snapshot, then every member leaves: readers drain and reach end of file
        st = g.status()
        for name in permanent:
            os.unlink(g.p(name))
        for rs in list(readers.values()) + [[t["reader"]] for t in transients]:
            for r in rs:
                code = r.wait(60)
                assert code == 0, f"reader {r.info['path']} exited with {code} (None: still running): {r.stderr()}"
        t_total = time.monotonic() - t_start
    finally:
        procs.stop_all(workers + [t["reader"] for t in transients if "reader" in t])

    # --- the checker -------------------------------------------------------------------
    problems: list[str] = list(dict.fromkeys(snapshot_problems))
    wlogs = {wid: ck.parse_writer_log(w.log, wid) for wid, w in wids.items()}
    accepted: dict = {}
    attempts: dict = {}
    own: dict = {}  # member -> set of its own messages
    for wid, wl in wlogs.items():
        if not wl.ended or wl.fatal:
            problems.append(f"writer {wid} did not finish cleanly (fatal errno {wl.fatal})")
        for a in wl.short():
            problems.append(f"writer {wid}: short write {a.ret} of {a.length} (counter {a.counter})")
        acc = wl.accepted
        accepted.update(acc)
        attempts.update({(wid, a.counter): a for a in wl.attempts.values()})
        member = wids[wid].info["member"]
        if member != "send":
            own[member] = set(acc)
    fails = dict(Counter(ck.errname(a.err) for wl in wlogs.values() for a in wl.failed()))
    edge = wlogs[0].attempts
    if edge.get(1) and edge[1].ret != MAX_MESSAGE:
        problems.append(f"a write of exactly max_message ({MAX_MESSAGE}) returned {edge[1].ret} "
                        f"{ck.errname(edge[1].err)}")
    if edge.get(2) and not (edge[2].ret == -1 and edge[2].err == ck.E.EMSGSIZE):
        problems.append(f"a write of max_message + 1 returned {edge[2].ret} {ck.errname(edge[2].err)}, "
                        "expected EMSGSIZE")

    got = {}
    for name, rs in readers.items():
        rl = [ck.parse_reader_log(r.log, WSPAN) for r in rs]
        problems += ck.check_reader_health(name, rl)
        got[name] = rl
    for t in transients:
        rl = ck.parse_reader_log(t["reader"].log, WSPAN)
        problems += ck.check_reader_health(t["name"], [rl])
        t["log"] = rl

    # everything received was accepted, intact; no duplicates; writer order
    def ids_of(rl):
        return [m for m, _ in rl.msgs]

    seqs = {}
    for name, rl in got.items():
        for k, r in enumerate(rl):
            problems += ck.check_received_were_accepted(f"{name}[{k}]", r.msgs, accepted, attempts)
        seq = [m for r in rl for m in ids_of(r)]
        problems += ck.check_no_duplicates(name, seq)
        if len(rl) == 1:
            seqs[name] = seq
        for k, r in enumerate(rl):
            problems += ck.check_writer_order(f"{name}[{k}]", ids_of(r))
    for t in transients:
        problems += ck.check_received_were_accepted(t["name"], t["log"].msgs, accepted, attempts)
        problems += ck.check_no_duplicates(t["name"], ids_of(t["log"]))
        problems += ck.check_writer_order(t["name"], ids_of(t["log"]))
        seqs[t["name"]] = ids_of(t["log"])

    # the anchor is the group order
    ref = seqs["anchor"]
    pos = {m: i for i, m in enumerate(ref)}
    if set(ref) != set(accepted):
        missing = [m for m in accepted if m not in pos]
        extra = [m for m in ref if m not in accepted]
        problems.append(f"anchor: {len(missing)} accepted messages missing (e.g. {missing[:5]}), "
                        f"{len(extra)} not accepted (e.g. {extra[:5]})")
    if st.group["sent"] != len(accepted):
        problems.append(f"status sent={st.group['sent']}, but {len(accepted)} writes were accepted")
    if st.group["blocked_writers"] != 0:
        problems.append(f"blocked_writers={st.group['blocked_writers']} after every writer finished")

    dropped_total = 0
    for name in permanent:
        mine = own.get(name, set())
        expected = ref if name in loopback else [m for m in ref if m not in mine]
        member_st = st.members.get(name)
        if member_st is None:
            problems.append(f"{name} is missing from the status snapshot")
            continue
        if name == "shared":
            parts = [ids_of(r) for r in got[name]]
            for k, p in enumerate(parts):
                problems += ck.check_follows(f"shared[{k}]", p, pos)
            union = [m for p in parts for m in p]
            if set(union) != set(expected) or len(union) != len(expected):
                problems.append(f"shared: its two readers received {len(union)} messages "
                                f"({len(set(union))} distinct), expected {len(expected)}")
            received = len(union)
        elif name in dwf:
            seq = seqs[name]
            problems += ck.check_follows(name, seq, pos)
            missing = len(expected) - len(seq)
            dropped_total += member_st["dropped"]
            if member_st["dropped"] != missing:
                problems.append(f"{name}: status dropped={member_st['dropped']}, but it misses {missing} "
                                f"of the {len(expected)} messages it was a recipient of")
            received = len(seq)
        else:
            problems += ck.check_exact(name, seqs[name], expected)
            if member_st["dropped"] != 0:
                problems.append(f"{name}: dropped={member_st['dropped']} without drop_when_full")
            received = len(seqs[name])
        if member_st["delivered"] != received:
            problems.append(f"{name}: status delivered={member_st['delivered']}, its readers received {received}")
        if name in loopback and mine and not mine <= set(seqs[name]):
            problems.append(f"{name} (loopback=1) did not receive all of its own messages")
        if name not in loopback and mine & set(seqs.get(name, [])):
            problems.append(f"{name} (loopback=0) received its own messages")

    # members that came and went: a contiguous run, consistent with when they were members
    by_t0 = sorted((attempts[m].t0, attempts[m].t1, m) for m in ref if m in attempts)
    t0s = [x[0] for x in by_t0]
    must_have = 0   # (transient member, message written entirely while it was a member) pairs checked
    for t in transients:
        seq = seqs[t["name"]]
        p, span = ck.check_contiguous(t["name"], seq, ref)
        problems += p
        lo, hi = span if span else (None, None)
        # written entirely while it was a member: must be in its run
        for t0, t1, m in by_t0[bisect.bisect_right(t0s, t["j1"]):bisect.bisect_left(t0s, t["l0"])]:
            if t1 < t["l0"]:
                must_have += 1
            if t1 < t["l0"] and not (lo is not None and lo <= pos[m] <= hi):
                problems.append(f"{t['name']}: {m} was written entirely while it was a member "
                                f"(joined {t['j1']}, left {t['l0']}, write {t0}..{t1}) but never arrived")
                break
        # written entirely before it joined or after it left: must not be
        if span:
            for m in ref[lo:hi + 1]:
                a = attempts[m]
                if a.t1 < t["j0"] or a.t0 > t["l1"]:
                    problems.append(f"{t['name']}: received {m}, written entirely outside its membership")
                    break

    # every pair of members: common messages in the same order (directly)
    problems += ck.check_pairwise_order(seqs)
    # and against the group order
    for name, seq in seqs.items():
        if name != "anchor":
            problems += ck.check_follows(name, seq, pos)

    deliveries = sum(len(r.msgs) for rl in got.values() for r in rl) + sum(len(t["log"].msgs) for t in transients)
    parts_read = sum((r.eof or {}).get("parts", 0) for rl in got.values() for r in rl)
    reader_eintr = sum((r.eof or {}).get("eintr", 0) for rl in got.values() for r in rl) + \
        sum((t["log"].eof or {}).get("eintr", 0) for t in transients)
    n_attempts = sum(len(wl.attempts) for wl in wlogs.values())
    sizes = [accepted[m] for m in ref]
    figures = dict(
        seed=seed,
        writers=len(wids), send_writers=scale.send_writers, member_writers=scale.member_writers,
        permanent_members=len(permanent), transient_members=len(transients),
        transient_must_have_checked=must_have,
        attempts=n_attempts, accepted=len(accepted), failed=fails,
        large_msgs=sum(1 for s in sizes if s > 65536), tiny_msgs=sum(1 for s in sizes if s < 16),
        one_byte_msgs=sum(1 for s in sizes if s == 1), max_size=max(sizes, default=0),
        bytes_accepted=sum(sizes),
        deliveries_checked=deliveries, dropped=dropped_total, partial_read_parts=parts_read,
        sigusr1_writers=usr1["writer"], sigusr1_readers=usr1["reader"],
        sigstop_writers=stops["writer"], sigstop_readers=stops["reader"], reader_eintr=reader_eintr,
        settings_changes=tuned["capacity"] + tuned["drop_when_full"], status_snapshots_checked=samples["n"],
        writers_s=round(t_writers, 2), total_s=round(t_total, 2), problems=len(problems),
    )
    record(**figures)
    assert not problems, f"{len(problems)} problems (seed {seed}):\n{show(problems)}"
