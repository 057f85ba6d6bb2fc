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

import os
import random
import shutil
import signal
import time

import pytest

import checker as ck
import procs
import stress
from helpers import MAX_MESSAGE
from stress import NOBODY, WSPAN, ck_end, is_asan, parse_log, start_reader


@pytest.mark.timeout(420)
def test_stress_many_writers_readers_members_checked(mount_factory, rbin, scale, record, tmp_path, workdir_base):
    seed = stress.run_seed()
    rng = random.Random(seed)
    logs = tmp_path
    # allow_other: one framed writer runs as another user
    mnt = mount_factory(options="allow_other")
    g = mnt.group("stress")
    # A group of line messages beside it: writers that split and merge lines.
    lg = mnt.group("lines")
    lg.set(message="line")

    # --- members ------------------------------------------------------------------
    # name -> (member settings, [reader options...])
    permanent = {
        "anchor": ({}, [dict(bufsize=2 << 20)]),
        "parts": ({}, [dict(variable=True)]),
        "tight": ({"capacity": 4}, [dict(bufsize=2 << 20)]),
        "bytes": ({"queue_bytes": 65536}, [dict(variable=True)]),
        "drop1": ({"capacity": 2, "drop_when_full": 1}, [dict(bufsize=2 << 20, delay_us=300)]),
        "drop2": ({"capacity": 16, "queue_bytes": 8192, "drop_when_full": 1}, [dict(variable=True, delay_us=100)]),
        # a framed reader with small buffers among record readers: a framed read that fails with
        # EMSGSIZE consumes nothing, and the message it left goes to whoever reads next
        "shared": ({"capacity": 8}, [dict(bufsize=2 << 20), dict(variable=True), dict(framed=True, variable=True)]),
        # settings changed during the run by the tuner: capacity 1..8, drop_when_full on and off
        "flip": ({"capacity": 4}, [dict(variable=True, delay_us=150)]),
        # read through G/frames/: the group order with sequence numbers, and drops counted per frame
        "fanchor": ({}, [dict(framed=True, variable=True)]),
        "fdrop": ({"capacity": 3, "drop_when_full": 1}, [dict(framed=True, delay_us=300)]),
        # a framed batch writer's own member, read framed too
        "fm0": ({}, [dict(framed=True, variable=True)]),
    }
    writer_members = [f"wm{i}" for i in range(scale.member_writers)]
    for i, name in enumerate(writer_members):
        permanent[name] = ({"loopback": 1} if i == 0 else {}, [dict(variable=bool(i % 2))])
    for name, (settings, _) in permanent.items():
        g.member(name, **settings)
    lpermanent = {
        "lanchor": ({}, [dict(bufsize=2 << 20, text=True)]),
        "lparts": ({}, [dict(variable=True, text=True)]),
        "lframed": ({}, [dict(framed=True, variable=True, text=True)]),
        "ldrop": ({"capacity": 2, "drop_when_full": 1}, [dict(framed=True, text=True, delay_us=300)]),
        "lshared": ({"capacity": 8}, [dict(variable=True, text=True), dict(framed=True, variable=True, text=True)]),
        "lw0": ({}, [dict(variable=True, text=True)]),
    }
    for name, (settings, _) in lpermanent.items():
        lg.member(name, **settings)
    spec = {n: ck.Member(n, loopback=bool(s.get("loopback")), drops=bool(s.get("drop_when_full")) or n == "flip")
            for n, (s, _) in permanent.items()}
    lspec = {n: ck.Member(n, drops=bool(s.get("drop_when_full"))) for n, (s, _) in lpermanent.items()}
    # The framed writer on frames/send runs as another user: its frames must say so.
    os.chmod(g.p("send"), 0o222)
    nobody = stress.AsNobody(rbin, workdir_base, f"stress-{seed}", names=("mcfw",))
    nobody_log = nobody.log("w-fs0.log")

    workers: list[procs.Worker] = []
    readers: dict[str, list[procs.Worker]] = {}
    threads = stress.Threads()
    stop = threads.stop
    try:
        for grp, perm in ((g, permanent), (lg, lpermanent)):
            for name, (_, opts) in perm.items():
                readers[name] = []
                for k, o in enumerate(opts):
                    w = start_reader(rbin, grp.p, name, str(logs / f"r-{name}-{k}.log"), rng.randrange(1 << 30), o)
                    readers[name].append(w)
                    workers.append(w)

        # --- churn: members join and leave during the run ----------------------------
        transients: list[dict] = []
        live_readers: list[procs.Worker] = []

        # --- SIGUSR1 at random: interrupted writes deliver nothing, interrupted reads consume nothing
        usr1 = {"writer": 0, "reader": 0}
        stops = {"writer": 0, "reader": 0}
        writers: list[procs.Worker] = []

        def pool():
            return writers + [r for rs in readers.values() for r in rs] + list(live_readers)

        # --- settings change under load; status snapshots must be consistent ----------
        tuned = {"capacity": 0, "drop_when_full": 0}
        samples = {"n": 0}
        snapshot_problems: list[str] = []
        not_senders = [n for n in permanent if n not in writer_members and n != "fm0"]

        def tune():
            trng = random.Random(rng.randrange(1 << 30))
            while not stop.is_set():
                time.sleep(trng.uniform(0.01, 0.05))
                if trng.random() < 0.5:
                    g.configure("tight", capacity=trng.randint(1, 8))
                    tuned["capacity"] += 1
                else:
                    g.configure("flip", capacity=trng.randint(1, 8), drop_when_full=trng.randint(0, 1))
                    tuned["drop_when_full"] += 1

        # --- writers -------------------------------------------------------------------
        wids = {}
        targets = [("send", f"ws{i}") for i in range(scale.send_writers)] + [(m, m) for m in writer_members]
        n_main_writers = len(targets) + 2   # and the two framed writers
        t_start = time.monotonic()
        threads.start(stress.churn, stop, random.Random(rng.randrange(1 << 30)), g, rbin, logs, scale.churn_max_live,
                      transients, live_readers)
        threads.start(stress.inject, stop, random.Random(rng.randrange(1 << 30)), pool, usr1, stops)
        threads.start(tune)
        threads.start(stress.sample, stop, g, samples, snapshot_problems, None, 0.02,
                      plain=not_senders, sent_less=0, senders=n_main_writers)
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
        # framed batch writers: fs0 (uid 65534) on frames/send, fm0 on its member's frames/fm0
        for label, member, user in (("fs0", "send", NOBODY), ("fm0", "fm0", None)):
            wid = len(wids)
            log = nobody_log if user is not None else str(logs / f"w-{label}.log")
            w = procs.framed_writer(
                rbin, g.p("frames/" + member), wid, log, wspan=WSPAN, count=scale.framed_records_per_writer,
                deadline_ms=int(scale.stress_time_limit_s * 1000), seed=rng.randrange(1 << 30), maxmsg=MAX_MESSAGE,
                nonblock_pct=25, large_pm=1, medium_pct=6, pause_us=rng.choice([0, 100, 300]),
                max_batch=rng.choice([8, 32, 64]), as_user=user, binary=nobody.bin["mcfw"] if user is not None else None,
                label=label, member=member, uid=user or 0)
            wids[wid] = w
            writers.append(w)
            workers.append(w)
        # line writers in the message=line group: two on send (one ends with a line flushed by
        # close), one as member lw0
        lwids = {}
        for label, member, close_flush in (("ls0", "send", False), ("ls1", "send", True), ("lw0", "lw0", True)):
            wid = len(wids) + len(lwids)
            w = procs.line_writer(
                rbin, lg.p(member), wid, str(logs / f"w-{label}.log"), count=scale.line_messages_per_writer,
                deadline_ms=int(scale.stress_time_limit_s * 1000), seed=rng.randrange(1 << 30), nonblock_pct=25,
                pause_us=rng.choice([0, 100]), fsync_pct=3, close_flush=close_flush, label=label, member=member)
            lwids[wid] = w
            writers.append(w)
            workers.append(w)
        for w in writers:
            code = w.wait(scale.stress_time_limit_s + 60)
            assert code == 0, f"writer {w.info['label']} exited with {code}: {w.stderr()}"
        t_writers = time.monotonic() - t_start
        threads.finish()

        # --- the snapshot, then every member leaves: readers drain and reach end of file.
        # A line flushed by close(2) enters the group once the daemon sees the release, which
        # may come after close returned: wait until the group has taken every line written.
        shutil.copy(nobody_log, logs / "w-fs0.log")   # kept with the other logs
        ltraffic, lwlogs, lproblems, _ = stress.writer_side(lwids)
        deadline = time.monotonic() + 10
        while lg.status().group["sent"] < len(ltraffic.accepted) and time.monotonic() < deadline:
            time.sleep(0.02)
        st = g.status()
        lst = lg.status()
        for name in permanent:
            os.unlink(g.p(name))
        for name in lpermanent:
            os.unlink(lg.p(name))
        stress.wait_readers([r for rs in readers.values() for r in rs] + [t["reader"] for t in transients])
        t_total = time.monotonic() - t_start
    finally:
        threads.stop.set()
        procs.stop_all(workers + [t["reader"] for t in transients if "reader" in t])

    # --- the checker -------------------------------------------------------------------
    problems: list[str] = list(dict.fromkeys(snapshot_problems))
    traffic, wlogs, p, fails = stress.writer_side(wids)
    problems += p
    accepted, attempts = traffic.accepted, traffic.attempts
    problems += ck.check_max_message_edges(wlogs[0], MAX_MESSAGE)

    # everything received was accepted, intact; no duplicates; writer order
    got = {name: [parse_log(r) for r in rs] for name, rs in readers.items()}
    lgot = {n: got.pop(n) for n in lpermanent}
    seqs = {}
    for name, rl in got.items():
        problems += ck.check_received(name, rl, accepted, attempts)
        if len(rl) == 1:
            seqs[name] = [m for m, _ in rl[0].msgs]
    for t in transients:
        t["log"] = ck.parse_reader_log(t["reader"].log, WSPAN)
        problems += ck.check_received(t["name"], [t["log"]], accepted, attempts)
        seqs[t["name"]] = [m for m, _ in t["log"].msgs]

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
    for name, m in spec.items():
        problems += ck.check_member(m, got[name], ref, traffic, st.members.get(name))[0]
        dropped_total += st.members[name]["dropped"] if m.drops and name in st.members else 0
    p, framed_figures = ck.check_framed_view(got, ref, st.group["sent"], stress.creds_of(wids), traffic, spec,
                                             st.members)
    problems += p

    # members that came and went: a contiguous run, consistent with when they were members
    timeline = ck.Timeline(ref, attempts)
    must_have = 0   # (transient member, message written entirely while it was a member) pairs checked
    for t in transients:
        p, needed = ck.check_transient(t["name"], seqs[t["name"]], timeline, t)
        problems += p
        must_have += needed

    # every pair of members: common messages in the same order (directly)
    problems += ck.check_pairwise_order(seqs)
    # and against the group order
    for name, seq in seqs.items():
        if name != "anchor":
            problems += ck.check_follows(name, seq, pos)

    # --- the line group: every line once to every member, in one order ---------------
    problems += lproblems
    laccepted, lattempts = ltraffic.accepted, ltraffic.attempts
    for wid, wl in lwlogs.items():
        if len(wl.accepted) != (max(wl.attempts) + 1 if wl.attempts else 0):
            problems.append(f"line writer {wid}: {len(wl.accepted)} lines delivered of {len(wl.attempts)}")
    lseqs = {}
    for name, rl in lgot.items():
        problems += ck.check_received(name, rl, laccepted, lattempts)
        if len(rl) == 1:
            lseqs[name] = [m for m, _ in rl[0].msgs]
    lref = lseqs["lanchor"]
    if set(lref) != set(laccepted) or len(lref) != len(laccepted):
        problems.append(f"lanchor: received {len(lref)} lines, {len(laccepted)} were written")
    if lst.group["sent"] != len(laccepted):
        problems.append(f"line group: sent={lst.group['sent']}, {len(laccepted)} lines were written")
    ldropped = 0
    for name, m in lspec.items():
        problems += ck.check_member(m, lgot[name], lref, ltraffic, lst.members.get(name))[0]
        ldropped += lst.members[name]["dropped"] if m.drops and name in lst.members else 0
    # a line flushed by fsync or close (mclw's Z lines) carries its writer too
    p, lframed_figures = ck.check_framed_view(lgot, lref, lst.group["sent"], stress.creds_of(lwids), ltraffic,
                                              lspec, lst.members)
    problems += p
    problems += ck.check_pairwise_order(lseqs)

    deliveries = sum(len(r.msgs) for rl in got.values() for r in rl) + sum(len(t["log"].msgs) for t in transients)
    line_deliveries = sum(len(r.msgs) for rl in lgot.values() for r in rl)
    fwlogs = [ck_end(w.log) for w in list(wids.values())[-2:]]
    lwstats = [ck_end(w.log) for w in lwids.values()]
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
        framed_writers=2, framed_batches=sum(e.get("batches", 0) for e in fwlogs),
        framed_short_writes_resent=sum(e.get("shorts", 0) for e in fwlogs),
        frames_checked=framed_figures["frames"], frame_emsgsize_reads=framed_figures["emsgsize"],
        frame_dropped_checked=framed_figures["frame_dropped"], frame_uids=framed_figures["users"],
        line_writers=len(lwids), lines=len(laccepted), line_deliveries_checked=line_deliveries,
        line_frames_checked=lframed_figures["frames"], line_dropped=ldropped,
        line_writes=sum(e.get("writes", 0) for e in lwstats), line_short_writes=sum(e.get("shorts", 0) for e in lwstats),
        line_eintr=sum(e.get("eintr", 0) for e in lwstats), line_eagain=sum(e.get("eagain", 0) for e in lwstats),
        line_fsyncs=sum(e.get("fsyncs", 0) for e in lwstats),
        line_close_flushes=sum(e.get("closeflush", 0) for e in lwstats),
        sigusr1_writers=usr1["writer"], sigusr1_readers=usr1["reader"],
        sigstop_writers=stops["writer"], sigstop_readers=stops["reader"], reader_eintr=reader_eintr,
        settings_changes=tuned["capacity"] + tuned["drop_when_full"], status_snapshots_checked=samples["n"],
        writers_s=round(t_writers, 2), total_s=round(t_total, 2), problems=len(problems),
    )
    stress.conclude(mnt, record, figures, problems, seed)


@pytest.mark.timeout(60)
def test_a_member_read_through_frames_is_freed(mount_factory, mcastfs_bin):
    """A member read once through G/frames/ and then removed must leave
    nothing behind: under the address sanitizer, the daemon exits 0 at
    SIGTERM with no leak report (a record read of the same member does)."""
    if not is_asan(mcastfs_bin):
        pytest.skip("needs the daemon built with --sanitize=address (scripts/test runs this file so)")
    m = mount_factory()
    g = m.group("leak")
    g.member("a")
    g.send(b"one message")
    fd = os.open(g.p("frames/a"), os.O_RDONLY)
    try:
        assert os.read(fd, 4096)
    finally:
        os.close(fd)
    os.unlink(g.p("a"))
    code = m.stop(signal.SIGTERM, timeout=30.0)
    with open(m.stderr_path, errors="replace") as f:
        report = f.read()
    assert code == 0 and "LeakSanitizer" not in report, report[-2000:]

