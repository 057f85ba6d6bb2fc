"""Model-based testing: a hypothesis state machine drives a MOUNTED mcastfs and
the reference model (model.py) with the same operations, and compares every
result and errno, and after every step every group's `status` and listing.

Nothing here blocks: every open is O_NONBLOCK, so a full queue is EAGAIN and
an empty one is EAGAIN, exactly as the model predicts. fsync has no EAGAIN:
one that the model says would wait for room is ended by a signal (EINTR).

    python3 -m pytest tests/conformance/test_model.py            # CI: < 60 s
    CONFORMANCE_SCALE=long python3 -m pytest tests/conformance/test_model.py -s

The mount's defaults are tiny (capacity=2, queue_bytes=24, max_message=32) so
that full queues, drops and EMSGSIZE happen within a few steps.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import stat
import time

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from helpers import parse_status
from .model import EVENTS, RESERVED, Filesystem, Handle, ModelError, ctl_verdict, decode_frames

from .conftest import HERE

LONG = os.environ.get("CONFORMANCE_SCALE") == "long"
OPTIONS = dict(capacity=2, queue_bytes=24, max_message=32)

_db = DirectoryBasedExampleDatabase(str(HERE / ".hypothesis" / "examples"))
settings.register_profile(
    "conformance-ci",
    # With filters and peers a step does more; 100 examples (about 5,000
    # operations compared) take 2-4 minutes on 2 shared cores.
    max_examples=100,
    stateful_step_count=60,
    deadline=None,
    database=_db,
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "conformance-long",
    max_examples=1500,
    stateful_step_count=120,
    deadline=None,
    database=_db,
    suppress_health_check=list(HealthCheck),
)
PROFILE = settings.get_profile("conformance-long" if LONG else "conformance-ci")

UMASK = os.umask(0o022)
os.umask(UMASK)

# --- names and values the machine draws from ----------------------------------

GROUPS = ["g1", "g2", "send"]  # `send` is a fine group name: only taken inside a group
MEMBERS = ["a", "b", "c"]
BAD_NAMES = [b".hidden", b"sp ace", b"tab\tx", b"\xff\xfe", b"nb\xc2\xa0sp", b"x" * 256]
GOOD_ODD_NAMES = [b"caf\xc3\xa9", b"a=b"]  # valid: UTF-8, and '=' is allowed

BAD_NUMS = ["0", "-1", "+2", "007", "abc", "", "1.0", "0x10", "99999999999999999999999"]

# Topic filters: patterns over the topics of TOPICAL (and of LINE_DATA's "ab\n", "x\n").
VALID_PATTERNS = st.sampled_from(["", "", "a", "a.*", "a.>", "*", ">", "b,a.b", "ab", "x,*.c", "*.*.*", "007"])
PATTERNS = st.one_of(VALID_PATTERNS, st.sampled_from(["a..b", "a*", ">.a", "a,", ",", "a.", ".a", "a\tb"]))


def _num(lo, hi, extra):
    return st.one_of(st.integers(lo, hi).map(str), st.sampled_from(BAD_NUMS + extra))


GROUP_PAIRS = st.one_of(
    st.tuples(st.just("capacity"), _num(1, 4, ["1000000", "1000001"])),
    st.tuples(st.just("queue_bytes"), _num(1, 64, ["1073741824", "1073741825"])),
    st.tuples(st.just("max_message"), _num(1, 40, ["1044480", "1044481"])),
    st.tuples(st.just("send"), st.sampled_from(["anyone", "members", "members", "Members", "none", ""])),
    st.tuples(st.just("send_to_peer"), st.sampled_from(["0", "1", "1", "2", "on"])),
    st.tuples(st.sampled_from(["loopback", "colour", "", "CAPACITY"]), st.sampled_from(["1", "x"])),
)
MEMBER_PAIRS = st.one_of(
    st.tuples(st.just("capacity"), _num(1, 4, ["1000000", "1000001"])),
    st.tuples(st.just("queue_bytes"), _num(1, 64, ["1073741824", "1073741825"])),
    st.tuples(st.sampled_from(["loopback", "drop_when_full", "send_to_peer"]),
              st.sampled_from(["0", "1", "0", "1", "2", "yes", ""])),
    st.tuples(st.sampled_from(["max_message", "send", "colour"]), st.sampled_from(["1", "anyone"])),
    st.tuples(st.just("subscribe"), PATTERNS),
)


VALID_GROUP_PAIRS = st.one_of(
    st.tuples(st.just("capacity"), st.integers(1, 4)),
    st.tuples(st.just("queue_bytes"), st.integers(1, 64)),
    st.tuples(st.just("max_message"), st.integers(1, 40)),
    st.tuples(st.just("send"), st.sampled_from(["anyone", "members"])),
    st.tuples(st.just("send_to_peer"), st.integers(0, 1)),
)
VALID_MEMBER_PAIRS = st.one_of(
    st.tuples(st.just("capacity"), st.integers(1, 4)),
    st.tuples(st.just("queue_bytes"), st.integers(1, 64)),
    st.tuples(st.sampled_from(["loopback", "drop_when_full", "send_to_peer", "send_to_peer"]), st.integers(0, 1)),
    st.tuples(st.just("subscribe"), VALID_PATTERNS),
)


@st.composite
def valid_ctl(draw) -> bytes:
    if draw(st.booleans()):
        words = ["set"]
        pairs = draw(st.lists(VALID_GROUP_PAIRS, min_size=1, max_size=3, unique_by=lambda p: p[0]))
    else:
        words = ["member", draw(st.sampled_from(MEMBERS))]
        pairs = draw(st.lists(VALID_MEMBER_PAIRS, min_size=1, max_size=3, unique_by=lambda p: p[0]))
    return (" ".join(words + [f"{k}={v}" for k, v in pairs]) + draw(st.sampled_from(["", "\n"]))).encode()


@st.composite
def wild_ctl(draw) -> bytes:
    kind = draw(st.sampled_from(["set", "member", "member", "garbage"]))
    if kind == "garbage":
        return draw(st.one_of(st.binary(max_size=24), st.sampled_from([b"set", b"member a", b"", b"\n", b"set capacity=2\n\n"])))
    if kind == "set":
        words = ["set"] + [f"{k}={v}" for k, v in draw(st.lists(GROUP_PAIRS, min_size=0, max_size=3))]
    else:
        name = draw(st.sampled_from(MEMBERS + ["send", "zz", "a=b", "café"]))
        words = ["member", name] + [f"{k}={v}" for k, v in draw(st.lists(MEMBER_PAIRS, min_size=0, max_size=3))]
    sep = draw(st.sampled_from([" ", " ", " ", " ", "  ", "\t"]))
    text = sep.join(words) + draw(st.sampled_from(["", "", "\n", " ", "\r\n"]))
    return text.encode()


CTL_COMMANDS = st.one_of(valid_ctl(), valid_ctl(), wild_ctl())

# Payloads with topics the patterns above match or almost match, beside random bytes.
TOPICAL = st.sampled_from([b"a", b"a.b x", b"a.b.c\n", b"b", b"ab", b"a.bc", b" a", b"a..b", b"x.y.c", b"007 z"])
MESSAGES = st.one_of(st.binary(min_size=0, max_size=40), TOPICAL)
READ_SIZES = st.one_of(st.sampled_from([0, 1, 65536, 65536]), st.integers(1, 48))
# Framed reads: around one frame (40 B of header, a name, up to 32 B, padding) and a few.
FRAME_READ_SIZES = st.one_of(st.sampled_from([0, 1, 39, 40, 48, 65536]), st.integers(41, 200))
# Line-mode writes: text with and without newlines, lines split and merged.
LINE_DATA = st.lists(st.one_of(st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"\n", b"")),
                               st.just(b"\n"), st.sampled_from([b"ab\n", b"x\ny\n", b"\n\n", b"tail"])),
                     max_size=6).map(b"".join)


@st.composite
def batches(draw) -> bytes:
    """Mostly valid batches of 1..4 records (some longer than the tiny
    max_message), now and then broken ones."""
    records = draw(st.lists(st.binary(min_size=1, max_size=36), min_size=1, max_size=4))
    data = b"".join(len(r).to_bytes(4, "little") + r for r in records)
    broken = draw(st.sampled_from([None] * 6 + ["cut", "zero", "extra"]))
    if broken == "cut":
        data = data[:-1]
    elif broken == "zero":
        data += b"\0\0\0\0"
    elif broken == "extra":
        data += b"\1"
    return data
ACCESS = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}

# Figures for the report.
STATS = {"examples": 0, "steps": 0, "ambiguous_ctl": {}, "outcomes": {}}


def count(what: str, outcome: str):
    key = f"{what}: {outcome}"
    STATS["outcomes"][key] = STATS["outcomes"].get(key, 0) + 1


def ename(code: int) -> str:
    return errno.errorcode.get(code, str(code))


class Outcome:
    def __init__(self, value=None, err: int | None = None):
        self.value, self.err = value, err

    def __repr__(self):
        return ename(self.err) if self.err is not None else f"ok {self.value!r}"


def real(fn, *args) -> Outcome:
    try:
        return Outcome(fn(*args))
    except OSError as e:
        return Outcome(err=e.errno)


class _Alarm(Exception):
    pass


def interrupted(fn, *args, after: float = 0.02) -> Outcome:
    """fn(*args), a call that waits, ended by SIGALRM `after` seconds in: the
    handler raises, as PEP 475 would retry the call on EINTR otherwise."""
    def handler(signum, frame):
        raise _Alarm()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, after)
    try:
        return Outcome(fn(*args))
    except _Alarm:
        return Outcome(err=errno.EINTR)
    except OSError as e:
        return Outcome(err=e.errno)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def modelled(fn, *args) -> tuple[object, frozenset | None]:
    try:
        return fn(*args), None
    except ModelError as e:
        return None, e.allowed


def clean_mount(root: str):
    """Close nothing, remove every group and member (the mount is ours)."""
    for g in os.listdir(root):
        if g == ".metrics":  # the root's own file, not a group
            continue
        gp = os.path.join(root, g)
        for name in os.listdir(gp):
            if name not in RESERVED:
                os.unlink(os.path.join(gp, name))
        os.rmdir(gp)


class McastMachine(RuleBasedStateMachine):
    root: str = ""

    def __init__(self):
        super().__init__()
        STATS["examples"] += 1
        self.fs = Filesystem(**OPTIONS)
        self.handles: list[Handle] = []
        self.sent_seen = 0
        self.member_modes: dict[tuple[str, str], int] = {}
        clean_mount(self.root)

    def teardown(self):
        for h in self.handles:
            os.close(h.fd)
        self.handles.clear()
        clean_mount(self.root)

    @initialize(mode2=st.sampled_from([0o755, 0o700, 0o777]), members1=st.sets(st.sampled_from(MEMBERS)),
                members2=st.sets(st.sampled_from(MEMBERS)),
                settings=st.lists(st.tuples(st.integers(1, 3), st.booleans(), st.booleans(), st.booleans()),
                                  min_size=6, max_size=6),
                subscriptions=st.lists(VALID_PATTERNS, min_size=6, max_size=6))
    def seed(self, mode2, members1, members2, settings, subscriptions):
        """Start from two groups with a few members, some of them loopback,
        drop-when-full, filtered or sending to their peers, so that most steps
        act on something that exists."""
        flags = iter(settings)
        patterns = iter(subscriptions)
        for group, mode, members in (("g1", 0o755, members1), ("g2", mode2, members2)):
            self.mkdir(group.encode(), mode)
            for name in sorted(members):
                self.create(group, name.encode(), True, False)
                capacity, loopback, drop, to_peer = next(flags)
                self.ctl(group, f"member {name} capacity={capacity} loopback={int(loopback)} drop_when_full={int(drop)}"
                                f" send_to_peer={int(to_peer)}".encode())
                self.ctl(group, f"member {name} subscribe={next(patterns)}".encode())

    # helpers
    def path(self, *parts) -> bytes:
        return os.path.join(self.root.encode(), *(p.encode() if isinstance(p, str) else p for p in parts))

    def compare(self, what: str, expected, allowed, got: Outcome, same=None):
        STATS["steps"] += 1
        count(what.split()[0], "ok" if got.err is None else ename(got.err))
        if allowed is not None:
            assert got.err in allowed, f"{what}: model says {'/'.join(map(ename, allowed))}, mcastfs gave {got!r}"
        else:
            assert got.err is None, f"{what}: model says ok {expected!r}, mcastfs gave {got!r}"
            if same is not None:
                assert same(expected, got.value), f"{what}: model says {expected!r}, mcastfs gave {got.value!r}"

    def fs_changed(self) -> bool:
        """True when the model's groups accepted messages since the last call."""
        sent = sum(g.sent for g in self.fs.groups.values())
        changed, self.sent_seen = sent != self.sent_seen, sent
        return changed

    def pick(self, i: int) -> Handle:
        return self.handles[i % len(self.handles)]

    # namespace
    @rule(name=st.sampled_from([g.encode() for g in GROUPS] + BAD_NAMES + GOOD_ODD_NAMES[:1]),
          mode=st.sampled_from([0o755, 0o700, 0o777]))
    def mkdir(self, name, mode):
        expected, allowed = modelled(self.fs.mkdir, name, mode)
        got = real(os.mkdir, self.path(name), mode)
        self.compare(f"mkdir {name!r} {mode:o}", expected, allowed, got)

    @rule(name=st.sampled_from(GROUPS))
    def rmdir(self, name):
        expected, allowed = modelled(self.fs.rmdir, name)
        got = real(os.rmdir, self.path(name))
        self.compare(f"rmdir {name}", expected, allowed, got)

    @rule(group=st.sampled_from(GROUPS),
          name=st.sampled_from([m.encode() for m in MEMBERS + list(RESERVED)] + BAD_NAMES + GOOD_ODD_NAMES),
          excl=st.booleans(), writes=st.booleans())
    def create(self, group, name, excl, writes):
        flags = os.O_CREAT | os.O_NONBLOCK | (os.O_EXCL if excl else 0) | (os.O_WRONLY if writes else os.O_RDONLY)

        def do():
            os.close(os.open(self.path(group, name), flags, 0o644))

        expected, allowed = modelled(self.fs.create, group, name, excl, writes)
        got = real(do)
        self.compare(f"create {group}/{name!r} excl={excl} writes={writes}", expected, allowed, got)
        if expected is not None:
            self.member_modes[(group, expected.name)] = 0o644 & ~UMASK

    @rule(group=st.sampled_from(GROUPS), name=st.sampled_from(MEMBERS + list(RESERVED) + ["café"]))
    def unlink(self, group, name):
        expected, allowed = modelled(self.fs.unlink, group, name)
        got = real(os.unlink, self.path(group, name))
        self.compare(f"unlink {group}/{name}", expected, allowed, got)

    @rule(group=st.sampled_from(GROUPS), data=CTL_COMMANDS)
    def ctl(self, group, data):
        def do():
            fd = os.open(self.path(group, "ctl"), os.O_WRONLY | os.O_NONBLOCK)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)

        got = real(do)
        STATS["steps"] += 1
        count("ctl", "ok" if got.err is None else ename(got.err))
        g = self.fs.groups.get(group)
        if g is None:
            assert got.err == errno.ENOENT, f"ctl on missing group {group}: {got!r}"
            return
        if not data:
            assert got.err is None and got.value == 0, f"empty ctl write: {got!r}"
            return
        verdict = ctl_verdict(data, g.members)
        if verdict.kind == "valid":
            assert got.err is None and got.value == len(data), f"ctl {data!r} is valid, mcastfs gave {got!r}"
        elif verdict.kind == "invalid":
            assert got.err == errno.EINVAL, f"ctl {data!r} is invalid ({verdict.reason}), mcastfs gave {got!r}"
        else:
            assert got.err == errno.EINVAL or (got.err is None and got.value == len(data)), f"ctl {data!r}: {got!r}"
            key = f"{verdict.reason} -> {'accepted' if got.err is None else 'EINVAL'}"
            STATS["ambiguous_ctl"][key] = STATS["ambiguous_ctl"].get(key, 0) + 1
        self.fs.ctl(group, data, actual_ok=got.err is None)

    # open files
    @precondition(lambda self: len(self.handles) < 8)
    @rule(group=st.sampled_from(GROUPS), name=st.sampled_from(MEMBERS), access=st.sampled_from(sorted(ACCESS)),
          framed=st.booleans())
    def open_member(self, group, name, access, framed):
        member, allowed = modelled(self.fs.member, group, name)
        got = real(os.open, self.path(group, "frames/" + name if framed else name), ACCESS[access] | os.O_NONBLOCK)
        self.compare(f"open {group}/{'frames/' if framed else ''}{name} {access}", member, allowed, got)
        if got.err is None:
            self.handles.append(Handle(got.value, self.fs.groups[group], member, "r" in access, "w" in access,
                                       framed=framed))

    @precondition(lambda self: len(self.handles) < 8)
    @rule(group=st.sampled_from(GROUPS), name=st.sampled_from(MEMBERS), access=st.sampled_from(sorted(ACCESS)))
    def open_peer(self, group, name, access):
        """G/peers/NAME: the member's peer queue to read, private messages to write."""
        member, allowed = modelled(self.fs.member, group, name)
        got = real(os.open, self.path(group, "peers/" + name), ACCESS[access] | os.O_NONBLOCK)
        self.compare(f"open {group}/peers/{name} {access}", member, allowed, got)
        if got.err is None:
            self.handles.append(Handle(got.value, self.fs.groups[group], member, "r" in access, "w" in access, peer=True))

    @precondition(lambda self: len(self.handles) < 8)
    @rule(group=st.sampled_from(GROUPS), framed=st.booleans())
    def open_send(self, group, framed):
        g, allowed = modelled(self.fs.group, group)
        got = real(os.open, self.path(group, "frames/send" if framed else "send"), os.O_WRONLY | os.O_NONBLOCK)
        self.compare(f"open {group}/{'frames/' if framed else ''}send", g, allowed, got)
        if got.err is None:
            self.handles.append(Handle(got.value, g, None, False, True, framed=framed))

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 7))
    def close(self, i):
        h = self.pick(i)
        self.handles.remove(h)
        os.close(h.fd)
        h.remainder = None  # closing in the middle of a message discards its rest (docs/contract.md, "Receiving")
        h.flush()  # the last close sends a waiting line ("Line messages")
        count("close", "tail flushed" if self.fs_changed() else "ok")

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 7))
    def fsync(self, i):
        h = self.pick(i)
        expected, allowed = modelled(h.sync)
        if allowed == {errno.EAGAIN}:
            # It waits for room, as a blocking write of the tail would, and nobody here makes any.
            got = interrupted(os.fsync, h.fd)
            self.compare(f"fsync (waits, interrupted) {self.describe(h)}", None, {errno.EINTR}, got)
        else:
            got = real(os.fsync, h.fd)
            self.compare(f"fsync {self.describe(h)}", expected, allowed, got)

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 7), data=MESSAGES, lines=LINE_DATA, batch=batches(), kind=st.integers(0, 2))
    def write(self, i, data, lines, batch, kind):
        h = self.pick(i)
        # what each view is for, mostly; now and then the other kinds of bytes
        if kind:
            data = batch if h.framed else lines if h.group.message == "line" else data
        expected, allowed = modelled(h.write, data)
        got = real(os.write, h.fd, data)
        self.compare(f"write {data!r} on {self.describe(h)}", expected, allowed, got, lambda a, b: a == b)

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 7), size=READ_SIZES, frame_size=FRAME_READ_SIZES, any_handle=st.integers(0, 4))
    def read(self, i, size, frame_size, any_handle):
        readable = [h for h in self.handles if h.reads]
        h = readable[i % len(readable)] if readable and any_handle else self.pick(i)
        if h.framed:
            size = frame_size
        expected, allowed = modelled(h.read, size)
        got = real(os.read, h.fd, size)
        same = self.same_frames if h.framed and size else (lambda a, b: a == b)
        self.compare(f"read {size} on {self.describe(h)}", expected, allowed, got, same)

    # the same again on the files that can, so that most reads and writes get through
    @precondition(lambda self: any(h.reads for h in self.handles))
    @rule(i=st.integers(0, 7), size=READ_SIZES, frame_size=FRAME_READ_SIZES)
    def read_a_reader(self, i, size, frame_size):
        self.read(i, size, frame_size, 1)

    @precondition(lambda self: any(h.writes for h in self.handles))
    @rule(i=st.integers(0, 7), data=MESSAGES, lines=LINE_DATA, batch=batches())
    def write_a_writer(self, i, data, lines, batch):
        writers = [h for h in self.handles if h.writes]
        self.write(self.handles.index(writers[i % len(writers)]), data, lines, batch, 1)

    @staticmethod
    def same_frames(expected, buf) -> bool:
        """The frames of one read are the model's messages with their
        metadata: sequence, sender, credentials, dropped, flags 0."""
        frames = decode_frames(buf)
        if len(frames) != len(expected):
            return False
        for q, f in zip(expected, frames):
            if (f.payload, f.name, f.sequence, f.dropped, f.flags, (f.pid, f.uid, f.gid)) != (
                    q.data, q.sender.encode(), q.sequence, q.dropped, int(q.private), q.creds):
                return False
        return True

    @rule(group=st.sampled_from(GROUPS), mode=st.sampled_from(["line", "line", "write"]))
    def set_message(self, group, mode):
        data = f"set message={mode}".encode()
        self.ctl(group, data)

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 7))
    def poll(self, i):
        h = self.pick(i)
        p = select.poll()
        p.register(h.fd, select.POLLIN | select.POLLOUT)
        events = dict(p.poll(0)).get(h.fd, 0)
        got = (bool(events & select.POLLIN), bool(events & select.POLLOUT))
        STATS["steps"] += 1
        count("poll", f"in={int(got[0])} out={int(got[1])}")
        assert got in h.tolerated_readiness(), (
            f"poll on {self.describe(h)}: model (in, out) = {h.readiness()}, mcastfs {got} (events {events:#x})")

    def describe(self, h: Handle) -> str:
        who = "send" if h.member is None else h.member.name + ("" if h.member.present else " (left)")
        mode = ("r" if h.reads else "") + ("w" if h.writes else "")
        view = "frames/" if h.framed else "peers/" if h.peer else ""
        return (f"fd {h.fd} {h.group.name}/{view}{who} {mode}"
                f"{'' if not h.group.closed else ' (group removed)'}{' message=line' if h.group.message == 'line' else ''}")

    # one-shot opens, as shell commands do
    @rule(group=st.sampled_from(GROUPS), name=st.sampled_from(["send"] + MEMBERS), data=MESSAGES)
    def send_fresh(self, group, name, data):
        def model():
            g = self.fs.group(group)
            h = Handle(-1, g, None if name == "send" else self.fs.member(group, name), False, True)
            n = h.write(data)
            h.flush()  # the close sends a line that waits
            return n

        def do():
            fd = os.open(self.path(group, name), os.O_WRONLY | os.O_NONBLOCK)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)

        expected, allowed = modelled(model)
        self.compare(f"echo {len(data)} B > {group}/{name}", expected, allowed, real(do), lambda a, b: a == b)

    @rule(group=st.sampled_from(GROUPS), name=st.sampled_from(["send"] + MEMBERS), data=MESSAGES)
    def shell_echo(self, group, name, data):
        """`echo DATA > G/NAME`: O_CREAT|O_TRUNC joins a missing member, the
        truncation is ignored, then one message as that member."""
        def model():
            g = self.fs.group(group)
            if self.fs.create(group, name.encode(), False, True) is not None:
                self.member_modes[(group, name)] = 0o644 & ~UMASK
            member = None if name == "send" else g.members[name]
            h = Handle(-1, g, member, False, True)
            n = h.write(data)
            h.flush()
            return n

        def do():
            fd = os.open(self.path(group, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK, 0o644)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)

        expected, allowed = modelled(model)
        self.compare(f"echo-create {len(data)} B > {group}/{name}", expected, allowed, real(do), lambda a, b: a == b)

    @rule(group=st.sampled_from(GROUPS), name=st.sampled_from(MEMBERS), data=MESSAGES)
    def answer_fresh(self, group, name, data):
        """`echo DATA > G/peers/NAME`: one private message to NAME (the
        truncation is ignored; nothing is created in peers/)."""
        def model():
            g = self.fs.group(group)
            if name not in g.members:
                raise ModelError(errno.EPERM)  # O_CREAT makes nothing in peers/
            h = Handle(-1, g, g.members[name], False, True, peer=True)
            n = h.write(data)
            h.flush()
            return n

        def do():
            fd = os.open(self.path(group, "peers", name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK, 0o644)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)

        expected, allowed = modelled(model)
        self.compare(f"echo {len(data)} B > {group}/peers/{name}", expected, allowed, real(do), lambda a, b: a == b)

    @rule(group=st.sampled_from(GROUPS), name=st.sampled_from(MEMBERS), size=READ_SIZES, peer=st.booleans())
    def read_fresh(self, group, name, size, peer):
        if peer:
            return self.read_peer_fresh(group, name, size)
        return self.read_member_fresh(group, name, size)

    def read_peer_fresh(self, group, name, size):
        def model():
            return Handle(-1, self.fs.group(group), self.fs.member(group, name), True, False, peer=True).read(size)

        def do():
            fd = os.open(self.path(group, "peers", name), os.O_RDONLY | os.O_NONBLOCK)
            try:
                return os.read(fd, size)
            finally:
                os.close(fd)

        expected, allowed = modelled(model)
        self.compare(f"one read({size}) of {group}/peers/{name}", expected, allowed, real(do), lambda a, b: a == b)

    def read_member_fresh(self, group, name, size):
        def model():
            return Handle(-1, self.fs.group(group), self.fs.member(group, name), True, False).read(size)

        def do():
            fd = os.open(self.path(group, name), os.O_RDONLY | os.O_NONBLOCK)
            try:
                return os.read(fd, size)
            finally:
                os.close(fd)

        expected, allowed = modelled(model)
        self.compare(f"one read({size}) of {group}/{name}", expected, allowed, real(do), lambda a, b: a == b)

    # what every step must leave behind
    def status_of(self, name: str, g):
        """The group's status, once the mount has done what the model did: a
        line tail sent at the last close arrives with the release, which the
        kernel sends after close(2) returned, and a tail that waited goes when
        a read made room, both shortly after the call that caused them."""
        path = os.path.join(self.root, name, "status")
        deadline = time.monotonic() + 2
        while True:
            status = parse_status(open(path, "rb").read().decode())
            if (status.group.get("sent"), status.group.get("blocked_writers")) == (g.sent, len(g.parked)) \
                    or time.monotonic() > deadline:
                return status
            time.sleep(0.002)

    @invariant()
    def listings_and_status_agree(self):
        for g in self.fs.groups.values():
            g.settle()
        assert sorted(os.listdir(self.root)) == sorted([".metrics", *self.fs.groups]), "root listing"
        for name, g in self.fs.groups.items():
            gp = os.path.join(self.root, name)
            assert sorted(os.listdir(gp)) == sorted([*RESERVED, *g.members]), f"listing of {name}"
            assert sorted(os.listdir(os.path.join(gp, "peers"))) == sorted(g.members), f"listing of {name}/peers"
            status = self.status_of(name, g)
            assert status.group_name == name
            for key, value in g.status().items():
                assert status.group.get(key) == value, f"{name} status {key}: model {value}, mcastfs {status.group.get(key)}\n{status.text}"
            assert sorted(status.members) == sorted(g.members), f"{name} status members\n{status.text}"
            for mname, m in g.members.items():
                for key, value in m.status().items():
                    got = status.members[mname].get(key)
                    if key == "subscribe":  # as written: parse_status would read "007" as 7
                        line = next(x for x in status.lines if x.startswith(f"member {mname} "))
                        got = line.rpartition(" subscribe=")[2] if " subscribe=" in line else None
                    assert got == value, f"{name}/{mname} status {key}: model {value}, mcastfs {got}\n{status.text}"

    @invariant()
    def modes_agree(self):
        for name, g in self.fs.groups.items():
            gp = os.path.join(self.root, name)
            st_dir = os.stat(gp)
            mode = g.mode & ~UMASK
            assert stat.S_ISDIR(st_dir.st_mode) and st_dir.st_mode & 0o7777 == mode
            for f, mask in (("send", 0o222), ("status", 0o444), ("ctl", 0o200)):
                s = os.stat(os.path.join(gp, f))
                assert stat.S_ISREG(s.st_mode) and s.st_mode & 0o7777 == mode & mask, f"{name}/{f}"
            st_peers = os.stat(os.path.join(gp, "peers"))
            assert stat.S_ISDIR(st_peers.st_mode) and st_peers.st_mode & 0o7777 == mode & 0o700, f"{name}/peers"
            for mname in g.members:
                s = os.stat(os.path.join(gp, "peers", mname))
                assert stat.S_ISREG(s.st_mode) and s.st_mode & 0o7777 == mode & 0o600, f"{name}/peers/{mname} mode"
            for mname in g.members:
                s = os.stat(os.path.join(gp, mname))
                assert stat.S_ISREG(s.st_mode) and s.st_size == 0
                assert s.st_mode & 0o7777 == self.member_modes[(name, mname)], f"{name}/{mname} mode"


@pytest.fixture(scope="module")
def model_mount(module_mount_factory):
    return module_mount_factory(",".join(f"{k}={v}" for k, v in OPTIONS.items()))


@pytest.mark.timeout(3600 if LONG else 480)
def test_mcastfs_follows_the_model(model_mount):
    McastMachine.root = model_mount.path
    started = time.monotonic()
    try:
        run_state_machine_as_test(McastMachine, settings=PROFILE)
    finally:
        elapsed = time.monotonic() - started
        print(
            f"\nmodel-based: {STATS['examples']} examples, {STATS['steps']} compared operations "
            f"in {elapsed:.1f} s (profile {'long' if LONG else 'ci'})"
        )
        print("  model events: " + ", ".join(f"{k} {n}" for k, n in sorted(EVENTS.items())))
        for key, n in sorted(STATS["ambiguous_ctl"].items()):
            print(f"  contract-silent ctl input, mcastfs's choice: {key} ({n}x)")
        if os.environ.get("CONFORMANCE_VERBOSE"):
            for key, n in sorted(STATS["outcomes"].items()):
                print(f"  {key}: {n}")
    assert model_mount.running(), "the daemon died"
