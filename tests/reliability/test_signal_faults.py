"""Part 2a: SIGINT and SIGKILL to readers and writers, blocked or not, at
random moments, on a group under load.

Members: `gate` (capacity 8, read by one reader that is never killed: its
sequence is the group order), `r0..` (each read by a reader that is killed
again and again and replaced by a new one on the same member), `wm0..`
(members whose own writers send on them; drop-when-full, never read).
Writers (C processes, blocking writes, on G/send or on their member file)
are killed and replaced by new writers with new ids.

Faults are of three kinds, chosen at random:
- a reader killed at a random moment (often blocked in read(2), sometimes
  handling a message): it may take with it at most the one message it was
  handed;
- a writer killed at a random moment (blocked in write(2), or between
  writes): its message in flight is delivered to every member or to none;
- a closed gate: the gate's reader is stopped (SIGSTOP), so every writer
  ends up blocked (`blocked_writers` = number of writers) and no write can
  complete; then some writers and some readers (blocked in read(2) on an
  empty queue) are killed. A killed blocked writer delivered nothing, a killed
  reader with nothing to hand over loses nothing, and `blocked_writers` drops
  by the number of killed writers as soon as they are gone (no ghost waiter).

Every signalled process must exit within 1 s. At the end every writer is
blocked and killed: `blocked_writers` must be 0 once they are all gone. Then
the checker proves: every accepted write is in the gate's sequence; the
gate's sequence holds nothing else, except messages of writers killed in
write(2) in the open; the group's `sent` equals its length; and the
successive readers of each r member received, between them, the gate's
sequence less at most one message per reader killed in the open (none for a
reader killed in a closed phase), with no duplicate and no gap anywhere else.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

import checker as ck
import procs
from helpers import wait_for

WSPAN = 4096   # writer ids: new ones for every replacement writer
LIMIT_S = 1.0  # every signalled process must be gone within this


@pytest.mark.timeout(600)
def test_signals_to_readers_and_writers_at_random_moments(mount, group, rbin, scale, record, tmp_path):
    seed = int(os.environ.get("RELIABILITY_SEED", "0")) or random.randrange(1, 1 << 30)
    rng = random.Random(seed)
    g = group
    logs = tmp_path

    g.member("gate", capacity=8)
    simple = [f"r{i}" for i in range(scale.fault_readers)]
    rnames = simple + ["rs"]                      # rs: one member, two readers sharing its queue
    slots = simple + ["rs.a", "rs.b"]             # a slot is one reader at a time, replaced when killed
    member_of = {sl: sl.split(".")[0] for sl in slots}
    for n in rnames:
        g.member(n, capacity=rng.choice([4, 32, 256]))
    wm = [f"wm{i}" for i in range(max(1, scale.fault_writers // 2))]
    for n in wm:
        g.member(n, capacity=1, drop_when_full=1)

    everyone: list[procs.Worker] = []
    gate = procs.reader(rbin, g.p("gate"), str(logs / "gate.log"), delay_us=200, seed=rng.randrange(1 << 30))
    everyone.append(gate)
    incarnations: dict[str, list[dict]] = {sl: [] for sl in slots}  # slot -> [{worker, kind}]
    writers: list[procs.Worker] = []
    all_writers: dict[int, dict] = {}                               # wid -> {worker, kind}
    next_wid = [0]
    kills: list[dict] = []
    problems: list[str] = []
    stopped_gate = [False]

    def start_reader(name):
        w = procs.reader(rbin, g.p(member_of[name]), str(logs / f"{name}-{len(incarnations[name])}.log"),
                         variable=rng.random() < 0.3, seed=rng.randrange(1 << 30))
        everyone.append(w)
        incarnations[name].append({"worker": w, "kind": None})
        return w

    def start_writer(target):
        wid = next_wid[0]
        next_wid[0] += 1
        assert wid < WSPAN
        w = procs.writer(rbin, g.p(target), wid, str(logs / f"w{wid}.log"), wspan=WSPAN, count=0,
                         deadline_ms=int((scale.fault_time_limit_s + 60) * 1000), seed=rng.randrange(1 << 30),
                         large_pm=2, medium_pct=5, pause_us=rng.choice([0, 200, 2000]), log_begin=True,
                         target=target)
        everyone.append(w)
        writers.append(w)
        all_writers[wid] = {"worker": w, "kind": None}
        return w

    def kill(w: procs.Worker, kind: str) -> float:
        """Signal w (SIGINT or SIGKILL); its exit time. kind: open or closed."""
        sig = rng.choice([signal.SIGINT, signal.SIGKILL])
        blocked = w.blocked_in(procs.READ if w.role == "reader" else procs.WRITE)
        elapsed = w.signal_and_time(sig, limit=10.0)
        kills.append(dict(role=w.role, sig=sig.name, kind=kind, blocked=blocked,
                          exit_s=elapsed if elapsed is not None else float("inf")))
        w.info["blocked_at_signal"] = blocked
        if elapsed is None:
            problems.append(f"{w.role} {w.pid} still alive 10 s after {sig.name} ({kind}, blocked={blocked})")
            w.kill()
        elif elapsed > LIMIT_S:
            problems.append(f"{w.role} took {elapsed:.3f} s to exit after {sig.name} ({kind}, blocked={blocked})")
        return elapsed or 0.0

    def blocked_writers():
        return g.status().group["blocked_writers"]

    def close_gate():
        os.kill(gate.pid, signal.SIGSTOP)
        stopped_gate[0] = True
        wait_for(lambda: blocked_writers() == len(writers), timeout=10, interval=0.005,
                 what=f"all {len(writers)} writers blocked behind the stopped gate")

    def open_gate():
        os.kill(gate.pid, signal.SIGCONT)
        stopped_gate[0] = False

    try:
        for sl in slots:
            start_reader(sl)
        for i in range(scale.fault_writers):
            start_writer(wm[i // 2] if i % 2 and i // 2 < len(wm) else "send")

        t0 = time.monotonic()
        faults = closed_phases = 0
        ghost_checks = []
        while faults < scale.faults and time.monotonic() - t0 < scale.fault_time_limit_s:
            time.sleep(rng.uniform(0, 0.05))
            action = rng.random()
            if action < 0.2:
                # closed gate: every writer blocked, nothing can be delivered
                close_gate()
                closed_phases += 1
                wait_for(lambda: all(g.status().member(n)["queued"] == 0 for n in rnames), timeout=10,
                         what="the r members' readers to drain their queues")
                for n in slots:
                    r = incarnations[n][-1]["worker"]
                    wait_for(lambda r=r: r.blocked_in(procs.READ), timeout=5, what=f"{n}'s reader blocked in read")
                victims = rng.sample(writers, rng.randint(1, len(writers)))
                for w in victims:
                    all_writers[w.info["wid"]]["kind"] = "closed"
                    kill(w, "closed")
                    writers.remove(w)
                    faults += 1
                left = blocked_writers()
                ghost_checks.append(left)
                if left != len(writers):
                    problems.append(f"blocked_writers={left} right after {len(victims)} of {len(writers) + len(victims)}"
                                    f" blocked writers were killed (expected {len(writers)}): a ghost waiter")
                for n in rng.sample(slots, rng.randint(0, len(slots))):
                    inc = incarnations[n][-1]
                    inc["kind"] = "closed"
                    kill(inc["worker"], "closed")
                    faults += 1
                    start_reader(n)
                for w in victims:
                    start_writer(w.info["target"])
                open_gate()
            elif action < 0.6:
                n = rng.choice(slots)
                inc = incarnations[n][-1]
                inc["kind"] = "open"
                kill(inc["worker"], "open")
                faults += 1
                start_reader(n)
            else:
                w = rng.choice(writers)
                all_writers[w.info["wid"]]["kind"] = "open"
                kill(w, "open")
                writers.remove(w)
                faults += 1
                start_writer(w.info["target"])
        t_faults = time.monotonic() - t0

        # the end: every writer blocked, then killed; no waiter may remain
        close_gate()
        for w in list(writers):
            all_writers[w.info["wid"]]["kind"] = "closed"
            kill(w, "closed")
            writers.remove(w)
        final_blocked = blocked_writers()
        if final_blocked != 0:
            problems.append(f"blocked_writers={final_blocked} once every writer was gone (ghost waiters)")
        open_gate()
        wait_for(lambda: all(m["queued"] == 0 for m in (g.status().member(n) for n in ["gate", *rnames])),
                 timeout=60, what="the readers to drain every queue")
        st = g.status()
        for n in ["gate", *rnames, *wm]:
            os.unlink(g.p(n))
        for w in [gate] + [incarnations[sl][-1]["worker"] for sl in slots]:
            code = w.wait(30)
            if code != 0:
                problems.append(f"reader {w.info['path']} exited with {code} at the end: {w.stderr()}")
    finally:
        if stopped_gate[0]:
            os.kill(gate.pid, signal.SIGCONT)
        procs.stop_all(everyone)

    # --- the checker ---------------------------------------------------------------
    wlogs = {wid: ck.parse_writer_log(d["worker"].log, wid) for wid, d in all_writers.items()}
    accepted, attempts = {}, {}
    inflight_open, inflight_closed = set(), set()
    for wid, wl in wlogs.items():
        accepted.update(wl.accepted)
        attempts.update({(wid, a.counter): a for a in wl.attempts.values()})
        for a in wl.short():
            problems.append(f"writer {wid}: short write {a.ret} of {a.length}")
        for a in wl.failed():
            problems.append(f"writer {wid}: write {a.counter} failed with {ck.errname(a.err)} (blocking writes, "
                            "no caught signal)")
        fl = wl.inflight()
        if len(fl) > 1:
            problems.append(f"writer {wid}: {len(fl)} writes begun and never returned")
        for a in fl:
            (inflight_open if all_writers[wid]["kind"] == "open" else inflight_closed).add((wid, a.counter))

    glog = ck.parse_reader_log(gate.log, WSPAN)
    problems += ck.check_reader_health("gate", [glog])
    ref = [m for m, _ in glog.msgs]
    problems += ck.check_received_were_accepted("gate", glog.msgs, accepted, attempts)
    problems += ck.check_no_duplicates("gate", ref)
    problems += ck.check_writer_order("gate", ref)
    pos = {m: i for i, m in enumerate(ref)}
    missing = [m for m in accepted if m not in pos]
    if missing:
        problems.append(f"gate: {len(missing)} accepted messages never arrived, e.g. {missing[:5]}")
    for m in ref:
        if m not in accepted and m not in inflight_open:
            problems.append(f"gate: received {m}, neither accepted nor in flight in a writer killed in the open"
                            + (" (its writer was killed BLOCKED behind the closed gate)" if m in inflight_closed
                               else ""))
    if st.group["sent"] != len(ref):
        problems.append(f"status sent={st.group['sent']}, the gate received {len(ref)}")
    delivered_inflight = sum(1 for m in inflight_open if m in pos)

    lost = 0
    lost_by = {True: 0, False: 0}   # messages lost to killed readers, by: was the reader blocked in read when signalled
    seqs = {"gate": ref}
    for n in simple:
        incs = incarnations[n]
        rlogs = [ck.parse_reader_log(i["worker"].log, WSPAN) for i in incs]
        problems += ck.check_reader_health(n, rlogs[-1:])                 # the last one reached end of file
        problems += ck.check_reader_health(n, rlogs[:-1], need_eof=False)  # the killed ones: no corruption
        seq = []
        for i, rl in enumerate(rlogs):
            problems += ck.check_received_were_accepted(f"{n}[{i}]", rl.msgs, accepted, attempts)
            seq += [m for m, _ in rl.msgs]
        seqs[n] = seq
        problems += ck.check_no_duplicates(n, seq)
        problems += ck.check_follows(n, seq, pos)
        # walk the gate's order: gaps only where a reader was killed, at most one per reader killed in the open
        j = 0
        allowance = 0
        last_killed = None
        broken = False

        def lose(count, before):
            """count messages of ref[j:j+count] were taken by killed readers: each was written before the
            reader that took it was gone."""
            nonlocal lost
            lost += count
            lost_by[last_killed["worker"].info["blocked_at_signal"]] += count
            for m in ref[j:j + count]:
                a = attempts.get(m)
                if a is not None and a.t0 > last_killed["worker"].exit_ns:
                    problems.append(f"{n}: {m} is missing, but its write began {(a.t0 - last_killed['worker'].exit_ns) / 1e6:.1f}"
                                    f" ms after the killed reader was gone ({before})")

        for i, (inc, rl) in enumerate(zip(incs, rlogs)):
            for m, _ in rl.msgs:
                p = pos.get(m)
                if p is None or broken:
                    break
                gap = p - j
                if gap > allowance:
                    problems.append(f"{n}: {gap} messages missing before {m} (reader #{i}), at most {allowance} "
                                    f"may be lost to killed readers here; first missing {ref[j]}")
                    broken = True
                    break
                if gap:
                    lose(gap, f"before reader #{i}'s {m}")
                j = p + 1
                allowance = 0
            if inc["kind"] == "open":
                allowance += 1
                last_killed = inc
        if not broken:
            if len(ref) - j > allowance:
                problems.append(f"{n}: its readers stopped at {j} of {len(ref)} messages")
            elif len(ref) > j:
                lose(len(ref) - j, "at the end")
    # rs: two readers at a time share its queue; between all of them, the group order less at most one
    # message per reader killed in the open, each message once, each reader in the group order
    rs_incs = incarnations["rs.a"] + incarnations["rs.b"]
    rs_logs = [ck.parse_reader_log(i["worker"].log, WSPAN) for i in rs_incs]
    problems += ck.check_reader_health("rs", [rs_logs[len(incarnations["rs.a"]) - 1], rs_logs[-1]])
    problems += ck.check_reader_health("rs", rs_logs, need_eof=False)
    rs_union = []
    for i, rl in enumerate(rs_logs):
        ids = [m for m, _ in rl.msgs]
        problems += ck.check_received_were_accepted(f"rs[{i}]", rl.msgs, accepted, attempts)
        problems += ck.check_follows(f"rs[{i}]", ids, pos)
        rs_union += ids
    problems += ck.check_no_duplicates("rs", rs_union)
    rs_set = set(rs_union)
    rs_missing = [m for m in ref if m not in rs_set]
    rs_open_kills = sum(1 for i in rs_incs if i["kind"] == "open")
    if len(rs_missing) > rs_open_kills:
        problems.append(f"rs: {len(rs_missing)} messages missing (e.g. {rs_missing[:5]}), but only {rs_open_kills} "
                        "of its readers were killed in the open")
    lost += len(rs_missing)
    problems += ck.check_pairwise_order(seqs)

    for m in inflight_closed:
        for n, seq in seqs.items():
            if m in set(seq):
                problems.append(f"{n} received {m}, written by a writer killed while blocked behind the closed gate")
                break

    exit_times = sorted(k["exit_s"] for k in kills)
    by = lambda **f: sum(1 for k in kills if all(k[a] == b for a, b in f.items()))  # noqa: E731
    figures = dict(
        seed=seed, faults=len(kills), closed_phases=closed_phases,
        reader_kills=by(role="reader"), reader_kills_blocked=by(role="reader", blocked=True),
        writer_kills=by(role="writer"), writer_kills_blocked=by(role="writer", blocked=True),
        writer_kills_in_closed_phase=by(role="writer", kind="closed"),
        sigint=by(sig="SIGINT"), sigkill=by(sig="SIGKILL"),
        max_exit_ms=round(1000 * exit_times[-1], 1) if exit_times else None,
        p50_exit_ms=round(1000 * exit_times[len(exit_times) // 2], 1) if exit_times else None,
        p99_exit_ms=round(1000 * exit_times[int(len(exit_times) * 0.99)], 1) if exit_times else None,
        messages_in_group_order=len(ref), accepted=len(accepted),
        deliveries_checked=sum(len(s) for s in seqs.values()) + len(rs_union),
        lost_to_killed_readers=lost, lost_by_readers_blocked_in_read=lost_by[True],
        lost_by_readers_not_blocked=lost_by[False], inflight_of_killed_writers_delivered=delivered_inflight,
        inflight_of_blocked_killed_writers=len(inflight_closed),
        ghost_checks=len(ghost_checks), blocked_writers_at_end=final_blocked, fault_phase_s=round(t_faults, 1), problems=len(problems),
    )
    record(**figures)
    assert not problems, f"{len(problems)} problems (seed {seed}):\n" + "\n".join(problems[:25])
