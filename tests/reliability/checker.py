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
