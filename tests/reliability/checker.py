"""The checker: reads what the writers (mcw) said they wrote and what the
readers (mcr) say they received, and proves the contract's delivery rules
from the two.

A message is named by its id (writer, counter). Writers log every attempt
(`R counter ret errno ...`, and `B ...` before the write when they may be
killed), readers log every whole message (`M writer counter len`, `T hex` for
tiny ones). The checks return lists of problems (strings); a test asserts
that the list is empty and shows the first few.
"""

from __future__ import annotations

import bisect
import errno as E
import functools
import os
from collections import Counter
from dataclasses import dataclass, field

MsgId = tuple  # (writer, counter)


def errname(code: int) -> str:
    return E.errorcode.get(code, str(code))


# --- the writers' side ----------------------------------------------------------


@dataclass
class Attempt:
    counter: int
    length: int
    ret: int | None = None      # None: begun, never returned (the writer died in it)
    err: int = 0
    nonblock: int = 0
    t0: int = 0                 # CLOCK_MONOTONIC ns before write(2)
    t1: int = 0                 # ... after it returned


@dataclass
class WriterLog:
    wid: int
    attempts: dict = field(default_factory=dict)  # counter -> Attempt
    ended: bool = False
    fatal: int = 0

    @property
    def accepted(self) -> dict:
        """id -> length, for writes that returned the full length."""
        return {(self.wid, a.counter): a.length for a in self.attempts.values() if a.ret is not None and a.ret >= 0 and a.ret == a.length}

    def failed(self) -> list[Attempt]:
        return [a for a in self.attempts.values() if a.ret is not None and a.ret < 0]

    def short(self) -> list[Attempt]:
        return [a for a in self.attempts.values() if a.ret is not None and 0 <= a.ret != a.length]

    def inflight(self) -> list[Attempt]:
        """Begun and never returned: the writer died in write(2)."""
        return [a for a in self.attempts.values() if a.ret is None]


def parse_writer_log(path: str, wid: int) -> WriterLog:
    w = WriterLog(wid)
    if not os.path.exists(path):
        return w
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p or not line.endswith("\n"):
                continue  # a line cut short by SIGKILL: the write that followed never happened
            if p[0] == "B":
                c = int(p[1])
                w.attempts[c] = Attempt(c, int(p[2]), nonblock=int(p[3]), t0=int(p[4]))
            elif p[0] == "R" and len(p) == 8:
                c = int(p[1])
                a = w.attempts.setdefault(c, Attempt(c, int(p[2])))
                a.length, a.ret, a.err, a.nonblock = int(p[2]), int(p[3]), int(p[4]), int(p[5])
                a.t0, a.t1 = int(p[6]), int(p[7])
            elif p[0] == "END":
                w.ended = True
                for kv in p[1:]:
                    k, _, v = kv.partition("=")
                    if k == "fatal":
                        w.fatal = int(v)
    return w


# --- the readers' side ----------------------------------------------------------


@dataclass
class ReaderLog:
    path: str
    msgs: list = field(default_factory=list)     # [(id, length)]
    corrupt: list = field(default_factory=list)  # raw X lines
    err: int = 0
    eof: dict | None = None


def parse_reader_log(path: str, wspan: int) -> ReaderLog:
    r = ReaderLog(path)
    if not os.path.exists(path):
        return r
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p or not line.endswith("\n"):
                continue  # cut short by SIGKILL: counts as a message the killed reader took with it
            if p[0] == "M":
                r.msgs.append(((int(p[1]), int(p[2])), int(p[3])))
            elif p[0] == "T":
                raw = bytes.fromhex(p[1])
                v = int.from_bytes(raw, "little")
                r.msgs.append(((v % wspan, v // wspan), len(raw)))
            elif p[0] == "X":
                r.corrupt.append(line.strip())
            elif p[0] == "ERR":
                r.err = int(p[1])
            elif p[0] == "EOF":
                r.eof = {k: int(v) for k, v in (kv.split("=") for kv in p[1:])}
    return r


# --- checks -----------------------------------------------------------------------


def check_reader_health(name: str, logs: list[ReaderLog], need_eof: bool = True) -> list[str]:
    out = []
    for r in logs:
        for x in r.corrupt[:5]:
            out.append(f"{name}: corrupt message ({r.path}): {x}")
        if r.err:
            out.append(f"{name}: read failed with {errname(r.err)} ({r.path})")
        if need_eof and r.eof is None:
            out.append(f"{name}: reader never reached end of file ({r.path})")
    return out


def check_received_were_accepted(name: str, msgs, accepted: dict, attempts: dict) -> list[str]:
    """Every message a member received was accepted (its write returned the
    full length) and has the length that was written."""
    out = []
    for mid, length in msgs:
        if mid in accepted:
            if accepted[mid] != length:
                out.append(f"{name}: {mid} has {length} bytes, {accepted[mid]} were written")
            continue
        a = attempts.get(mid)
        if a is None:
            out.append(f"{name}: received {mid}, which no writer attempted")
        elif a.ret is None:
            continue  # the writer died in write(2): judged by the caller
        else:
            out.append(f"{name}: received {mid} ({a.length} bytes), whose write failed: "
                       f"ret={a.ret} {errname(a.err) if a.ret < 0 else ''}")
    return out


def check_no_duplicates(name: str, ids) -> list[str]:
    dup = [m for m, n in Counter(ids).items() if n > 1]
    return [f"{name}: {len(dup)} messages received more than once, e.g. {dup[:5]}"] if dup else []


def check_received(name: str, logs: list, accepted: dict, attempts: dict) -> list[str]:
    """What one member's readers (logs) got: each reader healthy (no corrupt
    message, no read error, end of file reached), every message accepted and
    of the length written, each writer's order kept by every reader, and no
    message twice among them."""
    out = check_reader_health(name, logs)
    for k, r in enumerate(logs):
        label = name if len(logs) == 1 else f"{name}[{k}]"
        out += check_received_were_accepted(label, r.msgs, accepted, attempts)
        out += check_writer_order(label, [m for m, _ in r.msgs])
    return out + check_no_duplicates(name, [m for r in logs for m, _ in r.msgs])


def check_max_message_edges(w: WriterLog, max_message: int) -> list[str]:
    """A writer run with mcw -x: its attempt 1, exactly max_message bytes,
    was accepted whole (or, waiting, interrupted by the run's own signals:
    EINTR, nothing sent); its attempt 2, one byte more, failed with EMSGSIZE."""
    out = []
    one, two = w.attempts.get(1), w.attempts.get(2)
    if one and one.ret != max_message and not (one.ret == -1 and one.err == E.EINTR):
        out.append(f"a write of exactly max_message ({max_message}) returned {one.ret} {errname(one.err)}")
    if two and not (two.ret == -1 and two.err == E.EMSGSIZE):
        out.append(f"a write of max_message + 1 returned {two.ret} {errname(two.err)}, expected EMSGSIZE")
    return out


def check_writer_order(name: str, ids) -> list[str]:
    """Each writer's messages arrive in the order written (counters increase)."""
    last: dict = {}
    for wid, c in ids:
        if wid in last and c <= last[wid]:
            return [f"{name}: writer {wid}'s message {c} arrived after its message {last[wid]}"]
        last[wid] = c
    return []


def check_follows(name: str, ids, pos: dict) -> list[str]:
    """ids appear in the reference order (strictly increasing positions)."""
    prev = -1
    prev_id = None
    for mid in ids:
        p = pos.get(mid)
        if p is None:
            return [f"{name}: {mid} is not in the reference sequence"]
        if p <= prev:
            return [f"{name}: {mid} (reference position {p}) came after {prev_id} (position {prev}): "
                    "two members disagree on the order"]
        prev, prev_id = p, mid
    return []


def check_pairwise_order(seqs: dict) -> list[str]:
    """Every pair of members saw their common messages in the same order
    (checked directly, without a reference): the common messages, in the
    order of the shorter sequence, have increasing positions in the other."""
    out = []
    names = sorted(seqs)
    sets = {n: set(seqs[n]) for n in names}
    positions: dict = {}

    def pos(n):
        if n not in positions:
            positions[n] = {m: i for i, m in enumerate(seqs[n])}
        return positions[n]

    for i, a in enumerate(names):
        for b in names[i + 1:]:
            x, y = (a, b) if len(seqs[a]) <= len(seqs[b]) else (b, a)
            if sets[x].isdisjoint(sets[y]) or seqs[x] == seqs[y]:
                continue
            common = [m for m in seqs[x] if m in sets[y]]
            py = pos(y)
            k = next((j for j in range(1, len(common)) if py[common[j]] <= py[common[j - 1]]), None)
            if k is not None:
                out.append(f"{a} and {b} disagree on the order of their common messages: {x} has "
                           f"{common[k - 1]} before {common[k]}, {y} after")
    return out


def check_exact(name: str, got, expected) -> list[str]:
    """got is exactly expected (same messages, same order)."""
    if list(got) == list(expected):
        return []
    gs, es = set(got), set(expected)
    missing = [m for m in expected if m not in gs]
    extra = [m for m in got if m not in es]
    if missing or extra:
        return [f"{name}: {len(missing)} missing (e.g. {missing[:5]}), {len(extra)} unexpected "
                f"(e.g. {extra[:5]}); got {len(got)}, expected {len(expected)}"]
    k = next(j for j in range(min(len(got), len(expected))) if got[j] != expected[j])
    return [f"{name}: order differs at #{k}: got {got[k]}, expected {expected[k]}"]


def check_contiguous(name: str, got, ref, own=frozenset()) -> tuple[list[str], tuple[int, int] | None]:
    """got is a contiguous run of ref (less `own`, the member's own messages),
    with no gap: the member received everything from its first message to its
    last. Returns (problems, (first, last) positions in ref or None)."""
    if not got:
        return [], None
    pos = {m: i for i, m in enumerate(ref)}
    if got[0] not in pos or got[-1] not in pos:
        return [f"{name}: received messages not in the reference"], None
    lo, hi = pos[got[0]], pos[got[-1]]
    expected = [m for m in ref[lo:hi + 1] if m not in own]
    return check_exact(f"{name} (run {lo}..{hi} of the reference)", got, expected), (lo, hi)


# --- the framed view ------------------------------------------------------------


@dataclass
class Frame:
    mid: MsgId
    length: int
    seq: int
    pid: int
    uid: int
    gid: int
    dropped: int
    name: str       # "" for a message written on send, or a private one
    private: bool = False   # flags bit 0: sent to this member alone through G/peers/NAME


@dataclass
class FrameLog(ReaderLog):
    frames: list = field(default_factory=list)     # [Frame], in the order read
    emsgsize: list = field(default_factory=list)   # [(buffer size, size of the frame that did not fit)]


def parse_frame_log(path: str, wspan: int) -> FrameLog:
    """The log of mcfr, a framed reader: its messages as a ReaderLog's, and
    every frame's metadata."""
    r = FrameLog(path)
    if not os.path.exists(path):
        return r
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p or not line.endswith("\n"):
                continue
            if p[0] == "F" and len(p) in (10, 11):
                mid, length, meta = (int(p[1]), int(p[2])), int(p[3]), p[4:]
            elif p[0] == "G" and len(p) in (8, 9):
                raw = bytes.fromhex(p[1])
                v = int.from_bytes(raw, "little")
                mid, length, meta = (v % wspan, v // wspan), len(raw), p[2:]
            elif p[0] == "E":
                r.emsgsize.append((int(p[1]), int(p[2])))
                continue
            elif p[0] == "X":
                r.corrupt.append(line.strip())
                continue
            elif p[0] == "ERR":
                r.err = int(p[1])
                continue
            elif p[0] == "EOF":
                r.eof = {k: int(v) for k, v in (kv.split("=") for kv in p[1:])}
                continue
            else:
                continue
            seq, pid, uid, gid, dropped = map(int, meta[:5])
            r.msgs.append((mid, length))
            r.frames.append(Frame(mid, length, seq, pid, uid, gid, dropped, "" if meta[5] == "-" else meta[5],
                                  private=meta[6:] == ["P"]))
    return r


def check_frames(name: str, frames, creds: dict) -> list[str]:
    """Sequence numbers strictly increase in what one reader reads, and every
    frame carries its writer's credentials: creds maps a writer id to (pid,
    uid, gid, sending member name or ""). A line tail flushed by fsync(2) or
    close(2) is no exception: it carries the writer of its last bytes."""
    out = []
    prev = None
    for f in frames:
        if prev is not None and f.seq <= prev.seq:
            out.append(f"{name}: sequence {f.seq} of {f.mid} after {prev.seq} of {prev.mid}")
            break
        prev = f
    for f in frames:
        want = creds.get(f.mid[0])
        got = (f.pid, f.uid, f.gid, f.name)
        if want is None:
            out.append(f"{name}: frame of {f.mid} from an unknown writer")
            break
        if got != want:
            out.append(f"{name}: frame of {f.mid} has pid/uid/gid/sender {got}, its writer is {want}")
            break
    return out


def check_one_sequence(frames_by_member: dict) -> tuple[list[str], dict]:
    """A message has one sequence number, whichever member it reached, and two
    messages never share one. Returns (problems, {id: sequence})."""
    seq_of: dict = {}
    id_of: dict = {}
    out = []
    for name, frames in frames_by_member.items():
        for f in frames:
            if seq_of.setdefault(f.mid, f.seq) != f.seq:
                out.append(f"{name}: {f.mid} has sequence {f.seq}, elsewhere {seq_of[f.mid]}")
                return out, seq_of
            if id_of.setdefault(f.seq, f.mid) != f.mid:
                out.append(f"{name}: sequence {f.seq} is {f.mid}, elsewhere {id_of[f.seq]}")
                return out, seq_of
    return out, seq_of


def check_dropped(name: str, frames, sent: int, status_dropped: int, first_seq: int = 1) -> list[str]:
    """For a drop-when-full member that never sends and was there from the
    group's first message (first_seq): each frame's `dropped` is the gap in
    sequence numbers before it, and the member's `dropped` in status is their
    sum plus what it missed after its last frame."""
    out = []
    prev = first_seq - 1
    total = 0
    for f in frames:
        gap = f.seq - prev - 1
        if f.dropped != gap:
            out.append(f"{name}: frame {f.seq} ({f.mid}) says dropped={f.dropped}, the gap before it is {gap}")
            break
        total += f.dropped
        prev = f.seq
    trailing = sent - prev
    if status_dropped != total + trailing:
        out.append(f"{name}: status dropped={status_dropped}, frames say {total} and {trailing} more after the last")
    return out


def check_emsgsize(name: str, events) -> list[str]:
    """A framed read fails with EMSGSIZE only when the first frame, padded to
    8 bytes, does not fit its buffer (for a member with one reader, whose next
    frame is the one that did not fit)."""
    return [f"{name}: EMSGSIZE with a {buf}-byte buffer for a frame of {size} bytes"
            for buf, size in events if ((size + 7) & ~7) <= buf][:3]


# --- one model of recipients for every kind of member ----------------------------
#
# The mixed run (test_mixed_stress.py) puts every kind of writer and member in
# one group, so that what a member must get depends on all of its settings at
# once: its filter, loopback, drop_when_full, and the private messages written
# to it. `Traffic` is what the writers did; `Member` what the checker knows of
# a member present throughout; `Traffic.addressed` says whether the contract
# makes a member a recipient of a message, and check_member proves that the
# member got exactly those (or, dropping, those less exactly its `dropped`).


def payload_start(mid: MsgId, length: int, wspan: int) -> bytes:
    """The first bytes of a message of c/payload.h, enough for its topic: a
    full message (16 bytes or more) begins with its length (< 2^24, so its
    fourth byte is a NUL that ends the topic) and its writer id; a tiny one is
    the number it encodes."""
    wid, counter = mid
    if length >= 16:
        return length.to_bytes(4, "little") + wid.to_bytes(2, "little")
    return (counter * wspan + wid).to_bytes(length, "little")


def _topicfilter():
    import topicfilter  # tests/lib: on the path of every suite that mounts mcastfs

    return topicfilter


@functools.lru_cache(maxsize=None)
def _parsed(patterns: str) -> tuple:
    return _topicfilter().parse(patterns)


@dataclass
class Member:
    """A member present from before the first message to after the last.
    patterns: its subscribe= all along ("" every message); either: its
    patterns changed all along between lists that this one joins (then the
    checker only proves that it got nothing that none of them matches);
    drops: drop_when_full at some moment of the run."""
    name: str
    patterns: str = ""
    loopback: bool = False
    drops: bool = False
    either: str | None = None


@dataclass
class Traffic:
    """One group's writers: every accepted message (id -> length) and every
    attempt, the member each writer sent as (absent: `send`), the member each
    private writer wrote to, and each message's first bytes (for its topic)."""
    accepted: dict
    attempts: dict
    sender: dict = field(default_factory=dict)      # writer id -> member name
    private_to: dict = field(default_factory=dict)  # writer id -> member name
    starts: dict = field(default_factory=dict)      # id -> payload_start (only needed with filters)

    def private(self, mid: MsgId) -> bool:
        return mid[0] in self.private_to

    def matches(self, patterns: str, mid: MsgId) -> bool:
        return patterns == "" or _topicfilter().matches(_parsed(patterns), self.starts[mid])

    def addressed(self, m: Member, mid: MsgId) -> bool:
        """The contract's recipients: a private message goes to its member
        alone, whatever that member's filter; a group message to every member
        whose patterns match it, but its sender unless loopback=1."""
        if mid[0] in self.private_to:
            return self.private_to[mid[0]] == m.name
        if self.sender.get(mid[0]) == m.name and not m.loopback:
            return False
        return self.matches(m.patterns, mid)


def check_member(m: Member, logs: list, ref: list, traffic: Traffic, status: dict) -> tuple[list[str], int]:
    """A member present throughout, read by one or more readers (logs):
    - no private message written to another member;
    - what each reader got of the group messages follows the group order (ref);
    - without drops, the member got exactly the group messages addressed to it
      (with one reader: in that order) and every private message written to
      it, each once; dropping, a part of each, and its `dropped` is exactly the
      number it misses; without drop_when_full, `dropped` is 0;
    - with `either`, nothing that none of its lists matches;
    - `delivered` is what its readers got.
    Returns (problems, messages it missed)."""
    out = []
    name = m.name
    pos = {x: i for i, x in enumerate(ref)}
    parts = [[x for x, _ in r.msgs] for r in logs]
    union = [x for p in parts for x in p]
    privs = [x for x in union if traffic.private(x)]
    foreign = [x for x in privs if traffic.private_to[x[0]] != name]
    if foreign:
        out.append(f"{name}: got {len(foreign)} private messages written to other members, e.g. {foreign[:3]}")
    group_parts = [[x for x in p if not traffic.private(x)] for p in parts]
    for k, p in enumerate(group_parts):
        out += check_follows(name if len(parts) == 1 else f"{name}[{k}]", p, pos)
    got_group = [x for p in group_parts for x in p]
    missing = 0
    if m.either is not None:
        wrong = [x for x in got_group if not traffic.matches(m.either, x)]
        if wrong:
            out.append(f"{name}: got {len(wrong)} messages that none of its patterns match, e.g. {wrong[:3]}")
    else:
        want = [x for x in ref if traffic.addressed(m, x)]
        if len(parts) == 1 and not m.drops:
            out += check_exact(name, got_group, want)
        else:
            ws, gs = set(want), set(got_group)
            extra = [x for x in got_group if x not in ws]
            if extra:
                out.append(f"{name}: got {len(extra)} group messages not addressed to it, e.g. {extra[:3]}")
            if not m.drops and (gs != ws or len(got_group) != len(want)):
                out.append(f"{name}: its {len(parts)} readers got {len(got_group)} group messages "
                           f"({len(gs)} distinct), {len(want)} were addressed to it")
            missing += len(ws - gs)
    want_priv = sorted(x for x in traffic.accepted if traffic.private_to.get(x[0]) == name)
    mine = sorted(x for x in privs if traffic.private_to[x[0]] == name)
    if m.drops:
        if not set(mine) <= set(want_priv):
            out.append(f"{name}: got private messages that were not accepted for it")
        missing += len(set(want_priv) - set(mine))
    elif mine != want_priv:
        out += check_exact(f"{name} (private, by writer)", mine, want_priv)
    if status is None:
        return out + [f"{name} is missing from the status snapshot"], missing
    if m.drops and m.either is None and status["dropped"] != missing:
        out.append(f"{name}: status dropped={status['dropped']}, but it misses {missing} of the messages "
                   "addressed to it")
    if not m.drops and status["dropped"] != 0:
        out.append(f"{name}: dropped={status['dropped']} without drop_when_full")
    if status["delivered"] != len(union):
        out.append(f"{name}: status delivered={status['delivered']}, its readers got {len(union)}")
    return out, missing


def check_peer(name: str, got, ref, talker_wids) -> list[str]:
    """A talker's peer (send_to_peer=1 all along) got exactly what the talker
    sent, in the group order: nobody else's messages, and none of its own
    missing (atomic with every other recipient)."""
    return check_exact(f"peers/{name}", list(got), [x for x in ref if x[0] in talker_wids])


def check_private_flags(name: str, frames, traffic: Traffic) -> list[str]:
    """Frames of private messages have flags bit 0; no other frame has it."""
    wrong = [f.mid for f in frames if f.private != traffic.private(f.mid)]
    return [f"{name}: private flag wrong on {len(wrong)} frames (e.g. {wrong[:3]})"] if wrong else []


def check_dropped_among(name: str, frames, addressed: list[int], status_dropped: int) -> list[str]:
    """A drop-when-full member that was there from the start: the `dropped`
    of each frame is the number of sequence numbers addressed to it (sorted:
    group messages it matches and its private ones) between the previous
    frame and this one; with what it missed after the last frame they make
    its status."""
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


def addressed_sequences(m: Member, traffic: Traffic, seq_of: dict, sent: int, before=()) -> tuple[list[str], list[int]]:
    """The sequence numbers of the messages addressed to m, for
    check_dropped_among. A message no framed reader got has no number seen:
    that can only be one m dropped (one of its private messages), and then its
    number is one of those nobody saw (1 .. sent, less `before`: numbers taken
    before m joined). Returns (problems, sorted numbers)."""
    unseen_msgs = [x for x in traffic.accepted if x not in seq_of]
    unseen = sorted(set(range(1, sent + 1)) - set(seq_of.values()) - set(before))
    out = []
    if len(unseen) != len(unseen_msgs):
        out.append(f"{len(unseen_msgs)} accepted messages reached no framed reader, but {len(unseen)} sequence "
                   f"numbers of 1 .. sent={sent} were seen nowhere")
    strays = [x for x in unseen_msgs if not (traffic.private(x) and traffic.addressed(m, x))]
    if strays:
        out.append(f"{m.name}: {len(strays)} accepted messages that are not its own private ones reached no framed "
                   f"reader (e.g. {strays[:3]}): its drops cannot be told from theirs")
    seqs = sorted({s for x, s in seq_of.items() if x in traffic.accepted and traffic.addressed(m, x)} | set(unseen))
    return out, seqs


class Timeline:
    """The group order with each message's write times, for check_transient."""

    def __init__(self, ref: list, attempts: dict):
        self.ref = ref
        self.attempts = attempts
        self.pos = {x: i for i, x in enumerate(ref)}
        self.by_t0 = sorted((attempts[x].t0, x) for x in ref)
        self.t0s = [t for t, _ in self.by_t0]


def check_transient(name: str, got, tl: Timeline, times: dict, want=None,
                    relayed: bool = False) -> tuple[list[str], int]:
    """A member that joined and left during the run: it got a contiguous run
    of the group order, with no gap; every message written entirely while it
    was a member (between `j1`, when its create returned, and `l0`, when its
    rm began) is in that run, and none written entirely before `j0` or after
    `l1`. times: its j0, j1, l0, l1 (CLOCK_MONOTONIC ns), and with a filter
    (want: id -> its patterns match) s0 and s1 around the subscribe command,
    made after it joined: a message written before s0 went to it unfiltered,
    one written after s1 only if it matches, one in between either way.

    relayed=True, a clustered group (docs/contract.md, "Groups across
    hosts"): its node delivers a message after the write that stored it
    returned, so a message written while it was there may still be on its
    way when it leaves, and one written before its subscribe command may
    reach it before or after the filter. What holds instead: it receives
    from the stream sequence at its join, so its run begins no later than
    the first message written after `j1` that it must get (every one of
    those up to its last message is proved); a message its filter refuses
    written after `s1` never reaches it; and of the ones written before,
    its node delivered unfiltered up to one message and filtered from there
    on, so none it got comes after one it missed.
    Returns (problems, the messages it was proved to need)."""
    out = []
    attempts = tl.attempts

    def required(x) -> bool | None:
        if want is None or want(x):
            return True
        a = attempts[x]
        if a.t1 < times["s0"] and not relayed:
            return True
        return False if a.t0 > times["s1"] else None

    span = None
    if got:
        if got[0] not in tl.pos or got[-1] not in tl.pos:
            return [f"{name}: received messages not in the group order"], 0
        span = lo, hi = tl.pos[got[0]], tl.pos[got[-1]]
        gs = set(got)
        expected = [x for x in tl.ref[lo:hi + 1] if required(x) or (required(x) is None and x in gs)]
        out += check_exact(f"{name} (run {lo}..{hi} of the group order)", got, expected)
        for x in got:
            a = attempts.get(x)
            if a is not None and (a.t1 < times["j0"] or a.t0 > times["l1"]):
                out.append(f"{name}: received {x}, written entirely outside its membership")
                break
    needed = 0
    if relayed:
        if span is None:
            return out, 0
        lo, hi = span
        missed_one = None
        for x in tl.ref[lo:hi + 1]:
            if required(x) is None:
                if x not in gs:
                    missed_one = missed_one or x
                elif missed_one is not None:
                    out.append(f"{name}: got {x}, which its filter refuses, after it missed {missed_one}, which "
                               "its filter refuses too: its filter applied, then did not")
                    break
        for t0, x in tl.by_t0[bisect.bisect_right(tl.t0s, times["j1"]):]:
            if tl.pos[x] <= hi and required(x):
                needed += 1
                if tl.pos[x] < lo:
                    a = attempts[x]
                    out.append(f"{name}: {x} was written after it joined ({times['j1']}, write {a.t0}..{a.t1}), "
                               f"before the first message it got, {got[0]}, but never arrived")
                    break
        return out, needed
    for t0, x in tl.by_t0[bisect.bisect_right(tl.t0s, times["j1"]):bisect.bisect_left(tl.t0s, times["l0"])]:
        a = attempts[x]
        if a.t1 < times["l0"] and required(x):
            needed += 1
            if span is None or not span[0] <= tl.pos[x] <= span[1]:
                out.append(f"{name}: {x} was written entirely while it was a member (joined {times['j1']}, left "
                           f"{times['l0']}, write {a.t0}..{a.t1}) but never arrived")
                break
    return out, needed


def check_snapshot(st, prev=None, *, plain=(), bounded=(), senders=0, sent_less=None, talkers=(),
                   local=None) -> list[str]:
    """One status snapshot, taken under load, and the one before it:
    - every member: queued <= delivered, delivered + dropped <= sent, and
      full=1 exactly when queued >= capacity or queued_bytes >= queue_bytes
      (the run queues far less than user_bytes);
    - `plain` members (there before the first message counted, never send,
      no filter, no private messages): the same delivered + dropped, the
      group messages so far; `sent_less` given (no private messages in the
      group), that is sent less it;
    - `bounded` members (filtered, never send, no private messages): at
      most that;
    - blocked_writers <= `senders`, the writers of the group's messages;
    - every talker: peer_full=1 when peer_queued >= capacity;
    - against the previous snapshot: sent, each member's delivered and
      dropped, and sent less the plain members' count (the private messages
      so far) never go down.
    `local` given (a node of a cluster: the names of its own members), the
    rules of one instant apply to those alone: the others' counters are
    those their node last reported (docs/contract.md, "Groups across
    hosts"), judged only against the previous snapshot."""
    out = []
    g = st.group
    sent = g["sent"]
    if g["blocked_writers"] > senders:
        out.append(f"snapshot: blocked_writers={g['blocked_writers']} with {senders} writers")
    for n, m in st.members.items():
        if local is not None and n not in local:
            continue
        if m["queued"] > m["delivered"]:
            out.append(f"snapshot: {n} queued={m['queued']} > delivered={m['delivered']}")
        if m["delivered"] + m["dropped"] > sent:
            out.append(f"snapshot: {n} delivered={m['delivered']} + dropped={m['dropped']} > sent={sent}")
        full = m["queued"] >= m["capacity"] or m["queued_bytes"] >= m["queue_bytes"]
        if bool(m["full"]) != full:
            out.append(f"snapshot: {n} full={m['full']} with queued={m['queued']}/{m['capacity']} "
                       f"queued_bytes={m['queued_bytes']}/{m['queue_bytes']}")
    for n in talkers:
        m = st.members.get(n)
        if m is not None and m["peer_queued"] >= m["capacity"] and not m["peer_full"]:
            out.append(f"snapshot: {n} peer_queued={m['peer_queued']} capacity={m['capacity']} but peer_full=0")
    counts = {}
    for n in plain:
        m = st.members.get(n)
        if m is None:
            out.append(f"snapshot: {n} missing")
        else:
            counts[n] = m["delivered"] + m["dropped"]
    if len(set(counts.values())) > 1:
        out.append(f"snapshot not consistent: delivered + dropped differ among members that get every group "
                   f"message: {counts}")
    common = max(counts.values(), default=None)
    if common is not None and sent_less is not None and common != sent - sent_less:
        out.append(f"snapshot not consistent: delivered + dropped = {common} != sent={sent} less {sent_less}")
    for n in bounded:
        m = st.members.get(n)
        if common is not None and m is not None and m["delivered"] + m["dropped"] > common:
            out.append(f"snapshot: filtered {n} has delivered + dropped = {m['delivered'] + m['dropped']}, more than "
                       f"the {common} group messages so far")
    if prev is not None:
        if sent < prev.group["sent"]:
            out.append(f"snapshot: sent went down from {prev.group['sent']} to {sent}")
        for n, m in st.members.items():
            p = prev.members.get(n)
            if p is not None and (m["delivered"] < p["delivered"] or m["dropped"] < p["dropped"]):
                out.append(f"snapshot: {n} delivered/dropped went down from {p['delivered']}/{p['dropped']} to "
                           f"{m['delivered']}/{m['dropped']}")
        pcounts = [prev.members[n]["delivered"] + prev.members[n]["dropped"] for n in plain if n in prev.members]
        if common is not None and pcounts and sent - common < prev.group["sent"] - pcounts[0]:
            out.append(f"snapshot: the private messages so far went down from {prev.group['sent'] - pcounts[0]} to "
                       f"{sent - common}")
    return out


def check_framed_view(readers: dict, ref: list, sent: int, creds: dict, traffic: Traffic, members: dict,
                      statuses: dict, before=()) -> tuple[list[str], dict]:
    """Every framed reader of a group (readers: name -> its readers' logs;
    the FrameLogs are judged): sequence numbers strictly increase in each, a
    message has one number whatever member it reached, the group messages'
    numbers follow the group order (ref), all within 1 .. sent; every frame
    carries its real writer's pid, uid, gid and member name (creds) and the
    private flag exactly when private; EMSGSIZE only for a frame that does
    not fit (a member with one reader); a dropping member (members: name ->
    Member) read by one framed reader: each frame's `dropped` is the number
    of messages addressed to it that it missed since the previous one, and
    they add up to its status. Returns (problems, figures)."""
    problems = []
    framed = {}
    for name, rl in readers.items():
        for k, r in enumerate(rl):
            if isinstance(r, FrameLog):
                label = name if len(rl) == 1 else f"{name}[{k}]"
                framed[label] = r
                problems += check_frames(label, r.frames, creds)
                problems += check_private_flags(label, r.frames, traffic)
                if len(rl) == 1:
                    problems += check_emsgsize(label, r.emsgsize)
    p, seq_of = check_one_sequence({n: r.frames for n, r in framed.items()})
    problems += p
    in_ref = [seq_of[x] for x in ref if x in seq_of]
    if in_ref != sorted(in_ref):
        problems.append("sequence numbers do not follow the group order")
    if seq_of and (min(seq_of.values()) < 1 or max(seq_of.values()) > sent):
        problems.append(f"sequence numbers {min(seq_of.values())} .. {max(seq_of.values())} outside 1 .. sent={sent}")
    gaps_checked = 0
    for name, m in members.items():
        rl = readers.get(name, [])
        if m.drops and m.either is None and len(rl) == 1 and isinstance(rl[0], FrameLog):
            p, addressed = addressed_sequences(m, traffic, seq_of, sent, before)
            problems += p + check_dropped_among(name, rl[0].frames, addressed, statuses[name]["dropped"])
            gaps_checked += 1
    frames = [f for r in framed.values() for f in r.frames]
    return problems, dict(frames=len(frames), emsgsize=sum(len(r.emsgsize) for r in framed.values()),
                          frame_dropped=sum(f.dropped for f in frames), users=sorted({f.uid for f in frames}),
                          private_frames=sum(1 for f in frames if f.private), dropping_members_gaps=gaps_checked)
