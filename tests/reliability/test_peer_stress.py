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

import os
import random
import time

import pytest

import checker as ck
import procs
import stress
from stress import WSPAN, parse_log


@pytest.mark.timeout(300)
def test_stress_peers_and_private_messages_checked(mount_factory, rbin, scale, record, tmp_path):
    seed = stress.run_seed()
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
    threads = stress.Threads()
    try:
        for name, (_, member_reader, peer_reader) in members.items():
            w = stress.start_reader(rbin, g.p, name, str(logs / f"r-{name}.log"), rng.randrange(1 << 30), member_reader)
            readers[name] = w
            workers.append(w)
            if peer_reader is not None:
                w = stress.start_reader(rbin, g.p, name, str(logs / f"p-{name}.log"), rng.randrange(1 << 30),
                                        dict(peer_reader, peer=True))
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
            info = dict(label=label, kind=kind, **({"private_to": member} if kind == "private" else {"member": member}))
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

        usr1 = {"writer": 0, "reader": 0}
        tuned = {"n": 0}
        samples = {"n": 0, "peer_full_seen": 0}
        snapshot_problems: list[str] = []

        def tune():
            trng = random.Random(rng.randrange(1 << 30))
            while not threads.stop.is_set():
                time.sleep(trng.uniform(0.01, 0.05))
                g.configure("ptight", capacity=trng.randint(1, 4))
                tuned["n"] += 1

        def peer_bounds(st):
            out = []
            for name in talkers:
                m = st.members[name]
                samples["peer_full_seen"] += m["peer_full"]
                # a queue that is not full takes one more message: at most capacity messages
                # (ptight's capacity may just have been lowered: then it drains)
                if name != "ptight" and m["peer_queued"] > m["capacity"]:
                    out.append(f"snapshot: {name} peer_queued={m['peer_queued']} above capacity={m['capacity']}")
            return out

        t_start = time.monotonic()
        threads.start(stress.inject, threads.stop, random.Random(rng.randrange(1 << 30)), lambda: workers, usr1)
        threads.start(tune)
        threads.start(stress.sample, threads.stop, g, samples, snapshot_problems, peer_bounds, plain=["anchor"],
                      senders=sum(1 for w in writers if w.info["kind"] != "private"), talkers=talkers)
        for w in writers:
            code = w.wait(scale.stress_time_limit_s + 60)
            assert code == 0, f"writer {w.info['label']} exited with {code}: {w.stderr()}"
        t_writers = time.monotonic() - t_start
        threads.finish()

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
        threads.stop.set()
        procs.stop_all(workers)

    # --- the checker ------------------------------------------------------------------------
    problems: list[str] = list(dict.fromkeys(snapshot_problems))
    traffic, wlogs, p, fails = stress.writer_side(wids)
    problems += p
    accepted = traffic.accepted

    got = {}
    for name, r in readers.items():
        rl = parse_log(r, WSPAN)
        problems += ck.check_received(name, [rl], accepted, traffic.attempts)
        got[name] = rl

    # the group order, and what `sent` counts
    ref = [m for m, _ in got["anchor"].msgs]
    group_accepted = {m for m in accepted if not traffic.private(m)}
    if set(ref) != group_accepted or len(ref) != len(group_accepted):
        problems.append(f"anchor: received {len(ref)} messages, {len(group_accepted)} group messages were accepted")
    if st.group["sent"] != len(accepted):
        problems.append(f"status sent={st.group['sent']}, but {len(accepted)} writes were accepted "
                        f"({len(accepted) - len(group_accepted)} private)")
    if st.group["blocked_writers"] != 0:
        problems.append(f"blocked_writers={st.group['blocked_writers']} after every writer finished")

    # every member: the group order less its own, exactly its private messages (pdrop: less what it dropped)
    spec = {n: ck.Member(n, drops=bool(s.get("drop_when_full"))) for n, (s, _, _) in members.items()}
    for name, m in spec.items():
        problems += ck.check_member(m, [got[name]], ref, traffic, st.members.get(name))[0]
    # a peer: exactly what its member sent, in the group order
    for name in talkers:
        problems += ck.check_peer(name, [m for m, _ in got["peer:" + name].msgs], ref,
                                  {w for w, n in traffic.sender.items() if n == name})
        if st.members[name]["peer_queued"] != 0:
            problems.append(f"{name}: peer_queued={st.members[name]['peer_queued']} once its reader drained it")

    # frames: one sequence per message, private ones flagged, real credentials; pdrop's gaps
    # among the messages addressed to it (all but the others' private ones)
    p, _ = ck.check_framed_view({n: [r] for n, r in got.items()}, ref, st.group["sent"], stress.creds_of(wids),
                                traffic, spec, st.members)
    problems += p
    framed = {n: r for n, r in got.items() if isinstance(r, ck.FrameLog)}

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
    stress.conclude(mnt, record, figures, problems, seed)
