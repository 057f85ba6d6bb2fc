"""Part 1c: everything in one run, under one checker (issue 14, item 1).

test_stress.py, test_filter_stress.py and test_peer_stress.py each prove one
family of paths; here they all run at once, on one mount, so that what a
member must get depends on every setting and every kind of writer together.
A `message=write` group holds:

- record writers (mcw) on `send` (one also sends exactly max_message and
  max_message + 1) and as members, one with loopback=1 and a filter; framed
  batch writers (mcfw: batches of 1 .. K records, short writes resent) on
  `frames/send` as uid 65534 and on a member's `frames/NAME`;
- members with send_to_peer=1 (one writing records, one batches, one with a
  filter and a capacity changed under load), each with a reader of its
  `peers/NAME` (one slow, so that its full peer queue holds its writes back);
- private writers on `peers/NAME`: to a talker, to a filtered member that
  matches few messages (filters do not apply to private messages) and, as
  uid 65534, to a drop-when-full filtered member read framed (every member
  that gets private messages is read framed: a drop's gap is counted among
  sequence numbers, so each private message's number must be seen);
- members read in the record view, the framed view or both at once (the
  same member shared by record and framed readers), in parts or whole;
  filtered ones (`*`, `>`, literals, `*.*`, patterns flipping all along, one
  full and matching nothing, never read); drop-when-full ones; members whose
  capacity and drop_when_full change; members joining and leaving all along,
  some read framed, some with a filter set after they joined;
- SIGUSR1 and SIGSTOP/SIGCONT to every writer and reader at random.

Beside it, on the same mount and at the same time, a `message=line` group:
line writers (mclw: lines cut into writes at random, short writes resent,
tails flushed by fsync and close) on `send`, as a talker (its peer reads its
lines) and privately to a member whose filter matches nothing; readers in
both views, a drop-when-full one, one shared by both views, a filtered one.

The checker (checker.py, one model of recipients: Traffic.addressed) proves
over the run:
- everything received was accepted and is intact, nobody got a message
  twice, a failed write and the records of a failed batch reached nobody;
- exactly once to every present, matching, non-dropping recipient: every
  member present throughout got exactly the group messages addressed to it
  (its filter, its own messages without loopback) in the group order, and
  exactly the private messages written to it; a dropping member those less
  exactly its `dropped`; a peer exactly its talker's messages; a member that
  came and went a contiguous run of what it matched, holding every message
  written entirely while it was there;
- one order for every pair of members over their common messages, and each
  writer's order;
- frame metadata: sequence numbers strictly increasing in every framed
  reader, one per message across members, in the group order, within 1 ..
  sent; each frame the real writer's pid, uid, gid and member name, the
  private flag exactly on private messages; a drop-when-full member's
  `dropped` fields the gaps among the messages addressed to it (matching
  group messages and its private ones), adding up to its status;
- counters consistent in every status snapshot (checker.check_snapshot), and
  at the end: `sent` counts every message accepted (group and private), no
  writer waits, no peer queue holds anything.
"""

from __future__ import annotations

import os
import random
import shutil
import string
import time

import pytest

import checker as ck
import procs
import stress
import topicfilter
from helpers import MAX_MESSAGE
from stress import NOBODY, WSPAN, ck_end

BIG = dict(bufsize=2 << 20)
HALVES = (",".join(string.ascii_uppercase[:13]), ",".join(string.ascii_uppercase[13:]))
LETTERS = ",".join(string.ascii_uppercase)
LOWER = ",".join(string.ascii_lowercase[:16])


def line_start(mid: tuple, length: int) -> bytes:
    """The head of a line message (c/payload.h): the topic of a line is the
    whole line, one token with no '.', so this head decides what the line
    group's patterns (`*` and a literal) match."""
    return b"L%04x:%08x:%08x:" % (mid[0], mid[1], length)


@pytest.mark.timeout(420)
def test_everything_in_one_run_one_checker(mount_factory, rbin, scale, record, tmp_path, workdir_base):
    seed = stress.run_seed()
    rng = random.Random(seed)
    logs = tmp_path
    deadline_ms = int(scale.mixed_time_limit_s * 1000)
    mnt = mount_factory(options="allow_other")   # writers as uid 65534
    g = mnt.group("mixed")
    lg = mnt.group("lines")
    lg.set(message="line")

    # Full before anyone else joins (nobody else has its message), then matching nothing: it
    # must hold nobody back. Its message is the group's number 1.
    g.member("stuck", capacity=1)
    g.send(b"fill")
    g.ctl("member stuck subscribe=never.matches.this")

    # name -> (settings, subscribe=, [member readers], peer reader or None)
    members = {
        "anchor": ({}, "", [BIG], None),
        "fanchor": ({}, "", [dict(framed=True, variable=True)], None),
        "parts": ({}, "", [dict(variable=True)], None),
        "tight": ({"capacity": 4}, "", [BIG], None),                         # capacity 1 .. 8 under load
        "bytes": ({"queue_bytes": 65536}, "", [dict(variable=True)], None),
        "drop1": ({"capacity": 2, "drop_when_full": 1}, "", [dict(BIG, delay_us=300)], None),
        # a framed reader with small buffers beside record readers (an EMSGSIZE read consumes nothing)
        "shared": ({"capacity": 8}, "", [BIG, dict(variable=True), dict(framed=True, variable=True)], None),
        "flip": ({"capacity": 4}, "", [dict(variable=True, delay_us=150)], None),   # capacity, drop_when_full
        "star": ({}, "*", [dict(variable=True)], None),
        "rest": ({"capacity": 16}, ">", [dict(framed=True, variable=True)], None),
        # filtered, read in both views
        "letters": ({"capacity": 4}, LETTERS, [dict(variable=True), dict(framed=True, variable=True)], None),
        # filtered (it matches few messages), and private messages written to it, which it gets all
        "digits": ({"capacity": 8}, ",".join(string.digits) + ",*.*", [dict(framed=True, variable=True)], None),
        "toggle": ({"capacity": 4}, HALVES[0], [dict(variable=True)], None),        # flips between the halves
        # drop-when-full, filtered, read framed slowly; private messages from uid 65534
        "fdrop": ({"capacity": 3, "drop_when_full": 1}, LOWER, [dict(framed=True, delay_us=300)], None),
        "wm0": ({"loopback": 1}, "*", [dict(variable=True)], None),
        "wm1": ({"capacity": 16}, ">", [BIG], None),
        "fm0": ({}, "", [dict(framed=True, variable=True)], None),
        # talkers: pt0 filtered, its capacity (and its peer's) 1 .. 4 under load; pt1's peer read slowly
        "pt0": ({"send_to_peer": 1, "capacity": 2}, "*", [dict(variable=True)], dict(variable=True)),
        "pt1": ({"send_to_peer": 1}, "", [dict(framed=True)], dict(BIG, delay_us=400)),
    }
    for name, (settings, patterns, _, _) in members.items():
        g.member(name, **settings)
        if patterns:
            g.ctl(f"member {name} subscribe={patterns}")
    spec = {n: ck.Member(n, p, loopback=bool(s.get("loopback")), drops=bool(s.get("drop_when_full")) or n == "flip",
                         either=",".join(HALVES) if n == "toggle" else None)
            for n, (s, p, _, _) in members.items()}
    talkers = [n for n, (s, _, _, _) in members.items() if s.get("send_to_peer")]
    # every group message reaches them, and nothing else: one delivered + dropped in every snapshot
    plain = ["anchor", "fanchor", "parts", "tight", "bytes", "drop1", "shared", "flip"]
    bounded = ["star", "rest", "letters", "toggle"]

    lmembers = {
        "lanchor": ({}, "", [dict(BIG, text=True)], None),
        "lframed": ({}, "", [dict(framed=True, variable=True, text=True)], None),
        "lparts": ({}, "", [dict(variable=True, text=True)], None),                 # capacity 1 .. 8 under load
        "ldrop": ({"capacity": 2, "drop_when_full": 1}, "", [dict(framed=True, text=True, delay_us=300)], None),
        "lshared": ({"capacity": 8}, "", [dict(variable=True, text=True), dict(framed=True, variable=True, text=True)],
                    None),
        "lstar": ({"capacity": 4}, "*", [dict(BIG, text=True)], None),
        "lw0": ({"send_to_peer": 1}, "", [dict(variable=True, text=True)], dict(variable=True, text=True)),
        # matches no line: gets only the private lines written to it
        "lquiet": ({"capacity": 4}, "none", [dict(framed=True, variable=True, text=True)], None),
    }
    for name, (settings, patterns, _, _) in lmembers.items():
        lg.member(name, **settings)
        if patterns:
            lg.ctl(f"member {name} subscribe={patterns}")
    lspec = {n: ck.Member(n, p, drops=bool(s.get("drop_when_full"))) for n, (s, p, _, _) in lmembers.items()}
    ltalkers = ["lw0"]

    # uid 65534 writes on frames/send and privately to fdrop
    os.chmod(g.p("send"), 0o222)
    os.chmod(g.p("peers"), 0o711)
    os.chmod(g.p("peers/fdrop"), 0o622)
    nobody = stress.AsNobody(rbin, workdir_base, f"mixed-{seed}")

    workers: list[procs.Worker] = []
    readers: dict[str, list[procs.Worker]] = {}
    transients: list[dict] = []
    threads = stress.Threads()
    stop = threads.stop
    try:
        for grp, mem in ((g, members), (lg, lmembers)):
            for name, (_, _, opts, peer) in mem.items():
                readers[name] = []
                for k, o in enumerate(opts):
                    readers[name].append(stress.start_reader(rbin, grp.p, name, str(logs / f"r-{name}-{k}.log"),
                                                             rng.randrange(1 << 30), o))
                    workers.append(readers[name][-1])
                if peer is not None:
                    readers["peer:" + name] = [stress.start_reader(rbin, grp.p, name, str(logs / f"p-{name}.log"),
                                                                   rng.randrange(1 << 30), dict(peer, peer=True))]
                    workers += readers["peer:" + name]

        # --- settings changing under load --------------------------------------------------
        tuned = {"capacity": 0, "drop_when_full": 0, "subscribe": 0}

        def tune():
            trng = random.Random(rng.randrange(1 << 30))
            while not stop.is_set():
                time.sleep(trng.uniform(0.01, 0.04))
                r = trng.random()
                if r < 0.25:
                    g.configure("tight", capacity=trng.randint(1, 8))
                elif r < 0.5:
                    g.configure("pt0", capacity=trng.randint(1, 4))
                elif r < 0.75:
                    lg.configure("lparts", capacity=trng.randint(1, 8))
                else:
                    g.configure("flip", capacity=trng.randint(1, 8), drop_when_full=trng.randint(0, 1))
                    tuned["drop_when_full"] += 1
                    continue
                tuned["capacity"] += 1

        # --- writers -----------------------------------------------------------------------
        wids: dict[int, procs.Worker] = {}
        lwids: dict[int, procs.Worker] = {}
        mcw = dict(wspan=WSPAN, count=scale.mixed_attempts_per_writer, deadline_ms=deadline_ms, maxmsg=MAX_MESSAGE,
                   nonblock_pct=25, large_pm=2, medium_pct=8)
        mcfw = dict(wspan=WSPAN, count=scale.mixed_records_per_writer, deadline_ms=deadline_ms, maxmsg=MAX_MESSAGE,
                    nonblock_pct=25, large_pm=1, medium_pct=6)
        # (label, kind, file, member it sends as or writes to privately, as uid 65534)
        plan = [("ws0", "record", "send", "send", False), ("ws1", "record", "send", "send", False),
                ("wm0", "record", "wm0", "wm0", False), ("wm1", "record", "wm1", "wm1", False),
                ("fs0", "batch", "frames/send", "send", True), ("fm0", "batch", "frames/fm0", "fm0", False),
                ("pt0", "record", "pt0", "pt0", False), ("pt1", "batch", "frames/pt1", "pt1", False),
                ("pv-pt1", "private", "peers/pt1", "pt1", False),
                ("pv-digits", "private", "peers/digits", "digits", False),
                ("pv-fdrop", "private", "peers/fdrop", "fdrop", True)]
        usr1 = {"writer": 0, "reader": 0}
        stops = {"writer": 0, "reader": 0}
        samples = {"n": 0}
        lsamples = {"n": 0}
        snapshot_problems: list[str] = []
        writers: list[procs.Worker] = []
        t_start = time.monotonic()
        # members joining and leaving: some given a filter once they are in, some read framed
        live_readers: list[procs.Worker] = []
        threads.start(stress.churn, stop, random.Random(rng.randrange(1 << 30)), g, rbin, logs, scale.churn_max_live,
                      transients, live_readers, patterns=("", "", "*", ">", LETTERS), framed_share=0.3)
        threads.start(tune)
        threads.start(stress.flip_patterns, stop, g, "toggle", HALVES, tuned, every=0.01)
        threads.start(stress.inject, stop, random.Random(rng.randrange(1 << 30)),
                      lambda: writers + [r for rs in readers.values() for r in rs] + list(live_readers), usr1, stops)
        threads.start(stress.sample, stop, g, samples, snapshot_problems, None, 0.03, plain=plain, bounded=bounded,
                      senders=sum(1 for p in plan if p[1] != "private"), talkers=talkers)
        # One waiting write per line writer at most: fsync holds its writer while its tail
        # waits, and a tail sent by the last close waits only once its writer is done.
        threads.start(stress.sample, stop, lg, lsamples, snapshot_problems, None, 0.03,
                      plain=["lanchor", "lframed", "lparts", "ldrop", "lshared"], bounded=["lstar"], senders=3,
                      talkers=ltalkers)
        for wid, (label, kind, path, member, as_nobody) in enumerate(plan):
            info = dict(label=label, kind=kind, **({"private_to": member} if kind == "private" else {"member": member}))
            log = nobody.log(f"w-{label}.log") if as_nobody else str(logs / f"w-{label}.log")
            user = dict(as_user=NOBODY, uid=NOBODY, binary=nobody.bin["mcfw" if kind == "batch" else "mcw"]) \
                if as_nobody else {}
            if kind == "batch":
                w = procs.framed_writer(rbin, g.p(path), wid, log, seed=rng.randrange(1 << 30),
                                        pause_us=rng.choice([0, 100, 300]), max_batch=rng.choice([8, 32, 64]),
                                        **mcfw, **user, **info)
            else:
                w = procs.writer(rbin, g.p(path), wid, log, seed=rng.randrange(1 << 30),
                                 pause_us=rng.choice([0, 0, 100, 300]), edges=(label == "ws0"), **mcw, **user, **info)
            wids[wid] = w
            workers.append(w)
        # line writers: on send (one ends with a tail flushed by close), as the talker lw0, and
        # privately to lquiet
        for label, path, member, close_flush in (("ls0", "send", "send", False), ("ls1", "send", "send", True),
                                                 ("lw0", "lw0", "lw0", True), ("lp", "peers/lquiet", None, False)):
            wid = len(wids) + len(lwids)
            info = dict(label=label, **({"member": member} if member else {"private_to": "lquiet"}))
            lwids[wid] = procs.line_writer(rbin, lg.p(path), wid, str(logs / f"w-{label}.log"),
                                           count=scale.mixed_lines_per_writer, deadline_ms=deadline_ms,
                                           seed=rng.randrange(1 << 30), nonblock_pct=25,
                                           pause_us=rng.choice([0, 100]), fsync_pct=3, close_flush=close_flush,
                                           **info)
            workers.append(lwids[wid])
        writers += list(wids.values()) + list(lwids.values())
        for w in writers:
            code = w.wait(scale.mixed_time_limit_s + 60)
            assert code == 0, f"writer {w.info['label']} exited with {code}: {w.stderr()}"
        t_writers = time.monotonic() - t_start
        threads.finish()

        # A line flushed by close(2) enters the group once the daemon sees the release, which may
        # come after close returned: wait for every line; then for every queue to drain (the peers'
        # included), take the last snapshots, and let every member go: readers reach end of file.
        for w in wids.values():
            if w.info.get("uid") == NOBODY:
                shutil.copy(w.log, logs)   # kept with the other logs
        ltraffic, lwlogs, lproblems, lfails = stress.writer_side(lwids)
        deadline = time.monotonic() + 10
        while lg.status().group["sent"] < len(ltraffic.accepted) and time.monotonic() < deadline:
            time.sleep(0.02)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(m["queued"] == 0 and m["peer_queued"] == 0 for grp in (g, lg)
                   for n, m in grp.status().members.items() if n != "stuck"):
                break
            time.sleep(0.05)
        st = g.status()
        lst = lg.status()
        for name in list(members) + ["stuck"]:
            os.unlink(g.p(name))
        for name in lmembers:
            os.unlink(lg.p(name))
        stress.wait_readers([r for rs in readers.values() for r in rs] + [t["reader"] for t in transients])
        t_total = time.monotonic() - t_start
    finally:
        stop.set()
        procs.stop_all(workers + [t["reader"] for t in transients if "reader" in t])

    # --- the checker: the record group ---------------------------------------------------
    problems: list[str] = list(dict.fromkeys(snapshot_problems))
    traffic, wlogs, p, fails = stress.writer_side(wids)
    problems += p
    accepted, attempts = traffic.accepted, traffic.attempts
    problems += ck.check_max_message_edges(wlogs[0], MAX_MESSAGE)

    got = {name: [stress.parse_log(r) for r in rs] for name, rs in readers.items()}
    lgot = {n: got.pop(n) for n in list(got) if n.removeprefix("peer:") in lmembers}
    seqs, p = stress.received(got, traffic, transients)
    problems += p
    ref, p = stress.check_anchor(seqs, traffic, "anchor")
    problems += p
    if st.group["sent"] != len(accepted) + 1:
        problems.append(f"status sent={st.group['sent']}, but {len(accepted)} messages (and the fill) were accepted")
    if st.group["blocked_writers"] != 0:
        problems.append(f"blocked_writers={st.group['blocked_writers']} after every writer finished")

    dropped = {}
    for name, m in spec.items():
        p, missed = ck.check_member(m, got[name], ref, traffic, st.members.get(name))
        problems += p
        if m.drops:
            dropped[name] = missed
    stuck = st.members["stuck"]
    if (stuck["queued"], stuck["delivered"], stuck["dropped"], stuck["full"]) != (1, 1, 0, 1):
        problems.append(f"stuck: queued={stuck['queued']} delivered={stuck['delivered']} dropped={stuck['dropped']}, "
                        "expected its one message and nothing since")
    for name in talkers:
        problems += ck.check_peer(name, seqs["peer:" + name], ref, {w for w, n in traffic.sender.items() if n == name})
    for name, m in st.members.items():
        if m["peer_queued"] != 0:
            problems.append(f"{name}: peer_queued={m['peer_queued']} once its reader drained it")

    framed_readers = dict(got) | {t["name"]: [t["log"]] for t in transients}
    p, framed = ck.check_framed_view(framed_readers, ref, st.group["sent"], stress.creds_of(wids), traffic, spec,
                                     st.members, before={1})
    problems += p

    timeline = ck.Timeline(ref, attempts)
    must_have = 0
    for t in transients:
        want = (lambda x, pat=t["patterns"]: traffic.matches(pat, x)) if t["patterns"] else None
        p, needed = ck.check_transient(t["name"], seqs[t["name"]], timeline, t, want)
        problems += p
        must_have += needed
    problems += ck.check_pairwise_order(seqs)

    # --- the checker: the line group --------------------------------------------------------
    problems += lproblems
    ltraffic.starts = {m: line_start(m, n) for m, n in ltraffic.accepted.items()}
    for wid, wl in lwlogs.items():
        if len(wl.accepted) != (max(wl.attempts) + 1 if wl.attempts else 0):
            problems.append(f"line writer {wid}: {len(wl.accepted)} lines delivered of {len(wl.attempts)}")
    lseqs, p = stress.received(lgot, ltraffic)
    problems += p
    lref, p = stress.check_anchor(lseqs, ltraffic, "lanchor", "lines")
    problems += p
    if lst.group["sent"] != len(ltraffic.accepted):
        problems.append(f"line group: sent={lst.group['sent']}, {len(ltraffic.accepted)} lines were written")
    if lst.group["blocked_writers"] != 0:
        problems.append(f"line group: blocked_writers={lst.group['blocked_writers']} after every writer finished")
    for name, m in lspec.items():
        p, missed = ck.check_member(m, lgot[name], lref, ltraffic, lst.members.get(name))
        problems += p
        if m.drops:
            dropped[name] = missed
    for name in ltalkers:
        problems += ck.check_peer(name, lseqs["peer:" + name], lref,
                                  {w for w, n in ltraffic.sender.items() if n == name})
    # a line flushed by fsync or close (mclw's Z lines) carries its writer too
    p, lframed = ck.check_framed_view(lgot, lref, lst.group["sent"], stress.creds_of(lwids), ltraffic, lspec,
                                      lst.members)
    problems += p
    problems += ck.check_pairwise_order(lseqs)

    # --- figures -------------------------------------------------------------------------
    def deliveries(readers_of, framed_view: bool) -> int:
        return sum(len(r.msgs) for rl in readers_of for r in rl if isinstance(r, ck.FrameLog) == framed_view)

    all_record = list(got.values()) + [[t["log"]] for t in transients]
    ends = {wid: ck_end(w.log) for wid, w in wids.items()}
    lends = [ck_end(w.log) for w in lwids.values()]
    sizes = [accepted[m] for m in ref]
    filtered = {n: m.patterns or m.either for n, m in spec.items() if m.patterns or m.either}
    figures = dict(
        seed=seed, writers=len(wids), line_writers=len(lwids),
        members=len(members) + 1, line_members=len(lmembers), transient_members=len(transients),
        transient_filtered=sum(1 for t in transients if t["patterns"]),
        transient_framed=sum(1 for t in transients if t["framed"]), transient_must_have_checked=must_have,
        attempts=len(attempts), accepted=len(accepted), failed=fails,
        private_accepted=sum(1 for m in accepted if traffic.private(m)),
        large_msgs=sum(1 for s in sizes if s > 65536), max_size=max(sizes, default=0), bytes_accepted=sum(sizes),
        deliveries_checked=sum(len(r.msgs) for rl in all_record + list(lgot.values()) for r in rl),
        record_view_deliveries=deliveries(all_record, False), framed_view_deliveries=deliveries(all_record, True),
        peer_deliveries=sum(len(seqs["peer:" + n]) for n in talkers),
        partial_read_parts=sum((r.eof or {}).get("parts", 0) for rl in all_record for r in rl),
        framed_batches=sum(e.get("batches", 0) for wid, e in ends.items() if wids[wid].info["kind"] == "batch"),
        framed_short_writes_resent=sum(e.get("shorts", 0) for wid, e in ends.items()
                                       if wids[wid].info["kind"] == "batch"),
        frames_checked=framed["frames"], private_frames_checked=framed["private_frames"],
        frame_emsgsize_reads=framed["emsgsize"], frame_dropped_checked=framed["frame_dropped"],
        frame_uids=framed["users"], dropped=dropped,
        filtered_members=len(filtered), patterns=sum(len(topicfilter.parse(p)) for p in filtered.values()),
        matched={n: sum(1 for x in ref if traffic.addressed(spec[n], x)) for n in filtered if not spec[n].either},
        talkers=len(talkers) + len(ltalkers),
        lines=len(ltraffic.accepted), private_lines=sum(1 for m in ltraffic.accepted if ltraffic.private(m)),
        line_deliveries_checked=sum(len(r.msgs) for rl in lgot.values() for r in rl),
        line_record_view_deliveries=deliveries(lgot.values(), False),
        line_framed_view_deliveries=deliveries(lgot.values(), True),
        line_peer_deliveries=len(lseqs["peer:lw0"]),
        line_partial_read_parts=sum((r.eof or {}).get("parts", 0) for rl in lgot.values() for r in rl),
        line_writes=sum(e.get("writes", 0) for e in lends), line_short_writes=sum(e.get("shorts", 0) for e in lends),
        line_tails_flushed_by_fsync=sum(e.get("fsyncs", 0) for e in lends),
        line_tails_flushed_by_close=sum(e.get("closeflush", 0) for e in lends),
        line_failed=lfails,
        sigusr1_writers=usr1["writer"], sigusr1_readers=usr1["reader"],
        sigstop_writers=stops["writer"], sigstop_readers=stops["reader"],
        settings_changes=tuned, status_snapshots_checked=samples["n"] + lsamples["n"],
        writers_s=round(t_writers, 2), total_s=round(t_total, 2),
    )
    stress.conclude(mnt, record, figures, problems, seed)
