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

import errno as E
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
    (checked directly, without a reference)."""
    out = []
    names = sorted(seqs)
    sets = {n: set(seqs[n]) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sets[a] & sets[b]
            if not common:
                continue
            sa = [m for m in seqs[a] if m in common]
            sb = [m for m in seqs[b] if m in common]
            if sa != sb:
                k = next(j for j in range(len(sa)) if sa[j] != sb[j])
                out.append(f"{a} and {b} disagree on the order of their common messages at #{k}: "
                           f"{sa[k]} vs {sb[k]}")
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


# DEFECT (tests/conformance/test_frame_metadata.py): a line tail flushed by
# fsync(2) or close(2) carries pid, uid and gid 0 instead of its writer's.
# The stress test passes the ids of such messages as `tolerated`.
FLUSHED_TAIL_CREDS = (0, 0, 0)


def check_frames(name: str, frames, creds: dict, tolerated=frozenset(), seen: list | None = None) -> list[str]:
    """Sequence numbers strictly increase in what one reader reads, and every
    frame carries its writer's credentials: creds maps a writer id to (pid,
    uid, gid, sending member name or ""). A message in `tolerated` may carry
    FLUSHED_TAIL_CREDS instead (the known defect); each one that does is
    appended to `seen`."""
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
        if f.mid in tolerated and got == (*FLUSHED_TAIL_CREDS, want[3]):
            if seen is not None:
                seen.append(f.mid)
            continue
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
