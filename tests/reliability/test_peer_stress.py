"""Part 1, connected groups: stress with a checker on G/peers/.

One group; members that send with send_to_peer=1, their peer files read by
readers of their own (one of them slow, so that a full peer queue holds its
member's writes back), private writers on G/peers/NAME, an anonymous writer
on G/send, a drop-when-full member that gets private messages too, a member
whose capacity (and so its peer's) changes under load, and SIGUSR1 at random
to writers and readers. The writers are the C processes of the stress run
(mcw, mcfw); the readers mcr (record, peers included) and mcfr (frames).

The checker proves from the writers' and readers' logs:
- everything received was accepted and is intact, nothing twice, each
  writer's order kept; a failed write reached nobody;
- `anchor` received exactly the accepted group messages (the group order);
  `sent` counts them and the private messages;
- a peer reader received exactly what its member sent, in the group order:
  so every message a talker sent reached its peer and every other recipient,
  or none of them;
- a member received the group order less its own messages, and exactly the
  private messages written to it, in each private writer's order, and no
  other member received them; framed, they carry flags bit 0, no sender
  name and their writer's pid, uid and gid;
- one sequence number per message across every framed reader, strictly
  increasing in each, private messages included;
- the drop-when-full member: each frame's `dropped` is the number of
  messages addressed to it (group ones and its private ones) it missed
  before that frame, and they add up to its status `dropped`;
- status snapshots: no peer queue above its bound, `peer_full` when it is
  at it; at the end no writer waits and nothing is left in a peer queue.
"""

from __future__ import annotations

import bisect
import os
import random
import signal
import threading
import time

import pytest

import checker as ck
import procs
from test_stress import WSPAN, parse_log, show, stop_daemon


def check_exact_part(name: str, msgs, keep, expected) -> list[str]:
    """The messages of `msgs` that `keep` selects are exactly `expected`, in order."""
    return ck.check_exact(name, [m for m in msgs if keep(m)], expected)


def check_dropped_among(name: str, frames, addressed: list[int], status_dropped: int) -> list[str]:
    """A drop-when-full member that was there from the start: the `dropped`
    of each frame is the number of sequence numbers addressed to it (sorted:
    group messages and its private ones) between the previous frame and this
    one; with what it missed after the last frame they make its status."""
    out = []
    prev = 0
    total = 0
    for f in frames:
        gap = bisect.bisect_left(addressed, f.seq) - bisect.bisect_right(addressed, prev)
        if f.dropped != gap:
            out.append(f"{name}: frame {f.seq} ({f.mid}) says dropped={f.dropped}, it missed {gap} before it")
            break
        total += gap
        prev = f.seq
    trailing = len(addressed) - bisect.bisect_right(addressed, prev)
    if status_dropped != total + trailing:
        out.append(f"{name}: status dropped={status_dropped}, frames say {total} and {trailing} more after the last")
    return out


@pytest.mark.timeout(300)
def test_stress_peers_and_private_messages_checked(mount_factory, rbin, scale, record, tmp_path):
    seed = int(os.environ.get("RELIABILITY_SEED", "0")) or random.randrange(1, 1 << 30)
    rng = random.Random(seed)
    logs = tmp_path
    mnt = mount_factory()
    g = mnt.group("connected")
    attempts = max(300, scale.attempts_per_writer // 2)
    deadline_ms = int(scale.stress_time_limit_s * 1000)

    # name -> (settings, reader of the member, reader of its peer or None)
    members = {
        "anchor": ({}, dict(framed=True, variable=True), None),
        "pt0": ({"send_to_peer": 1}, dict(variable=True), dict(variable=True)),
        # its peer is read slowly: pt1's writes wait for it
        "pt1": ({"send_to_peer": 1}, dict(framed=True), dict(bufsize=2 << 20, delay_us=400)),
        # small queues (its peer's too), changed under load
        "ptight": ({"send_to_peer": 1, "capacity": 2}, dict(framed=True, variable=True), dict(variable=True)),
        "pdrop": ({"capacity": 2, "drop_when_full": 1}, dict(framed=True, delay_us=300), None),
    }
    for name, (settings, _, _) in members.items():
        g.member(name, **settings)
    talkers = [n for n, (s, _, _) in members.items() if s.get("send_to_peer")]

    workers: list[procs.Worker] = []
    readers: dict[str, procs.Worker] = {}
    try:
        for name, (_, member_reader, peer_reader) in members.items():
            o = dict(member_reader)
            if o.pop("framed", False):
                w = procs.framed_reader(rbin, g.p("frames/" + name), str(logs / f"r-{name}.log"),
                                        seed=rng.randrange(1 << 30), **o)
            else:
                w = procs.reader(rbin, g.p(name), str(logs / f"r-{name}.log"), seed=rng.randrange(1 << 30), **o)
            readers[name] = w
            workers.append(w)
            if peer_reader is not None:
                w = procs.reader(rbin, g.p("peers/" + name), str(logs / f"p-{name}.log"), seed=rng.randrange(1 << 30),
                                 **peer_reader)
                readers["peer:" + name] = w
                workers.append(w)

        # --- writers: the talkers as themselves (pt1 in batches), one anonymous writer,
        # and private writers to pt1, ptight and pdrop through their peer files
        wids: dict[int, procs.Worker] = {}
        common = dict(wspan=WSPAN, deadline_ms=deadline_ms, maxmsg=65536, nonblock_pct=25, large_pm=0, medium_pct=5)
        plan = [("pt0", "pt0", "member"), ("pt1", "frames/pt1", "batch"), ("ptight", "ptight", "member"),
                ("send", "send", "anonymous"), ("pt1", "peers/pt1", "private"), ("ptight", "peers/ptight", "private"),
                ("pdrop", "peers/pdrop", "private")]
        for wid, (member, path, kind) in enumerate(plan):
            label = f"{kind}-{member}"
            info = dict(label=label, member=member, kind=kind)
            if kind == "batch":
                w = procs.framed_writer(rbin, g.p(path), wid, str(logs / f"w-{label}.log"), count=attempts,
                                        seed=rng.randrange(1 << 30), pause_us=rng.choice([0, 100]), max_batch=16,
                                        **common, **info)
            else:
                w = procs.writer(rbin, g.p(path), wid, str(logs / f"w-{label}.log"), count=attempts,
                                 seed=rng.randrange(1 << 30), pause_us=rng.choice([0, 0, 100, 300]), **common, **info)
            wids[wid] = w
            workers.append(w)
        writers = list(wids.values())

        stop = threading.Event()
        errors: list[BaseException] = []
        usr1 = {"writer": 0, "reader": 0}
        tuned = {"n": 0}
        samples = {"n": 0, "peer_full_seen": 0}
        snapshot_problems: list[str] = []

        def inject():
            try:
                irng = random.Random(rng.randrange(1 << 30))
                while not stop.is_set():
                    time.sleep(irng.uniform(0.005, 0.03))
                    pool = [w for w in workers if w.alive()]
                    if pool:
                        victim = irng.choice(pool)
                        try:
                            os.kill(victim.pid, signal.SIGUSR1)
                            usr1[victim.role] += 1
                        except ProcessLookupError:
                            pass
            except BaseException as e:  # noqa: BLE001 - reported by the test
                errors.append(e)

        def tune():
            try:
                trng = random.Random(rng.randrange(1 << 30))
                while not stop.is_set():
                    time.sleep(trng.uniform(0.01, 0.05))
                    g.configure("ptight", capacity=trng.randint(1, 4))
                    tuned["n"] += 1
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        def sample():
            try:
                while not stop.is_set():
                    time.sleep(0.02)
                    st = g.status()
                    samples["n"] += 1
                    if st.group["blocked_writers"] > len(writers):
                        snapshot_problems.append(f"snapshot: blocked_writers={st.group['blocked_writers']}")
                    for name in talkers:
                        m = st.members[name]
                        # a queue that is not full takes one more message: at most capacity
                        # messages (the capacity may just have been lowered: then it drains)
                        full = m["peer_queued"] >= m["capacity"]
                        samples["peer_full_seen"] += m["peer_full"]
                        if full and not m["peer_full"]:
                            snapshot_problems.append(f"snapshot: {name} peer_queued={m['peer_queued']} "
                                                     f"capacity={m['capacity']} but peer_full=0")
                        if name != "ptight" and m["peer_queued"] > m["capacity"]:
                            snapshot_problems.append(f"snapshot: {name} peer_queued={m['peer_queued']} "
                                                     f"above capacity={m['capacity']}")
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=f, daemon=True) for f in (inject, tune, sample)]
        t_start = time.monotonic()
        for t in threads:
            t.start()
        for w in writers:
            code = w.wait(scale.stress_time_limit_s + 60)
            assert code == 0, f"writer {w.info['label']} exited with {code}: {w.stderr()}"
        t_writers = time.monotonic() - t_start
        stop.set()
        for t in threads:
            t.join(30)
        assert not errors, f"a helper thread failed: {errors[0]!r}"

        # Every reader drains what is queued; then the members leave and every reader,
        # peers included, reaches end of file.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = g.status()
            if all(m["queued"] == 0 and m["peer_queued"] == 0 for m in st.members.values()):
                break
            time.sleep(0.05)
        st = g.status()
        for name in members:
            os.unlink(g.p(name))
        for name, r in readers.items():
            code = r.wait(60)
            assert code == 0, f"reader {name} exited with {code} (None: still running): {r.stderr()}"
        t_total = time.monotonic() - t_start
    finally:
        procs.stop_all(workers)

    # --- the checker ------------------------------------------------------------------------
    problems: list[str] = list(dict.fromkeys(snapshot_problems))
    wlogs = {wid: ck.parse_writer_log(w.log, wid) for wid, w in wids.items()}
    accepted: dict = {}
    all_attempts: dict = {}
    by_kind: dict = {}
    for wid, wl in wlogs.items():
        if not wl.ended or wl.fatal:
            problems.append(f"writer {wids[wid].info['label']} did not finish cleanly (fatal errno {wl.fatal})")
        for a in wl.short():
            problems.append(f"writer {wids[wid].info['label']}: short write {a.ret} of {a.length}")
        accepted.update(wl.accepted)
        all_attempts.update({(wid, a.counter): a for a in wl.attempts.values()})
        by_kind[wid] = wids[wid].info["kind"]
    group_writers = {wid for wid, k in by_kind.items() if k != "private"}
    private_to = {wid: wids[wid].info["member"] for wid, k in by_kind.items() if k == "private"}
    own = {wids[wid].info["member"]: wid for wid in group_writers if by_kind[wid] != "anonymous"}

    got = {}
    for name, r in readers.items():
        rl = parse_log(r, WSPAN)
        problems += ck.check_reader_health(name, [rl])
        problems += ck.check_received_were_accepted(name, rl.msgs, accepted, all_attempts)
        ids = [m for m, _ in rl.msgs]
        problems += ck.check_no_duplicates(name, ids)
        problems += ck.check_writer_order(name, ids)
        got[name] = rl

    # the group order, and what `sent` counts
    ref = [m for m, _ in got["anchor"].msgs]
    group_accepted = {m for m in accepted if m[0] in group_writers}
    if set(ref) != group_accepted or len(ref) != len(group_accepted):
        problems.append(f"anchor: received {len(ref)} messages, {len(group_accepted)} group messages were accepted")
    if st.group["sent"] != len(accepted):
        problems.append(f"status sent={st.group['sent']}, but {len(accepted)} writes were accepted "
                        f"({len(accepted) - len(group_accepted)} private)")
    if st.group["blocked_writers"] != 0:
        problems.append(f"blocked_writers={st.group['blocked_writers']} after every writer finished")

    def private_expected(member):
        return sorted((m for m in accepted if private_to.get(m[0]) == member), key=lambda m: (m[0], m[1]))

    for name in members:
        if name == "anchor":
            continue
        msgs = [m for m, _ in got[name].msgs]
        mine = own.get(name)
        expected_group = [m for m in ref if m[0] != mine]
        privates = [m for m in msgs if m[0] in private_to]
        if any(private_to[m[0]] != name for m in privates):
            problems.append(f"{name} received a private message written to another member")
        # a private writer's messages, in its order (one private writer per member here)
        if name != "pdrop":
            problems += check_exact_part(name, msgs, lambda m: m[0] in group_writers, expected_group)
            problems += ck.check_exact(f"{name} (private)", privates, private_expected(name))
        else:
            problems += ck.check_follows(name, [m for m in msgs if m[0] in group_writers], {m: i for i, m in
                                                                                        enumerate(ref)})
        if name in st.members and name != "pdrop" and st.members[name]["dropped"] != 0:
            problems.append(f"{name}: dropped={st.members[name]['dropped']} without drop_when_full")
    # a peer: exactly what its member sent, in the group order
    for name in talkers:
        problems += ck.check_exact(f"peers/{name}", [m for m, _ in got["peer:" + name].msgs],
                                   [m for m in ref if m[0] == own[name]])
        if st.members[name]["peer_queued"] != 0:
            problems.append(f"{name}: peer_queued={st.members[name]['peer_queued']} once its reader drained it")

    # frames: one sequence per message, private ones flagged, real credentials
    framed = {n: r for n, r in got.items() if isinstance(r, ck.FrameLog)}
    creds = {wid: (w.pid, 0, 0, w.info["member"] if by_kind[wid] in ("member", "batch") else "")
             for wid, w in wids.items()}
    for name, r in framed.items():
        problems += ck.check_frames(name, r.frames, creds)
        wrong = [f.mid for f in r.frames if f.private != (f.mid[0] in private_to)]
        if wrong:
            problems.append(f"{name}: private flag wrong on {len(wrong)} frames (e.g. {wrong[:3]})")
    p, seq_of = ck.check_one_sequence({n: r.frames for n, r in framed.items()})
    problems += p
    if seq_of and max(seq_of.values()) > st.group["sent"]:
        problems.append(f"a sequence number above sent={st.group['sent']}")
    # pdrop: what it missed, among the messages addressed to it (all but the others' private ones)
    others_private = {seq_of[m] for m in accepted if m[0] in private_to and private_to[m[0]] != "pdrop"
                      and m in seq_of}
    n_others_private = sum(1 for m in accepted if m[0] in private_to and private_to[m[0]] != "pdrop")
    if len(others_private) != n_others_private:
        problems.append("a private message to pt1 or ptight has no sequence number in their frames")
    addressed = [s for s in range(1, st.group["sent"] + 1) if s not in others_private]
    problems += check_dropped_among("pdrop", framed["pdrop"].frames, addressed, st.members["pdrop"]["dropped"])

    fails = {}
    for wl in wlogs.values():
        for a in wl.failed():
            fails[ck.errname(a.err)] = fails.get(ck.errname(a.err), 0) + 1
    n_private = len(accepted) - len(group_accepted)
    figures = dict(
        seed=seed, writers=len(wids), attempts=sum(len(wl.attempts) for wl in wlogs.values()),
        accepted=len(accepted), private_accepted=n_private, failed=fails,
        deliveries_checked=sum(len(r.msgs) for r in got.values()),
        peer_deliveries_checked=sum(len(got["peer:" + n].msgs) for n in talkers),
        private_frames_checked=sum(1 for r in framed.values() for f in r.frames if f.private),
        pdrop_dropped=st.members["pdrop"]["dropped"],
        peer_full_in_snapshots=samples["peer_full_seen"], status_snapshots_checked=samples["n"],
        capacity_changes=tuned["n"], sigusr1_writers=usr1["writer"], sigusr1_readers=usr1["reader"],
        writers_s=round(t_writers, 2), total_s=round(t_total, 2),
    )
    p, leaked = stop_daemon(mnt)
    problems += p
    figures["defect_leaked_member_objects"] = leaked
    figures["problems"] = len(problems)
    record(**figures)
    assert not problems, f"{len(problems)} problems (seed {seed}):\n{show(problems)}"
