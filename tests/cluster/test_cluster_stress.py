"""The stress checker across nodes (issue 13, "Tests"; docs/contract.md,
"Groups across hosts"): three mcastfs nodes on one nats-server, one group,
the reliability suite's writers (mcw) and readers (mcr, mcfr) on all three,
and tests/reliability/checker.py to prove, from what the writers logged and
what the readers received:

- every message received was accepted (its write returned its full length)
  and is intact; a write that failed (EAGAIN from a full stream, EMSGSIZE)
  reached nobody; nobody received a message twice;
- `anchor` (node n1, never writes) got exactly the accepted messages: its
  sequence is the group order;
- every other member that is not drop-when-full, on any node, got exactly
  that order, less its own messages (all of them with loopback=1);
- the drop-when-full member with a slow reader got a subsequence of it, and
  its `dropped` is exactly what it misses;
- each writer's order holds everywhere, and every pair of members, across
  nodes, agrees on the order of their common messages;
- a writer interrupted by SIGUSR1 while it waits for room fails with EINTR
  and stored nothing (signals go to writers and readers at random all along);
- framed readers on two nodes see one stream sequence per message, the
  sequences 1 .. accepted in the group order, and each frame carries its
  writer's pid, uid, gid and member name.

The group's stream is small (cluster_backlog) and one member is slow with a
small capacity, so that its node stops delivering, the stream fills, and
non-blocking writes on every node fail with EAGAIN while blocking ones wait.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

RELIABILITY = Path(__file__).resolve().parents[1] / "reliability"
if str(RELIABILITY) not in sys.path:
    sys.path.insert(0, str(RELIABILITY))

import checker as ck  # noqa: E402
import mcastfs_pytest  # noqa: E402
import procs  # noqa: E402
from helpers import MAX_MESSAGE, Group  # noqa: E402
from test_cluster_mount import appears, node_mount  # noqa: E402

rbin = mcastfs_pytest.c_helpers("rbin", RELIABILITY / "c")

WSPAN = 64
RESULTS = Path(os.environ.get("CLUSTER_RESULTS") or Path(__file__).resolve().parents[2] / "results" / "cluster.jsonl")


def record(test: str, **figures):
    """Prints the figures and appends them as one JSON line to results/cluster.jsonl."""
    line = {"test": test, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **figures}
    print("\nFIGURES " + json.dumps(line))
    RESULTS.parent.mkdir(exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(line) + "\n")


def count_messages(log: str) -> int:
    """Whole messages a reader has logged so far (M/T lines of mcr, F/G of mcfr)."""
    try:
        with open(log, "rb") as f:
            return sum(1 for line in f if line[:2] in (b"M ", b"T ", b"F ", b"G "))
    except FileNotFoundError:
        return 0


def wait_counts(want: dict, logs: dict, timeout: float) -> dict:
    """Waits until every reader log in `want` holds its number of messages (or
    more); returns the counts seen last, for the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {name: count_messages(logs[name]) for name in want}
        if all(seen[n] >= want[n] for n in want) or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def show(problems: list[str], limit: int = 25) -> str:
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n".join(problems[:limit]) + more


def writer_logs(writers: dict) -> tuple[dict, dict, dict, list[str], dict]:
    """(accepted id -> length, attempts id -> Attempt, member -> its own accepted ids,
    problems, failed writes by errno name)."""
    accepted, attempts, own, problems, failed = {}, {}, {}, [], {}
    for wid, w in writers.items():
        wl = ck.parse_writer_log(w.log, wid)
        if not wl.ended or wl.fatal:
            problems.append(f"writer {w.info['label']} did not finish cleanly (fatal errno {wl.fatal})")
        if wl.short():
            problems.append(f"writer {w.info['label']}: {len(wl.short())} short writes of one message")
        accepted.update(wl.accepted)
        attempts.update({(wid, a.counter): a for a in wl.attempts.values()})
        for a in wl.failed():
            failed[ck.errname(a.err)] = failed.get(ck.errname(a.err), 0) + 1
        if w.info["member"] != "send":
            own.setdefault(w.info["member"], set()).update(wl.accepted)
    return accepted, attempts, own, problems, failed


@pytest.mark.timeout(150)
def test_writers_and_members_on_three_nodes_one_order_exactly_once(nats_server, mount_factory, rbin, tmp_path):
    seed = int(os.environ.get("RELIABILITY_SEED", "0")) or random.randrange(1, 1 << 30)
    rng = random.Random(seed)
    attempts_per_writer = int(os.environ.get("CLUSTER_STRESS_ATTEMPTS", "600"))
    backlog = 64
    t_begin = time.monotonic()
    nodes = {name: node_mount(mount_factory, nats_server, name, f"cluster_backlog={backlog}")
             for name in ("n1", "n2", "n3")}
    os.mkdir(os.path.join(nodes["n1"].path, "stress"))
    for m in nodes.values():
        assert appears(os.path.join(m.path, "stress"), timeout=3), f"the group did not reach {m.path}"
    g = {name: Group(m.path, "stress") for name, m in nodes.items()}

    # name -> (node, settings, reader options); every member joins before anyone writes.
    members = {
        "anchor": ("n1", {}, dict(bufsize=2 << 20)),
        "wm1": ("n1", {"loopback": 1}, dict(variable=True)),
        "parts": ("n2", {"capacity": 8}, dict(variable=True)),
        "dropper": ("n2", {"capacity": 2, "drop_when_full": 1}, dict(bufsize=2 << 20, delay_us=3000)),
        "wm2": ("n2", {}, dict(bufsize=2 << 20)),
        "fr2": ("n2", {}, dict(framed=True)),
        "slow": ("n3", {"capacity": 4}, dict(bufsize=2 << 20, delay_us=300)),
        "wm3": ("n3", {"capacity": 16}, dict(variable=True)),
        "fr3": ("n3", {}, dict(framed=True, variable=True)),
    }
    loopback = {"wm1"}
    dwf = {"dropper"}
    for name, (node, settings, _) in members.items():
        g[node].member(name, **settings)
    for node, group in g.items():
        # Every node hears of every member (status lists them all, with node=).
        deadline = time.monotonic() + 3
        while set(group.status().members) != set(members) and time.monotonic() < deadline:
            time.sleep(0.02)
        st = group.status()
        assert set(st.members) == set(members), f"{node} lists {sorted(st.members)}"
        for name, (owner, _, _) in members.items():
            assert st.members[name]["node"] == owner, (node, name, st.members[name])

    workers: list[procs.Worker] = []
    readers: dict[str, procs.Worker] = {}
    writers: dict[int, procs.Worker] = {}
    stop = threading.Event()
    signals = {"writer": 0, "reader": 0}
    try:
        for name, (node, _, opts) in members.items():
            o = dict(opts)
            log = str(tmp_path / f"r-{name}.log")
            if o.pop("framed", False):
                readers[name] = procs.framed_reader(rbin, g[node].p("frames/" + name), log,
                                                    seed=rng.randrange(1 << 30), **o)
            else:
                readers[name] = procs.reader(rbin, g[node].p(name), log, seed=rng.randrange(1 << 30), **o)
            workers.append(readers[name])
        # (node, file, label): a writer on every node's send, and three writer-members.
        targets = [("n1", "send", "ws1"), ("n2", "send", "ws2"), ("n3", "send", "ws3"),
                   ("n1", "wm1", "wm1"), ("n2", "wm2", "wm2"), ("n3", "wm3", "wm3")]
        t_start = time.monotonic()
        for wid, (node, file, label) in enumerate(targets):
            w = procs.writer(
                rbin, g[node].p(file), wid, str(tmp_path / f"w-{label}.log"), wspan=WSPAN,
                count=attempts_per_writer, deadline_ms=40_000, seed=rng.randrange(1 << 30), maxmsg=MAX_MESSAGE,
                nonblock_pct=25, large_pm=2, medium_pct=8, pause_us=rng.choice([0, 200]),
                edges=(wid == 0), label=label, member=file, node=node,
            )
            writers[wid] = w
            workers.append(w)

        def interrupt():
            # Parked writes must end with EINTR and store nothing; a write whose
            # publish is in flight must wait for its answer whatever the signal.
            r = random.Random(seed + 1)
            while not stop.wait(r.uniform(0.002, 0.03)):
                w = r.choice(workers)
                if w.alive():  # Popen.send_signal never signals a reaped pid
                    w.proc.send_signal(signal.SIGUSR1)
                    signals[w.role] += 1

        interrupter = threading.Thread(target=interrupt, daemon=True)
        interrupter.start()
        for w in writers.values():
            code = w.wait(90)
            assert code == 0, f"writer {w.info['label']} exited with {code}: {w.stderr()}"
        t_writers = time.monotonic() - t_start
        stop.set()
        interrupter.join(5)

        accepted, attempts, own, problems, failed = writer_logs(writers)
        # Everyone but the dropper must get every accepted message (less its own
        # without loopback): wait for that before the members leave, since a
        # member removed leaves whatever its node has not delivered yet.
        want = {n: len(accepted) - (0 if n in loopback else len(own.get(n, ()))) for n in members if n not in dwf}
        logs = {n: r.log for n, r in readers.items()}
        seen = wait_counts(want, logs, timeout=40)
        t_drained = time.monotonic() - t_start
        statuses = {node: group.status() for node, group in g.items()}
        for name, (node, _, _) in members.items():
            os.unlink(g[node].p(name))
        for name, r in readers.items():
            code = r.wait(30)
            assert code == 0, f"reader {name} exited with {code}: {r.stderr()}"
    finally:
        stop.set()
        procs.stop_all(workers)

    # --- the checker ------------------------------------------------------------------
    short_of = {n: (seen[n], want[n]) for n in want if seen[n] < want[n]}
    if short_of:
        problems.append(f"readers still short of their messages 40 s after the writers: {short_of}")
    parsed = {n: (ck.parse_frame_log(r.log, WSPAN) if r.info.get("framed") else ck.parse_reader_log(r.log, WSPAN))
              for n, r in readers.items()}
    seqs = {}
    for name, rl in parsed.items():
        problems += ck.check_reader_health(name, [rl])
        problems += ck.check_received_were_accepted(name, rl.msgs, accepted, attempts)
        seqs[name] = [m for m, _ in rl.msgs]
        problems += ck.check_no_duplicates(name, seqs[name])
        problems += ck.check_writer_order(name, seqs[name])

    ref = seqs["anchor"]
    pos = {m: i for i, m in enumerate(ref)}
    if set(ref) != set(accepted) or len(ref) != len(accepted):
        missing = [m for m in accepted if m not in pos]
        problems.append(f"anchor got {len(ref)} messages, {len(accepted)} were accepted; missing e.g. {missing[:5]}")
    for name, (node, _, _) in members.items():
        if name == "anchor":
            continue
        got = seqs[name]
        if name in dwf:
            problems += ck.check_follows(name, got, pos)
            st = statuses[node].members[name]
            if st["dropped"] + len(got) != len(ref):
                problems.append(f"{name}: dropped={st['dropped']} and {len(got)} received, "
                                f"{len(ref)} in the group order")
            continue
        mine = set() if name in loopback else own.get(name, set())
        problems += ck.check_exact(name, got, [m for m in ref if m not in mine])
    problems += ck.check_pairwise_order(seqs)

    # The framed view: one stream sequence per message, 1 .. accepted in the group order.
    frames = {n: parsed[n].frames for n in ("fr2", "fr3")}
    creds = {wid: (w.pid, 0, 0, "" if w.info["member"] == "send" else w.info["member"])
             for wid, w in writers.items()}
    for name, fr in frames.items():
        problems += ck.check_frames(name, fr, creds)
    p, seq_of = ck.check_one_sequence(frames)
    problems += p
    if [seq_of.get(m) for m in ref] != list(range(1, len(ref) + 1)):
        problems.append("the stream sequences of the group order are not 1 .. accepted: "
                        f"first {[seq_of.get(m) for m in ref[:5]]}, last {[seq_of.get(m) for m in ref[-3:]]}")

    for node, st in statuses.items():
        if st.group["blocked_writers"] != 0:
            problems.append(f"{node}: blocked_writers={st.group['blocked_writers']} after every writer finished")

    deliveries = sum(len(s) for s in seqs.values())
    record(
        "cluster_stress", seed=seed, nodes=3, writers=len(writers), attempts=len(attempts), accepted=len(accepted),
        failed=failed, signals=signals, deliveries_checked=deliveries, received={n: len(s) for n, s in seqs.items()},
        dropped=statuses[members["dropper"][0]].members["dropper"]["dropped"],
        sent={node: st.group["sent"] for node, st in statuses.items()},
        bytes_accepted=sum(accepted.values()), writers_s=round(t_writers, 2), drained_s=round(t_drained, 2),
        total_s=round(time.monotonic() - t_begin, 2), problems=len(problems),
    )
    assert not problems, f"{len(problems)} problems (seed {seed}):\n" + show(problems)
