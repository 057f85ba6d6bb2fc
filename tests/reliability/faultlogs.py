"""Logs and checks of the fault tests on the v2 paths (test_signal_faults.py):
batch writers (mcfw -B), line writers (mclw -B) whose killed processes leave
a line begun in their files, framed readers, peer readers, private writers.

What the processes log is in their headers (tests/reliability/c/). This
module reads it in the order it was logged, which checker.py's parsers do
not keep for the lines they skip ("H", a line message cut short; "Q", what a
line writer's open file holds), and adds the checks that are particular to
faults: what a killed writer's last write may have delivered, what a killed
line writer's file sends when the kernel closes it, and what successive
readers of one queue may have lost between them.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field

import checker as ck

LHDR = 24  # payload.h: a line message's header, "L%04x:%08x:%08x:"


# --- line messages, as payload.h makes them -------------------------------------


def _line_letter(wid: int, counter: int, i: int) -> int:
    m = 0xFFFFFFFF
    x = ((wid * 2654435761) ^ (counter * 40503) ^ (i * 2246822519)) & m
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & m
    x ^= x >> 12
    return ord("a") + x % 26


def line_bytes(wid: int, counter: int, length: int, terminated: bool = True) -> bytes:
    """The line message (wid, counter) of `length` bytes, as mclw writes it."""
    head = f"L{wid & 0xFFFF:04x}:{counter:08x}:{length:08x}:".encode()
    body = bytes(_line_letter(wid, counter, i) for i in range(LHDR, length))
    line = (head + body)[:length]
    return line[:-1] + b"\n" if terminated else line


def prefix_key(wid: int, counter: int, k: int, n: int) -> tuple:
    """How a reader logs the first k bytes of line (wid, counter) of n bytes
    when they arrive as a message of their own: ("H", length, CRC-32)."""
    return ("H", k, zlib.crc32(line_bytes(wid, counter, n)[:k]))


# --- writers ----------------------------------------------------------------------


@dataclass
class Tail:
    counter: int
    k: int   # bytes of the line that wait (0: nothing waits)
    n: int   # the line's length


@dataclass
class Write:
    """One write(2) of a line writer, as logged before it (Q, then B lines)."""
    before: Tail
    after: Tail
    t0: int
    lines: list = field(default_factory=list)   # counters of the lines it completes


@dataclass
class LineWriterLog:
    wl: ck.WriterLog
    writes: list = field(default_factory=list)  # [Write]


def parse_line_writer(path: str, wid: int) -> LineWriterLog:
    """mclw -B's log: its attempts (checker.py's WriterLog: R for a line
    delivered, B for one carried by a write not returned), and its writes."""
    out = LineWriterLog(ck.parse_writer_log(path, wid))
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p or not line.endswith("\n"):
                continue
            if p[0] == "Q" and len(p) == 8:
                v = list(map(int, p[1:]))
                out.writes.append(Write(Tail(v[0], v[1], v[2]), Tail(v[3], v[4], v[5]), v[6]))
            elif p[0] == "B" and out.writes:
                out.writes[-1].lines.append(int(p[1]))
    return out


def tail_outcomes(lw: LineWriterLog, delivered) -> tuple[list[Tail], str]:
    """The tails a killed line writer's file may send at its last close, given
    which messages were delivered (`delivered(id)`), and why: its last write
    (docs/contract.md, "Line messages") delivered all it carried (the tail its
    chunk ends with waits), none (what waited before stays), or some (a short
    count: nothing is kept). A write that completes no line leaves either.
    Returns ([possible tails], the case); an empty list: nothing may be sent."""
    if not lw.writes:
        return [], "no write"
    w = lw.writes[-1]
    got = [delivered((lw.wl.wid, c)) for c in w.lines]
    nonzero = lambda ts: [t for t in ts if t.k]  # noqa: E731
    if not w.lines:
        return nonzero([w.before, w.after]), "either"
    if all(got):
        return nonzero([w.after]), "all"
    if not any(got):
        return nonzero([w.before]), "none"
    return [], "some"


def check_prefix(name: str, inflight: list, delivered) -> tuple[list[str], int]:
    """What a write that never returned delivered is a prefix of what it
    carried (records of a batch, lines of a line write: in order, each
    needing room for the one before). Returns (problems, how many)."""
    got = [delivered(m) for m in inflight]
    k = sum(got)
    if got != [True] * k + [False] * (len(got) - k):
        return [f"{name}: its last write delivered {[m for m, d in zip(inflight, got) if d][:6]} of "
                f"{inflight[:6]}...: not a prefix"], k
    return [], k


# --- readers ----------------------------------------------------------------------


@dataclass
class Entry:
    key: tuple          # (wid, counter), or prefix_key(...) for a message cut short
    length: int
    frame: ck.Frame | None = None


@dataclass
class RLog:
    path: str
    entries: list = field(default_factory=list)
    corrupt: list = field(default_factory=list)
    err: int = 0
    eof: dict | None = None
    emsgsize: list = field(default_factory=list)

    def ids(self, resolve=None) -> list:
        """The keys in order; `resolve` maps a prefix key to its message id."""
        return [resolve(e.key) if resolve and e.key[0] == "H" else e.key for e in self.entries]


def parse_reader(path: str, wspan: int) -> RLog:
    """A log of mcr or mcfr (either; -t -P or not), in order."""
    r = RLog(path)
    if not os.path.exists(path):
        return r
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p or not line.endswith("\n"):
                continue  # cut short by SIGKILL
            t = p[0]
            meta = None
            if t == "M" and len(p) == 4:
                key, length = (int(p[1]), int(p[2])), int(p[3])
            elif t == "T" and len(p) == 2:
                raw = bytes.fromhex(p[1])
                v = int.from_bytes(raw, "little")
                key, length = (v % wspan, v // wspan), len(raw)
            elif t == "H" and len(p) == 3:
                key, length = ("H", int(p[1]), int(p[2], 16)), int(p[1])
            elif t == "F" and len(p) in (10, 11):
                key, length, meta = (int(p[1]), int(p[2])), int(p[3]), p[4:]
            elif t == "G" and len(p) in (8, 9):
                raw = bytes.fromhex(p[1])
                v = int.from_bytes(raw, "little")
                key, length, meta = (v % wspan, v // wspan), len(raw), p[2:]
            elif t == "H" and len(p) in (9, 10):
                key, length, meta = ("H", int(p[1]), int(p[2], 16)), int(p[1]), p[3:]
            elif t == "E":
                r.emsgsize.append((int(p[1]), int(p[2])))
                continue
            elif t == "X":
                r.corrupt.append(line.strip())
                continue
            elif t == "ERR":
                r.err = int(p[1])
                continue
            elif t == "EOF":
                r.eof = {k: int(v) for k, v in (kv.split("=") for kv in p[1:])}
                continue
            else:
                continue
            frame = None
            if meta is not None:
                seq, pid, uid, gid, dropped = map(int, meta[:5])
                frame = ck.Frame(key, length, seq, pid, uid, gid, dropped, "" if meta[5] == "-" else meta[5],
                                 private=meta[6:] == ["P"])
            r.entries.append(Entry(key, length, frame))
    return r


def health(name: str, logs: list[RLog], need_eof: bool) -> list[str]:
    out = []
    for r in logs:
        out += [f"{name}: corrupt message ({r.path}): {x}" for x in r.corrupt[:5]]
        if r.err:
            out.append(f"{name}: read failed with {ck.errname(r.err)} ({r.path})")
        if need_eof and r.eof is None:
            out.append(f"{name}: reader never reached end of file ({r.path})")
    return out


@dataclass
class Incarnation:
    """One reader process of a queue, in the order they ran."""
    ids: list
    killed: str | None      # None (it ran to the end), "open" or "closed"
    allowance: int          # what a kill in the open may take with it
    exit_ns: int = 0
    blocked_at_signal: bool = False


def walk_queue(name: str, expected: list, incs: list, attempts: dict) -> tuple[list[str], dict]:
    """The successive readers of one queue (one at a time) received, between
    them, `expected` less what the readers killed in the open took with them:
    at most `allowance` messages each (1 for a record reader, the member's
    capacity for a framed one, whose one read takes a batch), all in one run
    at the moment of the kill (each such message was written before the
    killed reader was gone), none for a reader killed with nothing to hand
    over; nothing twice, nothing out of order, no other gap.
    Returns (problems, {lost, lost_blocked, max_run})."""
    out = []
    pos = {m: i for i, m in enumerate(expected)}
    stats = {"lost": 0, "lost_blocked": 0, "max_run": 0}
    j = 0
    allowance = 0
    last_killed = None

    def lose(count: int, where: str):
        stats["lost"] += count
        stats["max_run"] = max(stats["max_run"], count)
        if last_killed.blocked_at_signal:
            stats["lost_blocked"] += count
        for m in expected[j:j + count]:
            a = attempts.get(m)
            if a is not None and a.t0 > last_killed.exit_ns:
                out.append(f"{name}: {m} is missing, but its write began {(a.t0 - last_killed.exit_ns) / 1e6:.1f} ms "
                           f"after the killed reader was gone ({where})")

    for i, inc in enumerate(incs):
        for m in inc.ids:
            p = pos.get(m)
            if p is None:
                out.append(f"{name}: reader #{i} received {m}, which is not in its expected sequence "
                           "(another member's, or twice, or never accepted)")
                return out, stats
            gap = p - j
            if gap < 0:
                out.append(f"{name}: reader #{i} received {m} (position {p}) after position {j - 1}: "
                           "out of order or twice")
                return out, stats
            if gap > allowance:
                out.append(f"{name}: {gap} messages missing before {m} (reader #{i}); at most {allowance} may be "
                           f"lost to killed readers here; first missing {expected[j]}")
                return out, stats
            if gap:
                lose(gap, f"before reader #{i}'s {m}")
            j = p + 1
            allowance = 0
        if inc.killed == "open":
            allowance += inc.allowance
            last_killed = inc
    rest = len(expected) - j
    if rest > allowance:
        out.append(f"{name}: its readers stopped at {j} of {len(expected)} messages (allowance {allowance}); "
                   f"first missing {expected[j]}")
    elif rest:
        lose(rest, "at the end")
    return out, stats


def check_shared_queue(name: str, expected: list, incs: list) -> tuple[list[str], int]:
    """Two readers at a time on one queue: between all of them, `expected`
    less at most the allowance of every reader killed in the open; each one
    in the expected order; nothing twice. Returns (problems, lost)."""
    out = []
    pos = {m: i for i, m in enumerate(expected)}
    union = []
    for i, inc in enumerate(incs):
        out += ck.check_follows(f"{name}[{i}]", inc.ids, pos)
        union += inc.ids
    out += ck.check_no_duplicates(name, union)
    got = set(union)
    missing = [m for m in expected if m not in got]
    allowed = sum(inc.allowance for inc in incs if inc.killed == "open")
    if len(missing) > allowed:
        out.append(f"{name}: {len(missing)} messages missing (e.g. {missing[:5]}), at most {allowed} may be lost to "
                   "its readers killed in the open")
    return out, len(missing)


def consecutive_writes(name: str, writes: list, seq_of: dict) -> list[str]:
    """Each write of a batch delivered its records consecutively: their
    sequence numbers follow one another (docs/contract.md, "Writing a
    batch": they "enter every queue together, consecutively")."""
    for ids in writes:
        seqs = [seq_of.get(m) for m in ids]
        if None in seqs:
            continue  # judged elsewhere
        if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            return [f"{name}: one write delivered {ids[:4]}... with sequence numbers {seqs[:8]}: not consecutive"]
    return []


def batch_writes(wl: ck.WriterLog) -> list[list]:
    """The ids each returned write of mcfw delivered (its R lines share t0)."""
    by_t0: dict = {}
    for a in sorted(wl.attempts.values(), key=lambda a: a.counter):
        if a.ret is not None and a.ret == a.length:
            by_t0.setdefault(a.t0, []).append((wl.wid, a.counter))
    return list(by_t0.values())
