"""The framed view (docs/contract.md, "The framed view"): G/frames/ and its
twins, batch writes delivered as the longest prefix that fits, frames read
many per read(2) with each message's metadata, credentials from the kernel.

Frames are parsed with the project's own client module (clients/python)."""

from __future__ import annotations

import errno
import os
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import Call, expect_errno

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
import mcastfs  # noqa: E402


def batch(*messages: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(m)) + m for m in messages)


def frames_of(group, name: str, bufsize: int = 1 << 20) -> list:
    fd = os.open(group.p(f"frames/{name}"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        return mcastfs.read_frames(fd, bufsize)
    finally:
        os.close(fd)


# --- the directory --------------------------------------------------------------


def test_frames_lists_send_and_every_member(group):
    group.member("alice")
    group.member("bob")
    assert "frames" in os.listdir(group.path)
    assert stat.S_ISDIR(os.stat(group.p("frames")).st_mode)
    assert sorted(os.listdir(group.p("frames"))) == ["alice", "bob", "send"]
    os.unlink(group.p("bob"))
    assert sorted(os.listdir(group.p("frames"))) == ["alice", "send"]


def test_a_twin_is_the_member_itself(group):
    group.member("alice", mode=0o640)
    member, twin = os.stat(group.p("alice")), os.stat(group.p("frames/alice"))
    assert (twin.st_ino, twin.st_mode, twin.st_uid, twin.st_gid) == (member.st_ino, member.st_mode, member.st_uid, member.st_gid)
    os.chmod(group.p("frames/alice"), 0o600)
    assert stat.S_IMODE(os.stat(group.p("alice")).st_mode) == 0o600
    assert os.stat(group.p("frames/send")).st_ino == os.stat(group.p("send")).st_ino


def test_nothing_is_made_or_removed_in_frames(group):
    group.member("alice")
    expect_errno(errno.EPERM, os.open, group.p("frames/new"), os.O_CREAT | os.O_WRONLY, 0o644)
    expect_errno(errno.EPERM, os.unlink, group.p("frames/alice"))
    expect_errno(errno.EPERM, os.mkdir, group.p("frames/d"))
    expect_errno(errno.EPERM, os.rmdir, group.p("frames"))
    expect_errno(errno.EISDIR, os.unlink, group.p("frames"))
    expect_errno(errno.EEXIST, os.open, group.p("frames"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    assert sorted(os.listdir(group.p("frames"))) == ["alice", "send"]


def test_rmdir_takes_frames_with_the_group(mount, new_group):
    g = new_group()
    os.rmdir(g.path)
    assert not os.path.exists(g.path)


# --- writing batches --------------------------------------------------------------


def test_a_batch_is_many_messages_in_one_write(group):
    group.member("r")
    data = batch(b"one", b"two", b"three")
    fd = os.open(group.p("frames/send"), os.O_WRONLY)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)
    assert group.take("r") == [b"one", b"two", b"three"]
    assert group.status().group["sent"] == 3


@pytest.mark.parametrize("bad", [
    b"\x03\x00\x00",                       # a length cut short
    b"\x05\x00\x00\x00abc",                # a record past the end
    b"\x00\x00\x00\x00",                   # a zero length
    struct.pack("<I", 2) + b"ok" + b"!",   # a byte left over
], ids=["short-length", "past-end", "zero", "left-over"])
def test_a_batch_that_does_not_parse_is_einval_and_sends_nothing(group, bad):
    group.member("r")
    fd = os.open(group.p("frames/send"), os.O_WRONLY)
    try:
        expect_errno(errno.EINVAL, os.write, fd, bad)
    finally:
        os.close(fd)
    assert group.status().group["sent"] == 0


def test_a_record_above_max_message_is_emsgsize_and_sends_nothing(group):
    group.member("r")
    group.set(max_message=4)
    fd = os.open(group.p("frames/send"), os.O_WRONLY)
    try:
        expect_errno(errno.EMSGSIZE, os.write, fd, batch(b"ok", b"too long"))
    finally:
        os.close(fd)
    assert group.status().group["sent"] == 0


def test_a_full_member_gets_the_prefix_that_fits_and_the_write_is_short(group):
    group.member("r", capacity=2)
    data = batch(b"a", b"b", b"c", b"d")
    fd = os.open(group.p("frames/send"), os.O_WRONLY | os.O_NONBLOCK)
    try:
        assert os.write(fd, data) == len(batch(b"a", b"b"))
        expect_errno(errno.EAGAIN, os.write, fd, batch(b"c", b"d"))
    finally:
        os.close(fd)
    assert group.take("r") == [b"a", b"b"]


def test_a_blocked_batch_write_waits_for_its_first_message_then_delivers_what_fits(group):
    group.member("r", capacity=2)
    group.fill("r", 2)
    fd = os.open(group.p("frames/send"), os.O_WRONLY)
    try:
        writer = Call(os.write, fd, batch(b"x", b"y", b"z"))
        writer.wait_blocked()
        assert group.take_one("r") == b"fill-r-0"
        assert writer.result() == len(batch(b"x"))
    finally:
        os.close(fd)
    assert group.take("r") == [b"fill-r-1", b"x"]


def test_send_batch_resends_the_rest_after_a_short_write(group):
    """The client helper loops on short writes until every message is in."""
    group.member("r", capacity=1)
    messages = [f"m{i}".encode() for i in range(5)]
    fd = os.open(group.p("frames/send"), os.O_WRONLY)
    got = []
    try:
        sender = Call(mcastfs.send_batch, fd, messages)
        while len(got) < 5:
            got += group.take("r")
            time.sleep(0.01)
        sender.result()
    finally:
        os.close(fd)
    assert got == messages


def test_a_blocked_batch_write_interrupted_delivers_nothing(group):
    """EINTR of a parked batch write. Python retries a call a signal
    interrupted (PEP 475) unless the handler raises: this one raises."""
    group.member("r", capacity=1)
    group.fill("r", 1)
    code = (
        "import os, signal, struct, sys\n"
        "class Interrupted(Exception): pass\n"
        "def on_alarm(*_): raise Interrupted\n"
        "signal.signal(signal.SIGALRM, on_alarm)\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.3)\n"
        "try:\n"
        "    os.write(fd, struct.pack('<I', 5) + b'never' + struct.pack('<I', 4) + b'nope')\n"
        "    print('written')\n"
        "except Interrupted:\n"
        "    print('interrupted')\n"
    )
    res = subprocess.run([sys.executable, "-c", code, group.p("frames/send")], capture_output=True, text=True, timeout=10)
    assert res.stdout.strip() == "interrupted", res.stdout + res.stderr
    assert group.take("r") == [b"fill-r-0"]
    assert group.status().group["blocked_writers"] == 0


# --- reading frames -------------------------------------------------------------------


def test_frames_carry_sequence_time_credentials_and_sender(group):
    group.member("w")
    group.member("r")
    before = time.time_ns()
    group.send(b"anonymous")
    group.send_as("w", b"from w")
    after = time.time_ns()
    frames = frames_of(group, "r")
    assert [bytes(f.payload) for f in frames] == [b"anonymous", b"from w"]
    assert [f.sender for f in frames] == [None, "w"]
    assert frames[1].sequence == frames[0].sequence + 1
    for f in frames:
        assert before <= f.time_ns <= after
        assert (f.pid, f.uid, f.gid) == (os.getpid(), os.getuid(), os.getgid())
        assert f.dropped == 0 and not f.private


def test_a_frame_never_splits_a_read_too_small_is_emsgsize_and_consumes_nothing(group):
    group.member("r")
    group.send(b"x" * 100)
    fd = os.open(group.p("frames/r"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        expect_errno(errno.EMSGSIZE, os.read, fd, 64)
        frames = list(mcastfs.parse_frames(os.read(fd, 1 << 20)))
    finally:
        os.close(fd)
    assert [bytes(f.payload) for f in frames] == [b"x" * 100]


def test_a_read_takes_the_frames_that_fit_and_leaves_the_rest(group):
    group.member("r")
    for i in range(10):
        group.send(b"%02d" % i)                  # each frame: 40 + 2 -> 48 bytes
    fd = os.open(group.p("frames/r"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        first = os.read(fd, 3 * 48 + 40)
        rest = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    assert [bytes(f.payload) for f in mcastfs.parse_frames(first)] == [b"00", b"01", b"02"]
    assert [bytes(f.payload) for f in mcastfs.parse_frames(rest)] == [b"%02d" % i for i in range(3, 10)]


def test_a_frame_that_does_not_fit_after_others_stays_and_only_a_first_one_is_emsgsize(group):
    """A read takes the whole frames that fit; the one that does not fit after
    them stays queued without an error, and fails a read only when it comes
    first."""
    group.member("r")
    group.send(b"s1")                            # 48 bytes framed
    group.send(b"x" * 200)                       # 240
    group.send(b"s2")                            # 48
    fd = os.open(group.p("frames/r"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert [bytes(f.payload) for f in mcastfs.parse_frames(os.read(fd, 128))] == [b"s1"]
        expect_errno(errno.EMSGSIZE, os.read, fd, 128)
        expect_errno(errno.EMSGSIZE, os.read, fd, 239)
        rest = os.read(fd, 240 + 48)
    finally:
        os.close(fd)
    assert [bytes(f.payload) for f in mcastfs.parse_frames(rest)] == [b"x" * 200, b"s2"]


def waiting_read(path: str, size: int, reads: int = 1) -> Call:
    """`reads` blocking read(2)s of `size` bytes on `path`, the first waiting
    in the daemon when this returns; the result is what each read returned."""
    fd = os.open(path, os.O_RDONLY)

    def read_and_close():
        try:
            return [os.read(fd, size) for _ in range(reads)]
        finally:
            os.close(fd)

    call = Call(read_and_close)
    call.wait_blocked(path=path)
    time.sleep(0.05)  # the request reached the daemon, which parked it: reads wait in the order begun
    return call


def send_batch(group, *messages: bytes):
    fd = os.open(group.p("frames/send"), os.O_WRONLY)
    try:
        assert os.write(fd, batch(*messages)) == len(batch(*messages))
    finally:
        os.close(fd)


def test_an_emsgsize_read_consumes_nothing_while_a_record_reader_of_the_member_waits(group):
    """"Reading frames": a frame that does not fit fails the read with
    EMSGSIZE and consumes nothing; "Ordering": messages written one after
    another reach every recipient in the order written. A framed reader with a
    64-byte buffer waits, then a record reader of the same member; A (a
    240-byte frame) and B arrive in one batch. (The daemon once took A for
    the framed read, found it too large and put it back, while B went to the
    record reader: B before A.)"""
    group.member("m")
    framed = waiting_read(group.p("frames/m"), 64)
    record = waiting_read(group.p("m"), 4096, reads=2)
    a, b = b"A" * 200, b"B" * 10
    send_batch(group, a, b)
    assert framed.errno() == errno.EMSGSIZE
    assert record.result() == [a, b]


def test_two_framed_readers_of_a_member_the_small_one_takes_nothing_from_the_big_one(group):
    """As above with a second framed reader, of 1 MiB, instead of the record
    reader: it gets A first, and B after it."""
    group.member("m")
    small = waiting_read(group.p("frames/m"), 64)
    big = waiting_read(group.p("frames/m"), 1 << 20)
    a, b = b"A" * 200, b"B" * 10
    send_batch(group, a, b)
    assert small.errno() == errno.EMSGSIZE
    (first,) = big.result()
    got = [bytes(f.payload) for f in mcastfs.parse_frames(first)]
    if got == [a]:                               # B may have come in the same read, or be queued
        got += [bytes(f.payload) for f in frames_of(group, "m")]
    assert got == [a, b]


def test_record_and_framed_opens_share_one_queue(group):
    group.member("r")
    for i in range(4):
        group.send(b"m%d" % i)
    assert group.take_one("r") == b"m0"
    assert [bytes(f.payload) for f in frames_of(group, "r")] == [b"m1", b"m2", b"m3"]


def test_dropped_counts_what_a_drop_when_full_member_missed(group):
    group.member("r", capacity=1, drop_when_full=1)
    for i in range(4):
        group.send(b"%d" % i)                    # 1, 2, 3 are dropped
    assert [f.dropped for f in frames_of(group, "r")] == [0]
    group.send(b"after")
    frames = frames_of(group, "r")
    assert [(bytes(f.payload), f.dropped) for f in frames] == [(b"after", 3)]


def test_framed_reads_block_and_end_at_leave(group):
    group.member("r")
    fd = os.open(group.p("frames/r"), os.O_RDONLY)
    try:
        reader = Call(os.read, fd, 1 << 20)
        reader.wait_blocked()
        group.send(b"wake")
        assert [bytes(f.payload) for f in mcastfs.parse_frames(reader.result())] == [b"wake"]
        os.unlink(group.p("r"))
        assert os.read(fd, 1 << 20) == b""
    finally:
        os.close(fd)


def test_credentials_are_the_writers_not_forgeable(mount_factory, tmp_path):
    """A writer running as another user gets its own uid/gid in every frame."""
    m = mount_factory(options="allow_other")
    g = m.group("creds", 0o777)
    g.member("r")
    os.chmod(g.p("send"), 0o222)
    os.chmod(g.p("frames/send"), 0o222)
    code = (
        "import os, struct, sys; fd = os.open(sys.argv[1], os.O_WRONLY); "
        "m = b'uid=0 pretending'; os.write(fd, struct.pack('<I', len(m)) + m); print(os.getpid())"
    )
    res = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", sys.executable, "-c", code, g.p("frames/send")],
        capture_output=True, text=True, timeout=20, cwd="/")
    assert res.returncode == 0, res.stderr
    (frame,) = frames_of(g, "r")
    assert bytes(frame.payload) == b"uid=0 pretending"
    assert (frame.uid, frame.gid, frame.pid) == (65534, 65534, int(res.stdout))
