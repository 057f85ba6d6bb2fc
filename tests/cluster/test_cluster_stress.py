"""The stress checker across nodes (issue 13, "Tests"; issue 14 item 1, "in
cluster mode the same checker across nodes"; docs/contract.md, "Groups across
hosts"). Three runs, each judged by tests/reliability/checker.py:
test_everything_in_one_run_across_three_nodes (and its variant on three
servers) is tests/reliability/test_mixed_stress.py's run spread over three
nodes (see "everything in one run, across three nodes" below, and
tests/reliability/README.md, part 1d); then the defects those runs found, each
alone. The first run: three mcastfs nodes on one nats-server, one group,
the reliability suite's writers (mcw) and readers (mcr, mcfr) on all three,
and the checker to prove, from what the writers logged and what the readers
received:

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
  and stored nothing (signals go to readers at random all along, and to
  writers, SIGNAL_BLOCKING_WRITERS below);
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
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

RELIABILITY = Path(__file__).resolve().parents[1] / "reliability"
if str(RELIABILITY) not in sys.path:
    sys.path.insert(0, str(RELIABILITY))

import checker as ck  # noqa: E402
import mcastfs_pytest  # noqa: E402
import procs  # noqa: E402
import stress  # noqa: E402
import topicfilter  # noqa: E402
from helpers import MAX_MESSAGE, Group  # noqa: E402
from scale import current_scale  # noqa: E402
from stress import NOBODY, ck_end  # noqa: E402
from test_cluster_mount import appears, node_mount  # noqa: E402

rbin = mcastfs_pytest.c_helpers("rbin", RELIABILITY / "c")

WSPAN = 64
RESULTS = Path(os.environ.get("CLUSTER_RESULTS") or Path(__file__).resolve().parents[2] / "results" / "cluster.jsonl")

# Signals go to every writer, blocking ones included: the two defects that once
# left a node's blocking writers waiting for ever (a write queued behind a parked
# one could not be interrupted; a parked write cancelled as it got the turn kept
# it) are fixed, and test_a_blocking_write_queued_behind_a_parked_one_is_interrupted_by_a_signal
# and test_a_signal_as_a_parked_write_gets_its_turn_leaves_no_writer_waiting_for_ever
# (long scale) below show each alone.
SIGNAL_BLOCKING_WRITERS = True


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
            pool = workers if SIGNAL_BLOCKING_WRITERS else list(readers.values())
            while not stop.wait(r.uniform(0.002, 0.03)):
                w = r.choice(pool)
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


# --- everything in one run, across three nodes ----------------------------------------
#
# tests/reliability/test_mixed_stress.py's run, on three nodes: every kind of writer and
# member of that run on every node, judged by the same checker (checker.py's one model of
# recipients), with what the cluster promises in place of what one machine does
# (docs/contract.md, "Groups across hosts"; docs/cluster.md, "What is promised"):
#
# - one order: the group order is the stream's (anchor's, on n1); every member on any
#   node gets its messages in it, every pair of readers on any nodes agrees, a frame's
#   sequence is the stream sequence, the same on every node;
# - exactly once, atomic per node: every member present throughout, on any node, gets
#   exactly the messages addressed to it (filters, loopback, its private ones) less, if it
#   drops, exactly its `dropped`; the snapshot rules of one instant hold among the members
#   of one node (checker.check_snapshot, local=);
# - a member that joins receives from the stream sequence at its join; its node delivers
#   after the write returned, so a member that leaves may not have had what was written
#   while it was there (checker.check_transient, relayed=True);
# - flow control is the stream's (cluster_backlog): small here, so that a full member on
#   one node holds writers on every node;
# - peers are per node: each talker's peer reader, and the private writers of a member,
#   are on the member's node;
# - `ctl member` on any node changes the member on its node: the settings threads pick a
#   node at random;
# - status: another node's members show the counters of their node's last heartbeat,
#   judged only over time during the run, and equal to their own node's once every queue
#   is still and a few beats have passed.

NODES = ("n1", "n2", "n3")
BACKLOG = 64
BIG = dict(bufsize=2 << 20)
HALVES = (",".join(string.ascii_uppercase[:13]), ",".join(string.ascii_uppercase[13:]))
LETTERS = ",".join(string.ascii_uppercase)
LOWER = ",".join(string.ascii_lowercase[:16])

# DEFECT (test_a_line_tail_flushed_by_fsync_keeps_its_place_before_the_writers_next_lines,
# below): in a clustered line group a tail flushed by fsync(2) is published on its own, the
# fsync returning at once, and a write that follows is not ordered behind it: when the
# stream is full the tail waits for room while the writer's next lines are stored (seen
# in every run of this test with fsync tails: "writer 12's message 97 arrived after its
# message 103", 97 a tail). Until it is fixed the line writers flush no tail by fsync
# here; a tail flushed by close is their last message, with nothing after it to overtake it.
FSYNC_TAILS_PCT = 0

# DEFECT (test_settings_set_just_after_a_member_was_made_are_kept, below): a setting made on a
# member's node just after the member was made, or just after another setting, may be lost
# for good: a member that came and went then got messages its filter refused, written after
# its subscribe command (2 of 6 runs). Until it is fixed the members that come and go here
# get no filter (part 1c gives them one; the permanent members here have theirs, checked on
# every node before the writers start, set again if lost).
TRANSIENT_PATTERNS = ("",)


@dataclass(frozen=True)
class ClusterScale:
    attempts: int        # per record writer (mcw)
    records: int         # per batch writer (mcfw)
    lines: int           # per line writer (mclw)
    time_limit_s: float  # writers stop by themselves after this
    churn_max_live: int  # members that come and go at once, per node


CLUSTER_SCALES = {"short": ClusterScale(500, 1500, 500, 20, 1), "long": ClusterScale(5000, 15000, 5000, 150, 2)}


def cut_stored_before_join(got: list, tl: ck.Timeline, times: dict, want=None) -> tuple[list, list]:
    """DEFECT (test_a_member_receives_nothing_stored_before_it_joined): a member receives
    what its node delivers while its create is under way, messages stored before its join
    (Sources/DeliveryCore/Relay.swift, Member.receiveOnly(after:): "what its node delivered
    to it in between ... stays queued"), where docs/cluster.md promises that messages stored
    before are not delivered to it. They come first, in the group order: every message up
    to the last one written entirely before the create began (`j0`) was stored before the
    join; after it, a run begun before the create returned (`j1`), then a gap of messages
    stored before the join that it did not get (all begun before `j1`, or refused by its
    filter, want(x) false), may be too. Returns (the rest, for check_transient, the cut)."""
    pos, att = tl.pos, tl.attempts
    k = max((i + 1 for i, x in enumerate(got) if x in att and att[x].t1 < times["j0"]), default=0)
    e = k
    while e < len(got) and got[e] in pos and att[got[e]].t0 < times["j1"] and \
            (e == 0 or pos[got[e]] == pos[got[e - 1]] + 1):
        e += 1
    if 0 < e < len(got) and got[e] in pos and pos[got[e]] > pos[got[e - 1]] + 1 and \
            all(att[x].t0 < times["j1"] or (want is not None and not want(x))
                for x in tl.ref[pos[got[e - 1]] + 1:pos[got[e]]]):
        k = e
    return got[k:], got[:k]


def cluster_scale() -> ClusterScale:
    return CLUSTER_SCALES[current_scale().name]


def line_start(mid: tuple, length: int) -> bytes:
    """The head of a line message (c/payload.h): a line's topic is the whole line."""
    return b"L%04x:%08x:%08x:" % (mid[0], mid[1], length)


def mount_node(mount_factory, nats, name: str, first: int, extra: str, timeout: int):
    """A node whose connection goes to server `first` of the cluster first (nats.c tries
    them in the order given)."""
    urls = nats.urls[first:] + nats.urls[:first]
    return mount_factory(options=f"cluster={'+'.join(urls)},node={name},cluster_timeout={timeout},{extra}")


def wait_for_all(predicate, timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


COUNTERS = ("queued", "queued_bytes", "full", "delivered", "dropped")


class RetriedGroup(Group):
    """A group whose ctl commands are tried again when they fail with ENOENT, counted.
    DEFECT (test_ctl_of_a_member_just_made_finds_it_on_three_servers): on a cluster of three
    servers, `ctl member NAME ...` just after NAME was made sometimes fails with ENOENT,
    NAME's record not yet seen where its node reads it back; the change is applied on the
    member's node all the same and shared on the next try."""

    enoent = 0

    def ctl(self, command) -> None:
        for attempt in range(20):
            try:
                return super().ctl(command)
            except FileNotFoundError:
                if attempt == 19 or not str(command).startswith("member "):
                    raise
                RetriedGroup.enoent += 1
                time.sleep(0.01)


class OwnMembers:
    """A node's own members: those named, and those that come and go on it (by prefix)."""

    def __init__(self, names, prefix: str):
        self.names = set(names)
        self.prefix = prefix

    def __contains__(self, name: str) -> bool:
        return name in self.names or name.startswith(self.prefix)


class NodeStatus:
    """A node's status of a group as its snapshots are judged: its own members, those that
    come and go included, and the other nodes' permanent ones. (Another node's member that
    has just left may still be listed here, with zeros once its node's heartbeat no longer
    carries it.)"""

    def __init__(self, group: Group, permanent, own_prefix: str):
        self.group = group
        self.permanent = set(permanent)
        self.own_prefix = own_prefix

    def status(self):
        st = self.group.status()
        st.members = {n: m for n, m in st.members.items() if n in self.permanent or n.startswith(self.own_prefix)}
        return st


def remote_counters_agree(statuses: dict, owner: dict) -> list[str]:
    """Every node's status shows each member of another node with the counters its own
    node shows (a still group, a few heartbeats on), and its peer queue as 0."""
    out = []
    for node, st in statuses.items():
        for name, m in st.members.items():
            home = owner.get(name)
            if home is None or home == node or name not in statuses[home].members:
                continue
            mine = statuses[home].members[name]
            if any(m[k] != mine[k] for k in COUNTERS) or m["peer_queued"] != 0 or m["peer_full"] != 0:
                out.append(f"{node}'s status shows {name} (of {home}) with "
                           f"{ {k: m[k] for k in COUNTERS + ('peer_queued', 'peer_full')} }, its node with "
                           f"{ {k: mine[k] for k in COUNTERS} }")
    return out


def run_everything_across_nodes(nats, mount_factory, rbin, tmp_path, workdir_base, test: str,
                                servers: int, extra: str = "", timeout: int = 2, pace: float = 1.0):
    """pace > 1: that many times fewer messages, and settings changed that many times less
    often (every change is a write to the cluster's buckets)."""
    seed = stress.run_seed()
    rng = random.Random(seed)
    sc = cluster_scale()
    sc = ClusterScale(int(sc.attempts / pace), int(sc.records / pace), int(sc.lines / pace), sc.time_limit_s,
                      sc.churn_max_live)
    logs = tmp_path
    deadline_ms = int(sc.time_limit_s * 1000)
    t_begin = time.monotonic()
    nodes = {name: mount_node(mount_factory, nats, name, i % servers, f"allow_other,cluster_backlog={BACKLOG}{extra}",
                              timeout)
             for i, name in enumerate(NODES)}
    for grp in ("mixed", "lines"):
        os.mkdir(os.path.join(nodes["n1"].path, grp))
        for m in nodes.values():
            assert appears(os.path.join(m.path, grp), timeout=3), f"{grp} did not reach {m.path}"
    g = {n: RetriedGroup(m.path, "mixed") for n, m in nodes.items()}
    lg = {n: RetriedGroup(m.path, "lines") for n, m in nodes.items()}
    RetriedGroup.enoent = 0
    lg["n1"].set(message="line")
    assert wait_for_all(lambda: all(x.status().group["message"] == "line" for x in lg.values()), 5), \
        "message=line did not reach every node"

    # Full before anyone else joins (nobody else has its message), then matching nothing: it
    # must hold nobody back. Its message is the stream's number 1.
    g["n1"].member("stuck", capacity=1)
    g["n1"].send(b"fill")
    assert wait_for_all(lambda: g["n1"].status().members["stuck"]["queued"] == 1, 5)
    g["n1"].ctl("member stuck subscribe=never.matches.this")

    # name -> (node, settings, subscribe=, [member readers], peer reader or None)
    members = {
        "anchor": ("n1", {}, "", [BIG], None),
        "parts": ("n1", {}, "", [dict(variable=True)], None),
        "drop1": ("n1", {"capacity": 2, "drop_when_full": 1}, "", [dict(BIG, delay_us=300)], None),
        "star": ("n1", {}, "*", [dict(variable=True)], None),
        "wm0": ("n1", {"loopback": 1}, "*", [dict(variable=True)], None),
        # talker, records, filtered; its capacity (and its peer's) 1 .. 4 under load
        "pt0": ("n1", {"send_to_peer": 1, "capacity": 2}, "*", [dict(variable=True)], dict(variable=True)),
        "fanchor": ("n2", {}, "", [dict(framed=True, variable=True)], None),
        "tight": ("n2", {"capacity": 4}, "", [BIG], None),                        # capacity 1 .. 8 under load
        # a framed reader beside record readers: 1 MiB buffers only (the EMSGSIZE defect)
        "shared": ("n2", {"capacity": 8}, "", [BIG, dict(variable=True), dict(framed=True)], None),
        "rest": ("n2", {"capacity": 16}, ">", [dict(framed=True, variable=True)], None),
        # drop-when-full, filtered, read framed slowly; private messages from uid 65534 on n2
        "fdrop": ("n2", {"capacity": 3, "drop_when_full": 1}, LOWER, [dict(framed=True, delay_us=300)], None),
        # talker, batches; its peer read slowly, so that its full peer queue holds n2's delivery
        "pt1": ("n2", {"send_to_peer": 1}, "", [dict(framed=True)], dict(BIG, delay_us=400)),
        "bytes": ("n3", {"queue_bytes": 65536}, "", [dict(variable=True)], None),
        "flip": ("n3", {"capacity": 4}, "", [dict(variable=True, delay_us=150)], None),  # capacity, drop_when_full
        "letters": ("n3", {"capacity": 4}, LETTERS, [dict(variable=True), dict(framed=True)], None),
        # filtered (it matches few messages), and private messages written to it on n3
        "digits": ("n3", {"capacity": 8}, ",".join(string.digits) + ",*.*", [dict(framed=True, variable=True)], None),
        "toggle": ("n3", {"capacity": 4}, HALVES[0], [dict(variable=True)], None),  # flipped from n1
        "wm1": ("n3", {"capacity": 16}, ">", [BIG], None),
        "fm0": ("n3", {}, "", [dict(framed=True, variable=True)], None),
    }
    lmembers = {
        "lanchor": ("n1", {}, "", [dict(BIG, text=True)], None),
        "lstar": ("n1", {"capacity": 4}, "*", [dict(BIG, text=True)], None),
        # matches no line: gets only the private lines written to it on n1
        "lquiet": ("n1", {"capacity": 4}, "none", [dict(framed=True, variable=True, text=True)], None),
        "lframed": ("n2", {}, "", [dict(framed=True, variable=True, text=True)], None),
        "ldrop": ("n2", {"capacity": 2, "drop_when_full": 1}, "", [dict(framed=True, text=True, delay_us=300)], None),
        "lparts": ("n3", {}, "", [dict(variable=True, text=True)], None),            # capacity 1 .. 8 under load
        "lshared": ("n3", {"capacity": 8}, "", [dict(variable=True, text=True), dict(framed=True, text=True)], None),
        "lw0": ("n3", {"send_to_peer": 1}, "", [dict(variable=True, text=True)], dict(variable=True, text=True)),
    }
    owner = {"stuck": "n1"} | {n: v[0] for n, v in members.items()}
    lowner = {n: v[0] for n, v in lmembers.items()}
    for grp, mem in ((g, members), (lg, lmembers)):
        for name, (node, settings, patterns, _, _) in mem.items():
            grp[node].member(name, **settings)
            if patterns:
                grp[node].ctl(f"member {name} subscribe={patterns}")

    def unsettled(grp, mem) -> list[tuple[str, str, str]]:
        # Every node lists every member with its settings: the records are in the cluster.
        out = []
        for node in NODES:
            st = grp[node].status()
            for name, (home, settings, patterns, _, _) in mem.items():
                m = st.members.get(name)
                if m is None or m.get("node") != home or str(m["subscribe"]) != patterns or \
                        any(m[k] != v for k, v in settings.items()):
                    out.append((node, name, f"{node} shows {name} as "
                                f"{m and {k: m[k] for k in list(settings) + ['subscribe', 'node']}}, set {settings} "
                                f"subscribe={patterns} on {home}"))
        return out

    # Every member reaches every node with its settings (a setting made just after the
    # member was once lost for good: test_settings_set_just_after_a_member_was_made_are_kept).
    stuck_spec = ("n1", {"capacity": 1}, "never.matches.this", [], None)
    deadline = time.monotonic() + 15
    while True:
        time.sleep(1)
        wrong = [(grp_, mem_, unsettled(grp_, mem_)) for grp_, mem_ in
                 ((g, members | {"stuck": stuck_spec}), (lg, lmembers))]
        if not any(found for _, _, found in wrong) or time.monotonic() > deadline:
            break
    assert not any(found for _, _, found in wrong), \
        f"the members did not reach every node with their settings: {[x[2] for _, _, f in wrong for x in f]}"

    spec = {n: ck.Member(n, p, loopback=bool(s.get("loopback")), drops=bool(s.get("drop_when_full")) or n == "flip",
                         either=",".join(HALVES) if n == "toggle" else None)
            for n, (_, s, p, _, _) in members.items()}
    lspec = {n: ck.Member(n, p, drops=bool(s.get("drop_when_full"))) for n, (_, s, p, _, _) in lmembers.items()}
    talkers = [n for n, v in members.items() if v[1].get("send_to_peer")]
    ltalkers = [n for n, v in lmembers.items() if v[1].get("send_to_peer")]
    # per node: every group message reaches them and nothing else (one delivered + dropped in
    # every snapshot of their node), or at most that
    plain = {"n1": ["anchor", "parts", "drop1"], "n2": ["fanchor", "tight", "shared"], "n3": ["bytes", "flip"]}
    bounded = {"n1": ["star"], "n2": ["rest"], "n3": ["letters", "toggle"]}
    lplain = {"n1": ["lanchor"], "n2": ["lframed", "ldrop"], "n3": ["lparts", "lshared"]}
    lbounded = {"n1": ["lstar"], "n2": [], "n3": []}

    # uid 65534 writes on n3's frames/send and privately to fdrop on n2
    os.chmod(g["n3"].p("send"), 0o222)
    os.chmod(g["n2"].p("peers"), 0o711)
    os.chmod(g["n2"].p("peers/fdrop"), 0o622)
    nobody = stress.AsNobody(rbin, workdir_base, f"cluster-{seed}")

    workers: list[procs.Worker] = []
    readers: dict[str, list[procs.Worker]] = {}
    transients: list[dict] = []
    threads = stress.Threads()
    stop = threads.stop
    try:
        for grp, mem in ((g, members), (lg, lmembers)):
            for name, (node, _, _, opts, peer) in mem.items():
                readers[name] = []
                for k, o in enumerate(opts):
                    readers[name].append(stress.start_reader(rbin, grp[node].p, name, str(logs / f"r-{name}-{k}.log"),
                                                             rng.randrange(1 << 30), dict(o, node=node)))
                    workers.append(readers[name][-1])
                if peer is not None:
                    readers["peer:" + name] = [stress.start_reader(rbin, grp[node].p, name, str(logs / f"p-{name}.log"),
                                                                   rng.randrange(1 << 30),
                                                                   dict(peer, peer=True, node=node))]
                    workers += readers["peer:" + name]

        # --- settings changing under load, through ctl on any node ----------------------------
        tuned = {"capacity": 0, "drop_when_full": 0, "subscribe": 0, "on_another_node": 0}

        def tune():
            trng = random.Random(rng.randrange(1 << 30))
            while not stop.is_set():
                time.sleep(trng.uniform(0.01, 0.04) * pace)
                via = trng.choice(NODES)
                r = trng.random()
                if r < 0.25:
                    who, grp = "tight", g
                    grp[via].configure(who, capacity=trng.randint(1, 8))
                elif r < 0.5:
                    who, grp = "pt0", g
                    grp[via].configure(who, capacity=trng.randint(1, 4))
                elif r < 0.75:
                    who, grp = "lparts", lg
                    grp[via].configure(who, capacity=trng.randint(1, 8))
                else:
                    who = "flip"
                    g[via].configure(who, capacity=trng.randint(1, 8), drop_when_full=trng.randint(0, 1))
                    tuned["drop_when_full"] += 1
                tuned["capacity"] += 1
                tuned["on_another_node"] += via != (owner.get(who) or lowner.get(who))

        # --- writers ---------------------------------------------------------------------------
        wids: dict[int, procs.Worker] = {}
        lwids: dict[int, procs.Worker] = {}
        mcw = dict(wspan=WSPAN, count=sc.attempts, deadline_ms=deadline_ms, maxmsg=MAX_MESSAGE, large_pm=2,
                   medium_pct=8)
        mcfw = dict(wspan=WSPAN, count=sc.records, deadline_ms=deadline_ms, maxmsg=MAX_MESSAGE, large_pm=1,
                    medium_pct=6)
        # (label, kind, node, file, member it sends as or writes to privately, as uid 65534, signalled)
        plan = [("ws0", "record", "n1", "send", "send", False, False),
                ("ws1", "record", "n2", "send", "send", False, False),
                ("ws2", "record", "n3", "send", "send", False, True),
                ("wm0", "record", "n1", "wm0", "wm0", False, False),
                ("wm1", "record", "n3", "wm1", "wm1", False, False),
                ("fs0", "batch", "n3", "frames/send", "send", True, True),
                ("fm0", "batch", "n3", "frames/fm0", "fm0", False, False),
                ("pt0", "record", "n1", "pt0", "pt0", False, False),
                ("pt1", "batch", "n2", "frames/pt1", "pt1", False, False),
                ("pv-pt1", "private", "n2", "peers/pt1", "pt1", False, False),
                ("pv-digits", "private", "n3", "peers/digits", "digits", False, True),
                ("pv-fdrop", "private", "n2", "peers/fdrop", "fdrop", True, False)]
        usr1 = {"writer": 0, "reader": 0}
        stops = {"writer": 0, "reader": 0}
        samples: dict = {}
        snapshot_problems: list[str] = []
        writers: list[procs.Worker] = []
        signalled: list[procs.Worker] = []
        live_readers: list[procs.Worker] = []
        t_start = time.monotonic()
        for node in NODES:
            # members joining and leaving on every node: some given a filter once they are in,
            # some read framed
            threads.start(stress.churn, stop, random.Random(rng.randrange(1 << 30)), g[node], rbin, logs,
                          sc.churn_max_live, transients, live_readers, patterns=TRANSIENT_PATTERNS,
                          framed_share=0.3, prefix=f"t{node[1:]}-")
        threads.start(tune)
        threads.start(stress.flip_patterns, stop, g["n1"], "toggle", HALVES, tuned, every=0.02 * pace)
        threads.start(stress.inject, stop, random.Random(rng.randrange(1 << 30)),
                      lambda: signalled + [r for rs in readers.values() for r in rs] + list(live_readers), usr1, stops)
        for node in NODES:
            here = [p for p in plan if p[2] == node]
            samples[node] = {}
            threads.start(stress.sample, stop, NodeStatus(g[node], owner, f"t{node[1:]}-"), samples[node],
                          snapshot_problems, None, 0.06,
                          plain=plain[node], bounded=bounded[node], senders=len(here),
                          talkers=[n for n in talkers if owner[n] == node],
                          local=OwnMembers([n for n in owner if owner[n] == node], f"t{node[1:]}-"))
            samples["l" + node] = {}
            threads.start(stress.sample, stop, lg[node], samples["l" + node], snapshot_problems, None, 0.06,
                          plain=lplain[node], bounded=lbounded[node], senders=2 * 2,
                          talkers=[n for n in ltalkers if lowner[n] == node],
                          local=[n for n in lowner if lowner[n] == node])
        for wid, (label, kind, node, path, member, as_nobody, sig) in enumerate(plan):
            info = dict(label=label, kind=kind, node=node,
                        **({"private_to": member} if kind == "private" else {"member": member}))
            log = nobody.log(f"w-{label}.log") if as_nobody else str(logs / f"w-{label}.log")
            user = dict(as_user=NOBODY, uid=NOBODY, binary=nobody.bin["mcfw" if kind == "batch" else "mcw"]) \
                if as_nobody else {}
            nonblock = 100 if sig and not SIGNAL_BLOCKING_WRITERS else 25
            if kind == "batch":
                w = procs.framed_writer(rbin, g[node].p(path), wid, log, seed=rng.randrange(1 << 30),
                                        pause_us=rng.choice([0, 100, 300]), max_batch=rng.choice([8, 32, 64]),
                                        nonblock_pct=nonblock, **mcfw, **user, **info)
            else:
                w = procs.writer(rbin, g[node].p(path), wid, log, seed=rng.randrange(1 << 30),
                                 pause_us=rng.choice([0, 0, 100, 300]), edges=(label == "ws0"),
                                 nonblock_pct=nonblock, **mcw, **user, **info)
            wids[wid] = w
            workers.append(w)
            if sig or SIGNAL_BLOCKING_WRITERS:
                signalled.append(w)
        # line writers: on n1's send (signalled: O_NONBLOCK only), on n2's (its last line's tail
        # flushed by close), as the talker lw0 on n3, and privately to lquiet on n1
        for label, node, path, member, close_flush, sig in (("ls0", "n1", "send", "send", False, True),
                                                             ("ls1", "n2", "send", "send", True, False),
                                                             ("lw0", "n3", "lw0", "lw0", True, False),
                                                             ("lp", "n1", "peers/lquiet", None, False, False)):
            wid = len(wids) + len(lwids)
            info = dict(label=label, node=node, **({"member": member} if member else {"private_to": "lquiet"}))
            lwids[wid] = procs.line_writer(rbin, lg[node].p(path), wid, str(logs / f"w-{label}.log"),
                                           count=sc.lines, deadline_ms=deadline_ms, seed=rng.randrange(1 << 30),
                                           nonblock_pct=100 if sig and not SIGNAL_BLOCKING_WRITERS else 25,
                                           pause_us=rng.choice([0, 100]), fsync_pct=FSYNC_TAILS_PCT, close_flush=close_flush,
                                           **info)
            workers.append(lwids[wid])
            if sig or SIGNAL_BLOCKING_WRITERS:
                signalled.append(lwids[wid])
        writers += list(wids.values()) + list(lwids.values())
        for w in writers:
            # A thread beside the writers that failed may have left a member nobody reads,
            # holding its node's delivery and every writer: fail now, with its error.
            deadline = time.monotonic() + sc.time_limit_s + 60
            while (code := w.wait(0.5)) is None and time.monotonic() < deadline and not threads.errors:
                pass
            if code is None and threads.errors:
                threads.finish(5)
            assert code == 0, f"writer {w.info['label']} on {w.info['node']} exited with {code}: {w.stderr()}"
        t_writers = time.monotonic() - t_start
        threads.finish()

        # Every node delivers what the streams hold (a line flushed by close enters its group
        # once the daemon sees the release, after close returned), and every queue drains, the
        # peers' included; then the last snapshots, the other nodes' counters a few beats on,
        # and every member goes: readers reach end of file.
        for w in wids.values():
            if w.info.get("uid") == NOBODY:
                shutil.copy(w.log, logs)   # kept with the other logs
        traffic, wlogs, wproblems, fails = stress.writer_side(wids)
        ltraffic, lwlogs, lproblems, lfails = stress.writer_side(lwids)
        # The streams' messages each node delivers (status `sent` of a clustered node: those its
        # consumer delivered, the fill on n1 only): waited for, not judged.
        want_sent = {n: len(traffic.accepted) + (n == "n1") for n in NODES}

        def drained() -> bool:
            for node in NODES:
                for grp, want, own in ((g, want_sent[node], owner), (lg, len(ltraffic.accepted), lowner)):
                    st = grp[node].status()
                    if st.group["sent"] < want or any(
                            (m["queued"] or m["peer_queued"]) and n != "stuck"
                            for n, m in st.members.items() if own.get(n) == node):
                        return False
            return True

        drained_in_time = wait_for_all(drained, 30)
        t_drained = time.monotonic() - t_start
        statuses = {n: g[n].status() for n in NODES}
        lstatuses = {n: lg[n].status() for n in NODES}
        # Heartbeats every cluster_timeout / 5: the counters of two or three beats on.
        remote_ok = wait_for_all(lambda: not remote_counters_agree({n: g[n].status() for n in NODES}, owner) and
                                 not remote_counters_agree({n: lg[n].status() for n in NODES}, lowner), 3 * timeout)
        remote_problems = [] if remote_ok else (
            remote_counters_agree({n: g[n].status() for n in NODES}, owner) +
            remote_counters_agree({n: lg[n].status() for n in NODES}, lowner))
        for name, node in owner.items():
            os.unlink(g[node].p(name))
        for name, node in lowner.items():
            os.unlink(lg[node].p(name))
        stress.wait_readers([r for rs in readers.values() for r in rs] + [t["reader"] for t in transients])
        t_total = time.monotonic() - t_start
    finally:
        stop.set()
        procs.stop_all(workers + [t["reader"] for t in transients if "reader" in t])

    st_of = {n: statuses[owner[n]].members.get(n) for n in owner}      # each member on its own node
    lst_of = {n: lstatuses[lowner[n]].members.get(n) for n in lowner}

    # --- the checker: the record group -------------------------------------------------------
    problems: list[str] = list(dict.fromkeys(snapshot_problems)) + wproblems + remote_problems
    if not drained_in_time:
        problems.append(f"not every node delivered the streams and drained its queues within 30 s: "
                        f"sent {[statuses[n].group['sent'] for n in NODES]}, want {want_sent}, "
                        f"lines {[lstatuses[n].group['sent'] for n in NODES]}, want {len(ltraffic.accepted)}")
    accepted, attempts = traffic.accepted, traffic.attempts
    problems += ck.check_max_message_edges(wlogs[0], MAX_MESSAGE)

    got = {name: [stress.parse_log(r) for r in rs] for name, rs in readers.items()}
    lgot = {n: got.pop(n) for n in list(got) if n.removeprefix("peer:") in lmembers}
    seqs, p = stress.received(got, traffic, transients)
    problems += p
    ref, p = stress.check_anchor(seqs, traffic, "anchor")
    problems += p
    for node, st in list(statuses.items()) + list(lstatuses.items()):
        if st.group["blocked_writers"] != 0:
            problems.append(f"{node}: blocked_writers={st.group['blocked_writers']} after every writer finished")

    dropped = {}
    for name, m in spec.items():
        p, missed = ck.check_member(m, got[name], ref, traffic, st_of[name])
        problems += [f"{p} (on {owner[name]})" for p in p]
        if m.drops:
            dropped[name] = missed
    stuck = st_of["stuck"]
    if (stuck["queued"], stuck["delivered"], stuck["dropped"], stuck["full"]) != (1, 1, 0, 1):
        problems.append(f"stuck: queued={stuck['queued']} delivered={stuck['delivered']} dropped={stuck['dropped']}, "
                        "expected its one message and nothing since")
    for name in talkers:
        problems += ck.check_peer(name, seqs["peer:" + name], ref, {w for w, n in traffic.sender.items() if n == name})
    for name, m in st_of.items():
        if m["peer_queued"] != 0:
            problems.append(f"{name}: peer_queued={m['peer_queued']} once its reader drained it")

    # Frames: the stream's sequence, 1 (the fill) .. the last accepted.
    last_sequence = len(accepted) + 1
    framed_readers = dict(got) | {t["name"]: [t["log"]] for t in transients}
    p, framed = ck.check_framed_view(framed_readers, ref, last_sequence, stress.creds_of(wids), traffic, spec, st_of,
                                     before={1})
    problems += p

    timeline = ck.Timeline(ref, attempts)
    must_have = 0
    stored_before_join = Counter()
    for t in transients:
        want = (lambda x, pat=t["patterns"]: traffic.matches(pat, x)) if t["patterns"] else None
        rest, cut = cut_stored_before_join(seqs[t["name"]], timeline, t, want)
        if cut:
            stored_before_join["members"] += 1
            stored_before_join["messages"] += len(cut)
        p, needed = ck.check_transient(t["name"], rest, timeline, t, want, relayed=True)
        problems += p
        must_have += needed
    problems += ck.check_pairwise_order(seqs)

    # --- the checker: the line group ------------------------------------------------------------
    problems += lproblems
    ltraffic.starts = {m: line_start(m, n) for m, n in ltraffic.accepted.items()}
    for wid, wl in lwlogs.items():
        if len(wl.accepted) != (max(wl.attempts) + 1 if wl.attempts else 0):
            problems.append(f"line writer {wid}: {len(wl.accepted)} lines delivered of {len(wl.attempts)}")
    lseqs, p = stress.received(lgot, ltraffic)
    problems += p
    lref, p = stress.check_anchor(lseqs, ltraffic, "lanchor", "lines")
    problems += p
    for name, m in lspec.items():
        p, missed = ck.check_member(m, lgot[name], lref, ltraffic, lst_of[name])
        problems += [f"{p} (on {lowner[name]})" for p in p]
        if m.drops:
            dropped[name] = missed
    for name in ltalkers:
        problems += ck.check_peer(name, lseqs["peer:" + name], lref,
                                  {w for w, n in ltraffic.sender.items() if n == name})
    # a line flushed by fsync or close (mclw's Z lines) carries its writer too
    p, lframed = ck.check_framed_view(lgot, lref, len(ltraffic.accepted), stress.creds_of(lwids), ltraffic, lspec,
                                      lst_of)
    problems += p
    problems += ck.check_pairwise_order(lseqs)

    # --- figures -----------------------------------------------------------------------------------
    def deliveries(readers_of, framed_view: bool) -> int:
        return sum(len(r.msgs) for rl in readers_of for r in rl if isinstance(r, ck.FrameLog) == framed_view)

    all_record = list(got.values()) + [[t["log"]] for t in transients]
    node_of_reader = {name: rs[0].info["node"] for name, rs in readers.items()}
    by_node = {n: sum(len(r.msgs) for name, rl in list(got.items()) + list(lgot.items())
                      if node_of_reader[name] == n for r in rl) +
               sum(len(t["log"].msgs) for t in transients if t["name"][1] == n[1]) for n in NODES}
    ends = {wid: ck_end(w.log) for wid, w in wids.items()}
    lends = [ck_end(w.log) for w in lwids.values()]
    sizes = [accepted[m] for m in ref]
    filtered = {n: m.patterns or m.either for n, m in spec.items() if m.patterns or m.either}
    figures = dict(
        seed=seed, scale=current_scale().name, nodes=len(NODES), servers=servers, cluster_backlog=BACKLOG, pace=pace,
        signal_blocking_writers=SIGNAL_BLOCKING_WRITERS,
        writers={n: sum(1 for w in writers if w.info["node"] == n) for n in NODES},
        members={n: sum(1 for v in list(owner.values()) + list(lowner.values()) if v == n) for n in NODES},
        transient_members={n: sum(1 for t in transients if t["name"][1] == n[1]) for n in NODES},
        transient_filtered=sum(1 for t in transients if t["patterns"]),
        transient_framed=sum(1 for t in transients if t["framed"]),
        transient_empty=sum(1 for t in transients if not t["log"].msgs), transient_must_have_checked=must_have,
        attempts=len(attempts), accepted=len(accepted), failed=fails,
        private_accepted=sum(1 for m in accepted if traffic.private(m)),
        large_msgs=sum(1 for s in sizes if s > 65536), max_size=max(sizes, default=0), bytes_accepted=sum(sizes),
        deliveries_checked=sum(len(r.msgs) for rl in all_record + list(lgot.values()) for r in rl),
        deliveries_by_node=by_node,
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
        line_framed_view_deliveries=deliveries(lgot.values(), True),
        line_peer_deliveries=len(lseqs["peer:lw0"]),
        line_writes=sum(e.get("writes", 0) for e in lends), line_short_writes=sum(e.get("shorts", 0) for e in lends),
        line_tails_flushed_by_fsync=sum(e.get("fsyncs", 0) for e in lends),
        line_tails_flushed_by_close=sum(e.get("closeflush", 0) for e in lends),
        line_failed=lfails,
        sigusr1=usr1, sigstop=stops, signalled_writers=len(signalled),
        settings_changes=tuned,
        status_snapshots_checked={n: samples[n].get("n", 0) + samples["l" + n].get("n", 0) for n in NODES},
        sent={n: statuses[n].group["sent"] for n in NODES},
        writers_s=round(t_writers, 2), drained_s=round(t_drained, 2), total_s=round(t_total, 2),
        setup_s=round(t_start - t_begin, 2),
    )
    for node, m in nodes.items():
        problems += [f"{node}: {x}" for x in stress.stop_daemon(m)]
    figures["defect_stored_before_join"] = dict(stored_before_join)
    figures["defect_ctl_enoent_retried"] = RetriedGroup.enoent
    figures["problems"] = len(problems)
    record(test, **figures)
    if problems:
        # for whoever reads the logs: every problem, and the transients' times
        (logs / "problems.txt").write_text("\n".join(problems) + "\n")
        (logs / "transients.json").write_text(json.dumps([{k: v for k, v in t.items() if k not in ("reader", "log")}
                                                          for t in transients]))
    assert not problems, f"{len(problems)} problems (seed {seed}):\n{stress.show(problems)}"


@pytest.mark.timeout(420)
def test_everything_in_one_run_across_three_nodes(nats_server, mount_factory, rbin, tmp_path, workdir_base):
    run_everything_across_nodes(nats_server, mount_factory, rbin, tmp_path, workdir_base, "cluster_everything",
                                servers=1)


@pytest.mark.timeout(420)
def test_everything_in_one_run_across_three_nodes_on_three_servers(nats_cluster, mount_factory, rbin, tmp_path,
                                                                    workdir_base):
    """The same, at half the messages, on a cluster of three servers, each node on its
    own: the group's stream on one of them, every write and every delivery of the two
    other nodes through the cluster's routes. (With replicas=3 the runs stalled here:
    tests/reliability/README.md, part 1d.)"""
    run_everything_across_nodes(nats_cluster, mount_factory, rbin, tmp_path, workdir_base,
                                "cluster_everything_three_servers", servers=3, timeout=5, pace=2)


# --- known defects ------------------------------------------------------------------------
#
# Found by the run above (or by test_writers_and_members_on_three_nodes_one_order_exactly_once
# above): each one shown alone, as small as it goes. The run avoids or cuts off what they do
# (SIGNAL_BLOCKING_WRITERS, FSYNC_TAILS_PCT, cut_stored_before_join) until they are fixed.

INTERRUPTIBLE_WRITER = r"""
import os, signal, sys
class Interrupted(Exception):
    pass
def on_usr1(*_):
    raise Interrupted()
signal.signal(signal.SIGUSR1, on_usr1)
fd = os.open(sys.argv[1], os.O_WRONLY)
print("ready", flush=True)
try:
    os.write(fd, sys.argv[2].encode())
    print("written", flush=True)
except Interrupted:
    print("interrupted", flush=True)
"""


def in_write(pid: int) -> bool:
    """The process sleeps in write(2) (syscall 1 on x86-64, 64 on arm64)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[0] == ("64" if os.uname().machine == "aarch64" else "1")
    except (OSError, IndexError):
        return False


def full_stream(nats, mount_factory, group: str, backlog: int, extra: str = ""):
    """Nodes a and b; on a, member `full` (capacity 1, never read); from b, non-blocking
    writes until the stream says it is full. Returns (a's group, b's group, the messages
    stored)."""
    a = node_mount(mount_factory, nats, "a", f"cluster_backlog={backlog}")
    b = node_mount(mount_factory, nats, "b")
    ga, gb = Group(a.path, group), Group(b.path, group)
    os.mkdir(ga.p())
    assert appears(gb.p())
    if extra:
        ga.set(message=extra)
        assert wait_for_all(lambda: gb.status().group["message"] == extra, 5)
    ga.member("full", capacity=1)
    assert wait_for_all(lambda: gb.status().members.get("full", {}).get("capacity") == 1, 5)
    fd = os.open(gb.p("send"), os.O_WRONLY | os.O_NONBLOCK)
    try:
        stored = fill_until_full(fd, backlog + 10)
    finally:
        os.close(fd)
    return ga, gb, stored


def fill_until_full(fd, most):
    """Non-blocking writes of `fill` until the stream stays full: a's delivery
    of what was just stored into a member with room acks it, and makes room,
    a moment after the writes found none (a test's first blocking write was
    then stored at once, once in CI). Returns how many were stored."""
    stored = 0
    while True:
        wrote = 0
        try:
            while stored < most:
                os.write(fd, b"fill\n")
                stored += 1
                wrote += 1
        except BlockingIOError:
            pass
        assert stored < most, "the stream never filled"
        if wrote == 0:
            return stored
        time.sleep(0.2)


@pytest.mark.timeout(60)
def test_a_blocking_write_queued_behind_a_parked_one_is_interrupted_by_a_signal(nats_server, mount_factory):
    ga, gb, _ = full_stream(nats_server, mount_factory, "queued", backlog=2)
    kids = []
    try:
        for k in range(2):
            p = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE_WRITER, gb.p("send"), f"w{k}"],
                                 stdout=subprocess.PIPE, text=True)
            kids.append(p)
            assert p.stdout.readline().strip() == "ready"
            assert wait_for_all(lambda: in_write(p.pid), 5), "the write did not wait for room"
            time.sleep(0.2)   # parked (the first), queued behind it (the second)
        kids[1].send_signal(signal.SIGUSR1)
        try:
            second = kids[1].communicate(timeout=2)[0].strip()
        except subprocess.TimeoutExpired:
            second = "still blocked 2 s after SIGUSR1"
        kids[0].send_signal(signal.SIGUSR1)
        first = kids[0].communicate(timeout=5)[0].strip()
    finally:
        os.unlink(ga.p("full"))
        for p in kids:
            try:
                p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
    assert first == "interrupted"
    assert second == "interrupted"


@pytest.mark.timeout(240)
def test_a_signal_as_a_parked_write_gets_its_turn_leaves_no_writer_waiting_for_ever(nats_server, mount_factory,
                                                                                      rbin, tmp_path):
    if current_scale().name != "long":
        pytest.skip("a race: it takes 7 to 24 s of signals to hit it; RELIABILITY_SCALE=long runs it (up to 120 s)")
    a = node_mount(mount_factory, nats_server, "a", "cluster_backlog=4")
    b = node_mount(mount_factory, nats_server, "b")
    ga, gb = Group(a.path, "turn"), Group(b.path, "turn")
    os.mkdir(ga.p())
    assert appears(gb.p())
    ga.member("slow", capacity=1)
    assert wait_for_all(lambda: gb.status().members.get("slow", {}).get("capacity") == 1, 5)
    log = str(tmp_path / "r-slow.log")
    r = procs.reader(rbin, ga.p("slow"), log, delay_us=500)
    # Blocking writers on b: the stream is full all along, each write parks and has its turn.
    ws = [procs.writer(rbin, gb.p("send"), k, str(tmp_path / f"w{k}.log"), wspan=WSPAN, deadline_ms=150_000,
                       seed=k + 1, nonblock_pct=0, large_pm=0, medium_pct=0) for k in range(6)]
    rng = random.Random(1)
    t0 = time.monotonic()
    last, since, stuck, sent = -1, time.monotonic(), None, 0
    try:
        while time.monotonic() - t0 < 120 and stuck is None:
            for _ in range(50):
                os.kill(rng.choice(ws).pid, signal.SIGUSR1)
                sent += 1
                time.sleep(rng.uniform(0.0005, 0.003))
            n = count_messages(log)
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since > 3:   # the backstop retries every cluster_timeout (2 s)
                stuck = round(time.monotonic() - t0, 1)
    finally:
        # A write the daemon holds cannot be killed (the kernel waits for its answer): the
        # daemon's end answers them.
        for w in ws:
            if w.alive():
                w.proc.send_signal(signal.SIGKILL)
        if stuck is not None:
            b.stop(signal.SIGTERM, timeout=30.0)
        for w in ws:
            w.kill()
        os.unlink(ga.p("slow"))
        r.wait(10)
    assert stuck is None, f"no message delivered for 3 s: every writer of b waits for ever ({sent} signals, " \
                          f"{last} messages, stuck after {stuck} s)"


# Fixed: what a node delivered to a member while its join was under way, and
# was stored before the join, stayed queued for it (10 to 18 of 40 members
# here got one or two such messages). A member now joins its node's group
# awaiting its sequence: what comes meanwhile is kept aside, uncounted, and
# what was stored after S_join is queued once S_join is known.
@pytest.mark.timeout(60)
def test_a_member_receives_nothing_stored_before_it_joined(nats_server, mount_factory):
    ga, gb, stored = full_stream(nats_server, mount_factory, "late", backlog=64)
    got = []

    def drain():
        fd = os.open(ga.p("full"), os.O_RDONLY)
        try:
            while len(got) < stored:
                got.append(os.read(fd, 65536))
                time.sleep(0.002)
        finally:
            os.close(fd)

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    # Members made on a while a delivers what was stored before any of them.
    late = []
    while t.is_alive() and len(late) < 40:
        late.append(ga.member(f"late{len(late)}"))
    t.join(20)
    assert len(got) == stored and len(late) >= 10, (len(got), stored, len(late))
    received = {os.path.basename(m): n for m in late if (n := len(ga.take(os.path.basename(m))))}
    assert received == {}, f"{len(received)} of {len(late)} members got messages stored before they joined"


# Fixed: fsync(2) on a clustered group's line tail sent it and returned at
# once, and when the stream was full the writer's next line was stored
# before it (3 to 6 rounds of 8). fsync now waits until the tail is in
# (LineIO.swift, syncLine), and the kernel holds the file's inode lock over
# it, so nothing written through the file meanwhile can overtake it.
@pytest.mark.timeout(90)
def test_a_line_tail_flushed_by_fsync_keeps_its_place_before_the_writers_next_lines(nats_server, mount_factory):
    """fsync of a line tail while the stream is full waits for room, and the
    next line, written meanwhile through the same open file by another
    thread, is stored after the tail."""
    ga, gb, _ = full_stream(nats_server, mount_factory, "tails", backlog=2, extra="line")
    fd = os.open(gb.p("send"), os.O_WRONLY | os.O_NONBLOCK)
    rfd = os.open(ga.p("full"), os.O_RDONLY)
    orders, waited = [], 0
    try:
        for r in range(8):
            fill_until_full(fd, 1000)   # the reader of the last round drained `full`
            tail, line = b"tail%d" % r, b"next%d\n" % r
            os.write(fd, tail)   # no newline: it waits in the file's pending line

            def next_line():
                while True:
                    try:
                        os.write(fd, line)
                        return
                    except BlockingIOError:
                        time.sleep(0.005)

            sync = threading.Thread(target=os.fsync, args=(fd,), daemon=True)
            sync.start()
            time.sleep(0.1)
            writer = threading.Thread(target=next_line, daemon=True)
            writer.start()
            time.sleep(0.1)
            waited += sync.is_alive()   # nobody reads `full` yet: no room
            got = []
            deadline = time.monotonic() + 10
            while (tail not in got or line not in got) and time.monotonic() < deadline:
                got.append(os.read(rfd, 65536))
            sync.join(5)
            writer.join(5)
            assert not sync.is_alive() and not writer.is_alive(), f"round {r}: fsync or the next write never returned"
            orders.append([x.decode().strip() for x in got if x in (tail, line)])
    finally:
        os.close(rfd)
        os.close(fd)
    assert waited == len(orders), f"fsync returned with the stream full in {len(orders) - waited} of {len(orders)} rounds"
    overtaken = [(r, o) for r, o in enumerate(orders) if o != [f"tail{r}", f"next{r}"]]
    assert not overtaken, f"the next line was not stored after the tail in {len(overtaken)} of {len(orders)} rounds: {overtaken}"


# Fixed: on a cluster of three servers, `ctl member NAME ...` written on
# NAME's node just after NAME was made sometimes failed with ENOENT. The
# node read the member's record back with nats.c's kvStore_Get, a direct get
# that any replica answers, and the one its server had was a moment behind
# the create (1 failure in 270 tries with the previous daemon; in the run of
# everything across three servers it once killed the thread of members
# coming and going). A bucket is now read from its stream's leader
# (NATSClient, KeyValueBucket.get): 0 failures in 3,000 tries.
@pytest.mark.timeout(300)
def test_ctl_of_a_member_just_made_finds_it_on_three_servers(nats_cluster, mount_factory):
    if current_scale().name != "long":
        pytest.skip("a race whose odds follow the machine's load (0 in 900 tries once): RELIABILITY_SCALE=long runs "
                    "it, up to 3,000 tries")
    nodes = [Group(mount_node(mount_factory, nats_cluster, node, first, "", 5).path, f"ctl{node}")
             for first, node in enumerate(("a", "b", "c"))]
    for grp in nodes:
        os.mkdir(grp.p())
    failed, tried = [], 0
    # Up to 1,000 members a node (0 to 4 in 100 failed), until the first failure.
    for k in range(1000):
        for grp in nodes:
            tried += 1
            grp.member(f"m{k}")
            try:
                grp.configure(f"m{k}", capacity=3)
            except FileNotFoundError:
                failed.append(grp.p(f"m{k}"))
            os.unlink(grp.p(f"m{k}"))
        if failed:
            break
    assert not failed, f"ctl failed with ENOENT just after the member was made: {failed} ({tried} tried)"


# Fixed: the node's event thread adopted the settings of an older record of
# its own member, heard late, after a newer change was applied here, and the
# next change then shared the reverted settings it read back: capacity=4 or
# subscribe= lost for good on every node, 10-21 of 500 here. Now a ctl shares
# its keys, applied to the bucket's record as it is (SharedCatalog.configure
# applying:), and a record older than the one the node knows is not adopted.
@pytest.mark.timeout(120)
def test_group_settings_set_just_after_mkdir_are_kept(nats_server, mount_factory):
    """The group's twin of the test below: `ctl set` right after mkdir, and
    the member made right after it takes the group's settings (a stale
    record of the new group, heard late, once put capacity back to its
    default on the node, and its member with it: a flow-control test in
    CI saw a member of capacity 256 where the group had been set to 2)."""
    a = node_mount(mount_factory, nats_server, "a")
    node_mount(mount_factory, nats_server, "b")
    made = [f"g{k}" for k in range(150)]
    for name in made:
        grp = Group(a.path, name)
        os.mkdir(grp.p())
        grp.ctl("set capacity=3")
        grp.ctl("set queue_bytes=70000")
        grp.member("m")
    time.sleep(1)   # every echo heard
    lost = {}
    for name in made:
        st = Group(a.path, name).status()
        got = (st.group["capacity"], st.group["queue_bytes"], st.members["m"]["capacity"], st.members["m"]["queue_bytes"])
        if got != (3, 70000, 3, 70000):
            lost[name] = got
    assert not lost, f"{len(lost)} of {len(made)} groups lost a setting: {dict(list(lost.items())[:5])}"


@pytest.mark.timeout(120)
def test_settings_set_just_after_a_member_was_made_are_kept(nats_server, mount_factory):
    a = node_mount(mount_factory, nats_server, "a")
    node_mount(mount_factory, nats_server, "b")   # a second node: the members bucket has two watchers
    grp = Group(a.path, "kept")
    os.mkdir(grp.p())
    made = [f"m{k}" for k in range(500)]   # 1 to 2 in 60 lost one
    for name in made:
        grp.member(name)
        grp.configure(name, capacity=4)
        grp.ctl(f"member {name} subscribe=x.{name}")
    time.sleep(1)   # every echo heard
    st = grp.status()
    lost = {n: (st.members[n]["capacity"], st.members[n]["subscribe"]) for n in made
            if (st.members[n]["capacity"], st.members[n]["subscribe"]) != (4, f"x.{n}")}
    assert not lost, f"{len(lost)} of {len(made)} members lost a setting: {dict(list(lost.items())[:5])}"
