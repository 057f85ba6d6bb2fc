"""A reference model of the mcastfs contract (docs/contract.md), written from
the contract alone, in plain Python.

It knows nothing about FUSE or the daemon's code. The conformance tests run
the same operations on a real mount and on this model and compare results and
errno values.

Where the contract was once silent, the model may say explicitly that more
than one answer is acceptable (`Ambiguous` verdicts of the ctl parser).
Kernel behaviour that mcastfs never sees (a zero-length read or write never
reaches a FUSE daemon; a write on a read-only fd is EBADF in the VFS) is
modelled as the kernel does it.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import unicodedata
from collections import deque
from dataclasses import dataclass, field

import topicfilter  # tests/lib: the contract's topic filters, written from it alone

# --- numbers from the contract ------------------------------------------------

MAX_MESSAGE = 1_044_480
DEFAULT_CAPACITY = 256
DEFAULT_QUEUE_BYTES = 4 * 1024 * 1024
CAPACITY_RANGE = (1, 1_000_000)
QUEUE_BYTES_RANGE = (1, 1 << 30)
MAX_MESSAGE_RANGE = (1, MAX_MESSAGE)
FIXED_FILES = ("send", "ctl", "status")
# Directories mcastfs makes in every group (docs/contract.md, "A group directory",
# and "Connected groups: peers").
FIXED_DIRECTORIES = ("frames", "peers")
RESERVED = FIXED_FILES + FIXED_DIRECTORIES
NAME_MAX = 255

# --- names ----------------------------------------------------------------------

# Unicode White_Space (PropList.txt): the contract's "whitespace".
WHITE_SPACE = frozenset(
    [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)


def name_faults(name: bytes) -> set:
    """The contract's rules a name breaks: "long" (more than 255 bytes),
    "invalid" (empty, not UTF-8, '/', NUL, whitespace, control, leading '.')."""
    faults = set()
    if len(name) > NAME_MAX:
        faults.add("long")
    try:
        text = name.decode("utf-8", errors="strict")  # rejects surrogates too
    except UnicodeDecodeError:
        return faults | {"invalid"}
    if not text or text.startswith("."):
        faults.add("invalid")
    for ch in text:
        if ch in "/\0" or ord(ch) in WHITE_SPACE or unicodedata.category(ch) == "Cc":
            faults.add("invalid")
            break
    return faults


def name_error(name: bytes) -> int:
    """0 when `name` is a valid group or member name, else the errno the
    contract gives: "A longer name is ENAMETOOLONG; anything else that breaks
    these rules is EINVAL"."""
    faults = name_faults(name)
    return errno.ENAMETOOLONG if "long" in faults else errno.EINVAL if faults else 0


def name_errors(name: bytes) -> frozenset:
    """The errno values the name fuzz accepts: a name that is too long and
    breaks another rule too may get either (a dedicated test holds mcastfs to
    the contract's ENAMETOOLONG)."""
    faults = name_faults(name)
    if faults == {"long", "invalid"}:
        return frozenset({errno.ENAMETOOLONG, errno.EINVAL})
    return frozenset({name_error(name)})


# --- the ctl grammar -------------------------------------------------------------

GROUP_KEYS = {"capacity": CAPACITY_RANGE, "queue_bytes": QUEUE_BYTES_RANGE, "max_message": MAX_MESSAGE_RANGE}
MEMBER_KEYS = {"capacity": CAPACITY_RANGE, "queue_bytes": QUEUE_BYTES_RANGE}
FLAGS = ("loopback", "drop_when_full", "send_to_peer")
GROUP_FLAGS = ("send_to_peer",)
CTL_MAX = 4096  # docs/contract.md, "G/ctl": a command is at most 4,096 bytes


class CtlError(Exception):
    pass


@dataclass
class CtlCommand:
    """A parsed command: target is None for `set`, else the member name."""

    target: str | None
    changes: dict


def _number(text: str, bounds, lenient: bool) -> int:
    if not text or not all("0" <= c <= "9" for c in text):
        raise CtlError(f"not a decimal number: {text[:40]!r}")
    if not lenient and len(text) > 1 and text[0] == "0":
        raise CtlError(f"leading zero: {text[:40]!r}")
    digits = text.lstrip("0") or "0"
    if len(digits) > 18:
        raise CtlError(f"out of range: {len(digits)} digits")
    value = int(digits)
    if not bounds[0] <= value <= bounds[1]:
        raise CtlError(f"out of range: {value}")
    return value


def parse_ctl(data: bytes, members, lenient: bool = False) -> CtlCommand:
    """Parse one ctl write. Strict: words separated by exactly one space, no
    leading or trailing space, no repeated key, no leading zeros. Lenient: runs
    of spaces, repeated keys (the last wins) and leading zeros allowed. Raises
    CtlError for anything the contract calls not understood / bad value /
    missing member."""
    if len(data) > CTL_MAX:
        raise CtlError(f"{len(data)} bytes, more than a command's {CTL_MAX}")
    if data.endswith(b"\n"):
        data = data[:-1]
    try:
        line = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise CtlError("not UTF-8") from None
    if "\n" in line:
        raise CtlError("more than one line")
    if lenient:
        words = [w for w in line.split(" ") if w]
    else:
        words = line.split(" ")
        if any(w == "" for w in words):
            raise CtlError("empty word (extra space)")
    if not words:
        raise CtlError("empty")
    verb = words[0]
    if verb == "set":
        target, pairs = None, words[1:]
    elif verb == "member":
        if len(words) < 2:
            raise CtlError("member without a name")
        target, pairs = words[1], words[2:]
        if target not in members:
            raise CtlError(f"no member {target!r}")
    else:
        raise CtlError(f"unknown verb {verb!r}")
    if not pairs:
        raise CtlError("no KEY=VALUE")
    changes = {}
    for word in pairs:
        key, eq, value = word.partition("=")
        if not eq:
            raise CtlError(f"not KEY=VALUE: {word!r}")
        if key in changes and not lenient:
            raise CtlError(f"repeated key {key!r}")
        if target is None:
            if key in GROUP_KEYS:
                changes[key] = _number(value, GROUP_KEYS[key], lenient)
            elif key == "send":
                if value not in ("anyone", "members"):
                    raise CtlError(f"send={value!r}")
                changes[key] = value
            elif key == "message":
                if value not in ("write", "line"):
                    raise CtlError(f"message={value!r}")
                changes[key] = value
            elif key in GROUP_FLAGS:
                if value not in ("0", "1"):
                    raise CtlError(f"{key}={value!r}")
                changes[key] = value == "1"
            else:
                raise CtlError(f"unknown group key {key!r}")
        else:
            if key in MEMBER_KEYS:
                changes[key] = _number(value, MEMBER_KEYS[key], lenient)
            elif key in FLAGS:
                if value not in ("0", "1"):
                    raise CtlError(f"{key}={value!r}")
                changes[key] = value == "1"
            elif key == "subscribe":  # docs/contract.md, "Topic filters": the one key that may be empty
                try:
                    topicfilter.parse(value)
                except topicfilter.Invalid as e:
                    raise CtlError(f"subscribe: {e}") from None
                changes[key] = value
            else:
                raise CtlError(f"unknown member key {key!r}")
    return CtlCommand(target, changes)


@dataclass
class CtlVerdict:
    """What the contract allows for one ctl write: `valid` (must succeed and
    apply `command`), `invalid` (must fail with EINVAL and change nothing), or
    `ambiguous` (the contract is silent: EINVAL, or success applying
    `command`, the lenient reading)."""

    kind: str
    command: CtlCommand | None = None
    reason: str = ""


def silent_features(data: bytes) -> str:
    """Which contract-silent liberties a command takes (for reports)."""
    line = data[:-1] if data.endswith(b"\n") else data
    words = [w for w in line.split(b" ") if w]
    found = []
    if line != b" ".join(words):
        found.append("extra spaces")
    if any(re.fullmatch(rb"[^=]*=0[0-9]+", w) for w in words):
        found.append("leading zeros")
    keys = [w.partition(b"=")[0] for w in words if b"=" in w]
    if len(keys) != len(set(keys)):
        found.append("repeated key")
    return "+".join(found) or "?"


def ctl_verdict(data: bytes, members) -> CtlVerdict:
    try:
        return CtlVerdict("valid", parse_ctl(data, members, lenient=False))
    except CtlError:
        try:
            return CtlVerdict("ambiguous", parse_ctl(data, members, lenient=True), silent_features(data))
        except CtlError as e:
            return CtlVerdict("invalid", None, str(e))


# --- groups, members, queues --------------------------------------------------------

# What the model saw happen (for reports): drops, loopback deliveries, partial reads, ...
EVENTS: dict[str, int] = {}


def _event(name: str):
    EVENTS[name] = EVENTS.get(name, 0) + 1


class ModelError(Exception):
    """An operation the model says fails; `allowed` is the set of errno values
    the contract permits (several when more than one rule applies and the
    contract does not rank them)."""

    def __init__(self, *codes: int):
        super().__init__("/".join(errno.errorcode[c] for c in codes))
        self.allowed = frozenset(codes)


@dataclass(eq=False)
class Queued:
    """A message in a queue, with what a frame shows of it. creds is (pid,
    uid, gid) of the write that gave its last bytes (a line tail's too, sent
    by fsync or close)."""

    data: bytes
    sequence: int
    sender: str
    creds: tuple
    dropped: int = 0
    private: bool = False   # sent through G/peers/NAME: frames show flags bit 0


def writer_creds() -> tuple:
    """The credentials the kernel gives a request of the calling thread (the
    model test makes every call from one thread)."""
    return (threading.get_native_id(), os.getuid(), os.getgid())


@dataclass(eq=False)
class Member:
    name: str
    capacity: int
    queue_bytes: int
    loopback: bool = False
    drop_when_full: bool = False
    queue: deque = field(default_factory=deque)
    queued_bytes: int = 0
    delivered: int = 0
    dropped: int = 0
    present: bool = True
    drops_pending: int = 0   # missed since the last message queued: the next one's frame says so
    subscribe: str = ""      # as given to ctl; "" receives every message

    def receives(self, data: bytes | None) -> bool:
        """Whether this member's patterns match a message (None: any message,
        for poll's conservative answer)."""
        return data is None or topicfilter.matches(topicfilter.parse(self.subscribe), data)
    send_to_peer: bool = False
    peer: "Peer" = None

    def __post_init__(self):
        self.peer = Peer(self)

    @property
    def full(self) -> bool:
        return len(self.queue) >= self.capacity or self.queued_bytes >= self.queue_bytes

    @property
    def holds_back(self) -> bool:
        """A write to this member must wait: full, and not drop-when-full."""
        return self.full and not self.drop_when_full

    def status(self) -> dict:
        return {
            "queued": len(self.queue),
            "queued_bytes": self.queued_bytes,
            "capacity": self.capacity,
            "queue_bytes": self.queue_bytes,
            "loopback": int(self.loopback),
            "drop_when_full": int(self.drop_when_full),
            "full": int(self.full),
            "delivered": self.delivered,
            "dropped": self.dropped,
            "send_to_peer": int(self.send_to_peer),
            "peer_queued": len(self.peer.queue),
            "peer_full": int(self.peer.full),
            "subscribe": self.subscribe,
        }


@dataclass(eq=False)
class Peer:
    """A member's peer queue (docs/contract.md, "Connected groups: peers"):
    the member's capacity and queue_bytes, never dropping; what the member
    sends while send_to_peer=1. Read like a member's queue; it ends when the
    member leaves."""

    member: Member
    queue: deque = field(default_factory=deque)
    queued_bytes: int = 0

    @property
    def present(self) -> bool:
        return self.member.present

    @property
    def full(self) -> bool:
        return len(self.queue) >= self.member.capacity or self.queued_bytes >= self.member.queue_bytes


@dataclass(eq=False)
class Group:
    name: str
    mode: int
    capacity: int = DEFAULT_CAPACITY
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    max_message: int = MAX_MESSAGE
    send_policy: str = "anyone"
    message: str = "write"
    send_to_peer: bool = False
    members: dict = field(default_factory=dict)  # name -> Member, in join order
    sent: int = 0
    closed: bool = False
    # Line tails flushed by the last close while a recipient was full: they wait
    # as blocked writes (data, sender, private, creds), oldest first: in the group's
    # line, or (private) in the line of the member they are for.
    parked: deque = field(default_factory=deque)

    def status(self) -> dict:
        return {
            "send": self.send_policy,
            "capacity": self.capacity,
            "queue_bytes": self.queue_bytes,
            "max_message": self.max_message,
            "members": len(self.members),
            "sent": self.sent,
            # only flushed tails wait (the model test never blocks); private
            # ones wait in their member's line, not the group's
            "blocked_writers": sum(1 for _, _, private, _ in self.parked if not private),
            "message": self.message,
            "send_to_peer": int(self.send_to_peer),
        }

    # sending
    def check_send(self, size: int, sender: Member | None, data: bytes | None = None) -> list:
        """Raises ModelError when a message of `size` bytes from `sender` (None:
        through `send`) would fail now; else its recipients: those whose
        filters match `data` (None: every member, poll's conservative view)."""
        refusals = self.refusals(size, sender)
        if refusals:
            raise ModelError(*refusals)
        recipients = self.recipients(sender, data)
        # Fairness: a later write does not overtake one that waits.
        if self.group_waits() or any(m.holds_back for m in recipients) or self.peer_holds_back(sender):
            raise ModelError(errno.EAGAIN)
        return recipients

    def group_waits(self) -> bool:
        return any(not private for _, _, private, _ in self.parked)

    @staticmethod
    def peer_holds_back(sender: Member | None) -> bool:
        """The sender's peer is one more recipient, which never drops."""
        return sender is not None and sender.send_to_peer and sender.peer.full

    def refusals(self, size: int, sender: Member | None) -> list:
        """The errors a message of `size` bytes from `sender` gets whatever the queues hold."""
        refusals = []
        if self.closed:
            refusals.append(errno.EPIPE)  # docs/contract.md, "Sending": send of a removed group
        if size > self.max_message:
            refusals.append(errno.EMSGSIZE)
        if sender is not None and not sender.present:
            refusals.append(errno.EPIPE)  # docs/contract.md, "Sending": a member that has left
        if sender is None and self.send_policy == "members":
            refusals.append(errno.EPERM)
        return refusals

    def recipients(self, sender: Member | None, data: bytes | None) -> list:
        """docs/contract.md, "Sending" and "Topic filters"."""
        found = [m for m in self.members.values() if (m is not sender or m.loopback) and m.receives(data)]
        if data is not None and len(found) < len([m for m in self.members.values() if m is not sender or m.loopback]):
            _event("member skipped by its filter")
        return found

    def would_block(self, sender: Member | None) -> bool:
        return any(m.holds_back for m in self.members.values() if m is not sender or m.loopback) \
            or self.peer_holds_back(sender)

    def send(self, data: bytes, sender: Member | None, creds: tuple | None = None) -> None:
        """One non-blocking message; raises ModelError, else delivers."""
        self.deliver(data, sender, self.check_send(len(data), sender, data), creds or writer_creds())

    def deliver(self, data: bytes, sender: Member | None, recipients, creds) -> None:
        self.sent += 1
        for m in recipients:
            if m is sender:
                _event("loopback delivery")
            if m.full:
                m.dropped += 1
                m.drops_pending += 1
                _event("drop (drop_when_full member full)")
            else:
                m.queue.append(Queued(data, self.sent, sender.name if sender else "", creds, m.drops_pending))
                m.drops_pending = 0
                m.queued_bytes += len(data)
                m.delivered += 1
        if sender is not None and sender.send_to_peer:
            sender.peer.queue.append(Queued(data, self.sent, sender.name, creds))
            sender.peer.queued_bytes += len(data)
            _event("peer delivery")

    # private messages (docs/contract.md, "Connected groups: peers")
    def private_refusals(self, size: int, member: Member) -> list:
        refusals = []
        if size > self.max_message:
            refusals.append(errno.EMSGSIZE)
        if not member.present:
            refusals.append(errno.EPIPE)  # the member left: its peer file's writes fail
        return refusals

    def check_private(self, size: int, member: Member) -> None:
        """Raises ModelError when a private message of `size` bytes to
        `member` would fail or wait now. It waits for `member` alone: behind
        older private messages to it, never behind the group's line."""
        refusals = self.private_refusals(size, member)
        if refusals:
            raise ModelError(*refusals)
        if member.holds_back or any(private and m is member for _, m, private, _ in self.parked):
            raise ModelError(errno.EAGAIN)

    def send_private(self, data: bytes, member: Member, creds: tuple | None = None) -> None:
        self.check_private(len(data), member)
        self.deliver_private(data, member, creds or writer_creds())

    def deliver_private(self, data: bytes, member: Member, creds) -> None:
        """A group sequence number, no sender, marked private; a full
        drop-when-full member misses it."""
        self.sent += 1
        if member.full:
            member.dropped += 1
            member.drops_pending += 1
            _event("private message dropped (drop_when_full member full)")
            return
        member.queue.append(Queued(data, self.sent, "", creds, member.drops_pending, private=True))
        member.drops_pending = 0
        member.queued_bytes += len(data)
        member.delivered += 1
        _event("private delivery")

    def flush(self, tail: bytes, sender: Member | None, creds: tuple, private: bool = False) -> None:
        """A line tail sent by the last close, as its writer's
        (`creds`): it waits in line as a blocked write; settle() delivers it
        when it can. A private tail (`sender` is then the member it is for)
        waits in that member's line."""
        if len(tail) > self.max_message:
            # Its size is checked as it is sent, against max_message now (it
            # may have been lowered since the tail was written): refused,
            # unseen. Once it waits, a lower max_message no longer refuses it.
            _event("line tail refused (max_message lowered before the flush)")
            return
        self.parked.append((tail, sender, private, creds))
        _event("line tail flushed" + (" (private)" if private else ""))
        self.settle()

    def settle(self) -> bool:
        """Delivers the waiting flushed tails that can go now, oldest first
        (one that fails, for a member that left or a group removed, is dropped
        unseen): the head of the group's line when every recipient has room,
        and a private tail when no older one waits for its member and that
        member has room. A group tail that cannot go does not hold a younger
        private one back. True when something changed."""
        changed = False
        progress = True
        while progress:
            progress = False
            group_head_seen = False
            waiting_for: set = set()  # members with an older private tail still waiting
            for item in list(self.parked):
                tail, who, private, creds = item
                if private:
                    if who in waiting_for:
                        continue
                    # max_message was checked when the tail was written.
                    if not who.present or self.closed:
                        _event("line tail refused")
                    elif who.holds_back:
                        waiting_for.add(who)
                        continue
                    else:
                        self.deliver_private(tail, who, creds)
                        _event("line tail delivered (private)")
                else:
                    if group_head_seen:
                        continue
                    recipients = self.recipients(who, tail)
                    if not [e for e in self.refusals(len(tail), who) if e != errno.EMSGSIZE]:
                        if any(m.holds_back for m in recipients) or self.peer_holds_back(who):
                            group_head_seen = True
                            continue
                        self.deliver(tail, who, recipients, creds)
                        _event("line tail delivered")
                    else:
                        _event("line tail refused")
                self.parked.remove(item)
                changed = progress = True
                break  # start again from the oldest: what was delivered may free or fill a queue
        return changed

    def apply(self, command: CtlCommand) -> None:
        if command.target is None:
            for key, value in command.changes.items():
                setattr(self, "send_policy" if key == "send" else key, value)
        else:
            member = self.members[command.target]
            for key, value in command.changes.items():
                setattr(member, key, value)


@dataclass(eq=False)
class Handle:
    """One open file: `send` (member None), a member file, or (peer) the
    member's peer file G/peers/NAME."""

    fd: int
    group: Group
    member: Member | None
    reads: bool
    writes: bool
    remainder: bytes | None = None
    framed: bool = False        # opened in G/frames/
    pending: bytes = b""        # a line that waits for its newline (message=line)
    pending_creds: tuple = ()   # the write that gave its last bytes
    peer: bool = False          # G/peers/NAME: reads the peer queue, writes private messages

    def write(self, data: bytes) -> int:
        if not self.writes:
            raise ModelError(errno.EBADF)  # the VFS, before the daemon
        if len(data) == 0:
            return 0  # the kernel never forwards a zero-length write
        if self.framed:
            return self.write_batch(data)
        if self.group.message == "line":
            return self.write_lines(data)
        self.send_one(data)
        return len(data)

    def send_one(self, data: bytes) -> None:
        """One message from this file: to the group, or privately."""
        if self.peer:
            self.group.send_private(data, self.member)
        else:
            self.group.send(data, self.member)

    def refusals(self) -> list:
        """What refuses any message from this file, whatever its size."""
        if self.peer:
            return self.group.private_refusals(1, self.member)
        return self.group.refusals(1, self.member)

    def write_batch(self, data: bytes) -> int:
        """docs/contract.md, "Writing a batch", never waiting: the longest
        prefix every blocking recipient can take now, at least one message."""
        g = self.group
        codes = set(g.refusals(1, self.member))
        try:
            records = parse_batch(data, g.max_message)
        except ModelError as e:
            codes |= e.allowed
        if codes:
            raise ModelError(*codes)
        written = 0
        for k, record in enumerate(records):
            try:
                g.send(record, self.member)
            except ModelError:
                if k == 0:
                    raise
                _event("short batch write")
                break
            written += 4 + len(record)
        return written

    def write_lines(self, data: bytes) -> int:
        """docs/contract.md, "Line messages", never waiting. A write that
        makes no complete line only adds to the waiting tail."""
        g = self.group
        carried = self.pending
        text = carried + data
        lines, start = [], 0
        for i in range(len(carried), len(text)):
            if text[i] == 0x0A:
                lines.append((start, i + 1))
                start = i + 1
        tail = text[start:]
        if max([b - a for a, b in lines] + [len(tail)]) > g.max_message:
            raise ModelError(errno.EMSGSIZE)
        if not lines:
            self.keep(tail, data)
            _event("line tail kept")
            return len(data)
        refusals = self.refusals()
        if refusals:
            raise ModelError(*refusals)
        for k, (a, b) in enumerate(lines):
            try:
                self.send_one(text[a:b])
            except ModelError:
                if k == 0:
                    raise  # nothing delivered: what waited still waits
                _event("short line write")
                self.pending = b""  # the rest is not kept
                return lines[k - 1][1] - len(carried)
        self.keep(tail, data)
        _event(f"line write of {min(len(lines), 3)}{'+' if len(lines) > 3 else ''} lines")
        return len(data)

    def keep(self, tail: bytes, data: bytes) -> None:
        """The tail waits, with the writer of its last bytes: this write's, if
        it wrote any."""
        self.pending = tail
        if data:
            self.pending_creds = writer_creds()

    def sync(self) -> None:
        """fsync: a waiting tail goes as a message of its own, as its
        writer's, and fsync returns once it is in. It fails as a write of the
        tail would, EAGAIN meaning that it would wait (the model test then
        interrupts it: EINTR); then nothing is sent and the tail still waits."""
        if not self.pending:
            return
        if self.peer:
            self.group.send_private(self.pending, self.member, self.pending_creds)
        else:
            self.group.send(self.pending, self.member, self.pending_creds)
        _event("line tail sent by fsync" + (" (private)" if self.peer else ""))
        self.pending = b""

    def flush(self) -> None:
        """The last close: a waiting tail goes as a message of its own, as
        its writer's, whoever closes, without holding the closer."""
        if self.pending:
            self.group.flush(self.pending, self.member, self.pending_creds, private=self.peer)
            self.pending = b""

    def readiness(self) -> tuple[bool, bool]:
        """(POLLIN, POLLOUT) as the contract says: a member file is readable
        when a message (or the rest of one this file began) waits, or the
        member left; a writer is writable when a write would not block (a
        write that fails at once does not block). A file opened read-only is
        never writable, write-only never readable."""
        source = self.source()
        readable = self.reads and source is not None and (
            self.remainder is not None or bool(source.queue) or not source.present)
        writable = False
        if self.writes:
            try:
                if self.peer:
                    self.group.check_private(1, self.member)
                else:
                    self.group.check_send(1, self.member)
                writable = True
            except ModelError as e:
                writable = e.allowed != {errno.EAGAIN}
        return readable, writable

    def tolerated_readiness(self) -> set:
        """The readiness the model test accepts: exactly readiness()."""
        return {self.readiness()}

    def read_frames(self, size: int) -> list:
        """docs/contract.md, "Reading frames": whole frames that fit, at least
        one; EMSGSIZE, consuming nothing, when the first does not."""
        member = self.member
        if not member.queue:
            if member.present:
                raise ModelError(errno.EAGAIN)
            _event("end of file (framed)")
            return []
        out, used = [], 0
        while member.queue:
            q = member.queue[0]
            need = frame_size(len(q.data), len(q.sender.encode()))
            if used + need > size:
                break
            used += need
            member.queue.popleft()
            member.queued_bytes -= len(q.data)
            out.append(q)
        if not out:
            _event("framed read: EMSGSIZE")
            raise ModelError(errno.EMSGSIZE)
        _event(f"framed read of {min(len(out), 3)}{'+' if len(out) > 3 else ''} frames")
        return out

    def source(self):
        """The queue this file reads: its member's, or the member's peer queue."""
        if self.member is None:
            return None
        return self.member.peer if self.peer else self.member

    def read(self, size: int):
        if not self.reads or self.member is None:
            raise ModelError(errno.EBADF)  # the VFS (or the daemon, for send)
        if size == 0:
            return b""  # the kernel answers a zero-length read itself
        if self.framed:
            return self.read_frames(size)
        if self.remainder is not None:
            _event("read of the rest of a message")
            chunk, rest = self.remainder[:size], self.remainder[size:]
            self.remainder = rest or None
            return chunk
        member = self.source()
        if self.peer and member.queue:
            _event("peer read")
        if not member.queue:
            if member.present:
                raise ModelError(errno.EAGAIN)
            _event("end of file")
            return b""  # left and drained: end of file
        message = member.queue.popleft().data
        member.queued_bytes -= len(message)
        chunk, rest = message[:size], message[size:]
        self.remainder = rest or None
        if rest:
            _event("partial read")
        if not member.present:
            _event("read of a member that left")
        return chunk


class Filesystem:
    """The whole mount: groups by name, in the order they were made."""

    def __init__(self, capacity=DEFAULT_CAPACITY, queue_bytes=DEFAULT_QUEUE_BYTES, max_message=MAX_MESSAGE):
        self.groups: dict[str, Group] = {}
        self.defaults = dict(capacity=capacity, queue_bytes=queue_bytes, max_message=max_message)

    def group(self, name: str) -> Group:
        g = self.groups.get(name)
        if g is None:
            raise ModelError(errno.ENOENT)
        return g

    def mkdir(self, name: bytes, mode: int) -> Group:
        code = name_error(name)
        if code:
            raise ModelError(code)
        text = name.decode()
        if text in self.groups:
            raise ModelError(errno.EEXIST)
        g = Group(text, mode, **self.defaults)
        self.groups[text] = g
        return g

    def rmdir(self, name: str) -> None:
        g = self.group(name)
        if g.members:
            raise ModelError(errno.ENOTEMPTY)
        g.closed = True
        del self.groups[name]

    def create(self, group: str, name: bytes, excl: bool, writes: bool) -> Member | None:
        """open(G/NAME, O_CREAT [|O_EXCL]); the new member, or None when an
        existing entry was opened."""
        g = self.group(group)
        text = name.decode("utf-8", errors="surrogateescape")
        if text in RESERVED or text in g.members:
            if excl:
                raise ModelError(errno.EEXIST)
            if text in FIXED_DIRECTORIES:
                raise ModelError(errno.EISDIR)  # the kernel's answer to O_CREAT on a directory
            if (text in ("send", "ctl") and not writes) or (text == "status" and writes):
                raise ModelError(errno.EACCES)  # even for root (docs/contract.md)
            return None
        code = name_error(name)
        if code:
            raise ModelError(code)
        m = Member(text, g.capacity, g.queue_bytes, send_to_peer=g.send_to_peer)
        g.members[text] = m
        return m

    def unlink(self, group: str, name: str) -> None:
        g = self.group(group)
        if name in FIXED_DIRECTORIES:
            raise ModelError(errno.EISDIR)  # unlink(2) of a directory, refused by the kernel
        if name in RESERVED:
            raise ModelError(errno.EPERM)
        m = g.members.pop(name, None)
        if m is None:
            raise ModelError(errno.ENOENT)
        m.present = False
        g.settle()  # private tails waiting for it fail

    def member(self, group: str, name: str) -> Member:
        g = self.group(group)
        m = g.members.get(name)
        if m is None:
            raise ModelError(errno.ENOENT)
        return m

    def ctl(self, group: str, data: bytes, actual_ok: bool | None = None) -> CtlVerdict:
        """Apply a ctl write. With actual_ok given (what mcastfs answered), an
        ambiguous command follows it; the verdict is returned either way."""
        g = self.group(group)
        verdict = ctl_verdict(data, g.members)
        if verdict.kind == "valid" or (verdict.kind == "ambiguous" and actual_ok):
            g.apply(verdict.command)
        return verdict


# --- the framed view (docs/contract.md, "The framed view") ------------------------

FRAME_HEADER = 40
# The largest write(2) that always reaches the daemon whole: a batch's bound.
MAX_BATCH = 1_044_480


def parse_batch(data: bytes, max_message: int) -> list[bytes]:
    """The records of a batch written on G/frames/..., as "Writing a batch"
    says; raises ModelError(EINVAL) for a zero length, a record that runs past
    the end or leftover bytes anywhere in it, then ModelError(EMSGSIZE) for a
    record longer than max_message (the structure is judged first, over the
    whole batch)."""
    records = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise ModelError(errno.EINVAL)
        length = int.from_bytes(data[offset:offset + 4], "little")
        if length == 0 or offset + 4 + length > len(data):
            raise ModelError(errno.EINVAL)
        records.append(data[offset + 4:offset + 4 + length])
        offset += 4 + length
    if any(len(r) > max_message for r in records):
        raise ModelError(errno.EMSGSIZE)
    return records


def frame_size(payload_size: int, name_size: int) -> int:
    """Bytes one frame takes in a read buffer, padding included."""
    return (FRAME_HEADER + name_size + payload_size + 7) & ~7


@dataclass
class ParsedFrame:
    payload: bytes
    name: bytes
    sequence: int
    time_ns: int
    pid: int
    uid: int
    gid: int
    dropped: int
    flags: int


def decode_frames(buf: bytes) -> list[ParsedFrame]:
    """Frames of one read of G/frames/NAME, held to "Reading frames" strictly
    (header_size is 40 + name_size today, padding is zero, nothing is cut);
    raises AssertionError with the offset for anything else."""
    out = []
    offset = 0
    while offset < len(buf):
        assert offset % 8 == 0, f"frame at unaligned offset {offset}"
        assert len(buf) - offset >= FRAME_HEADER, f"truncated frame header at {offset} of {len(buf)}"
        size = int.from_bytes(buf[offset:offset + 4], "little")
        header_size = int.from_bytes(buf[offset + 4:offset + 6], "little")
        name_size, flags = buf[offset + 6], buf[offset + 7]
        f = [int.from_bytes(buf[offset + a:offset + b], "little") for a, b in ((8, 16), (16, 24), (24, 28), (28, 32),
                                                                                 (32, 36), (36, 40))]
        assert header_size == FRAME_HEADER + name_size, f"header_size {header_size}, name_size {name_size} at {offset}"
        start = offset + header_size
        end = start + size
        assert end <= len(buf), f"frame at {offset} runs past the read's {len(buf)} bytes"
        following = (end + 7) & ~7
        if following > len(buf):  # the last frame's padding may be left out
            assert end == len(buf), f"the read ends inside the padding of the frame at {offset}"
            following = len(buf)
        assert buf[end:following] == bytes(following - end), f"padding not zero after the frame at {offset}"
        out.append(ParsedFrame(buf[start:end], buf[offset + FRAME_HEADER:start], f[0], f[1], f[2], f[3], f[4], f[5],
                               flags))
        offset = following
    return out
