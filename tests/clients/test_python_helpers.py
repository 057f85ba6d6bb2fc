"""clients/python/mcastfs.py against the framed view's format, without a
mount: golden bytes, padding, longer headers, broken buffers, send_batch's
short-write loop over a real pipe, FramedFile over a FIFO, and properties
of encode/parse with hypothesis."""

from __future__ import annotations

import errno
import os
import selectors
import struct
from array import array

import pytest
from hypothesis import given, settings, strategies as st

import mcastfs
from framebuilder import (BAD_BUFFERS, GOLDEN, GOLDEN_BATCH, GOLDEN_FRAMES, frame, frames_of,
                          record, records_of)


def fields(f: mcastfs.Frame) -> dict:
    return dict(
        size=len(f.payload), name=None if f.name is None else bytes(f.name), flags=f.flags,
        sequence=f.sequence, time_ns=f.time_ns, pid=f.pid, uid=f.uid, gid=f.gid,
        dropped=f.dropped, payload=bytes(f.payload),
    )


def expected(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k not in ("header_size", "payload_offset")}


# -- parse_frames: the golden frames

def test_golden_frames_parse_field_by_field():
    frames = list(mcastfs.parse_frames(GOLDEN))
    assert [fields(f) for f in frames] == [expected(s) for s in GOLDEN_FRAMES]
    alice, anonymous = frames
    assert alice.sender == "alice" and not alice.private
    assert anonymous.sender is None and anonymous.private


def test_payload_and_name_are_views_of_the_read_buffer():
    buffer = bytearray(GOLDEN)
    alice, anonymous = mcastfs.parse_frames(buffer)
    assert isinstance(alice.payload, memoryview) and isinstance(alice.name, memoryview)
    assert alice.payload.obj is buffer and alice.name.obj is buffer
    # Changing the buffer shows through: nothing was copied.
    buffer[45:50] = b"HELLO"
    buffer[40] = ord("A")
    assert bytes(alice.payload) == b"HELLO" and alice.sender == "Alice"
    assert bytes(anonymous.payload) == b"abc"


def test_last_frame_without_its_padding_parses_the_same():
    assert [fields(f) for f in mcastfs.parse_frames(GOLDEN[:99])] == [expected(s) for s in GOLDEN_FRAMES]


@pytest.mark.parametrize("size", range(0, 17))
def test_every_padding_length_finds_the_next_frame(size):
    payload = bytes(range(1, size + 1))
    buffer = frame(payload, b"n") + frame(b"next", sequence=7)
    first = 40 + 1 + size
    assert len(buffer) == (first + 7) // 8 * 8 + 48
    a, b = mcastfs.parse_frames(buffer)
    assert bytes(a.payload) == payload and a.sender == "n"
    assert bytes(b.payload) == b"next" and b.sequence == 7


def test_longer_header_is_skipped_and_the_name_sits_before_the_payload():
    future = bytes(range(0xA0, 0xB8))  # 24 bytes of fields a later version adds
    buffer = frame(b"payload", b"bob", extra=future, sequence=1) + frame(b"z", extra=future[:3], sequence=2)
    a, b = mcastfs.parse_frames(buffer)
    assert (a.sequence, a.sender, bytes(a.payload)) == (1, "bob", b"payload")
    assert (b.sequence, b.name, bytes(b.payload)) == (2, None, b"z")


def test_longest_name_and_unknown_flag_bits():
    name = b"m" * 255
    (f,) = mcastfs.parse_frames(frame(b"p", name, flags=0xFF))
    assert bytes(f.name) == name and f.flags == 0xFF and f.private


def test_empty_buffer_has_no_frames():
    assert list(mcastfs.parse_frames(b"")) == []


def test_any_bytes_like_buffer():
    words = array("I")
    words.frombytes(GOLDEN)
    for buffer in (GOLDEN, bytearray(GOLDEN), memoryview(GOLDEN), words, memoryview(words)):
        assert [f.sequence for f in mcastfs.parse_frames(buffer)] == [s["sequence"] for s in GOLDEN_FRAMES]


def test_repr_shows_the_metadata():
    alice = next(mcastfs.parse_frames(GOLDEN))
    assert "sequence=72623859790382856" in repr(alice) and "'alice'" in repr(alice)


# -- parse_frames: broken buffers

@pytest.mark.parametrize("buffer,kind,offset,before", [c[1:] for c in BAD_BUFFERS], ids=[c[0] for c in BAD_BUFFERS])
def test_broken_buffer_is_refused_at_the_bad_frame(buffer, kind, offset, before):
    yielded = []
    with pytest.raises(mcastfs.FrameError) as caught:
        for f in mcastfs.parse_frames(buffer):
            yielded.append(f)
    assert len(yielded) == before
    assert caught.value.offset == offset
    assert str(caught.value).startswith(f"{kind} frame at offset {offset}")
    assert isinstance(caught.value, ValueError)


def test_frames_before_the_bad_one_are_yielded():
    frames = mcastfs.parse_frames(GOLDEN[:60])
    assert next(frames).sender == "alice"
    with pytest.raises(mcastfs.FrameError, match="truncated frame at offset 56: 4 bytes left"):
        next(frames)


# -- encode_batch

def test_encode_golden_batch():
    assert mcastfs.encode_batch([b"hello", b"abc"]) == GOLDEN_BATCH


def test_encode_accepts_bytes_like_and_generators():
    halfwords = array("H", [0x0201, 0x0403])
    batch = mcastfs.encode_batch(m for m in (bytearray(b"ab"), memoryview(b"cde"), halfwords))
    assert records_of(batch) == [b"ab", b"cde", b"\x01\x02\x03\x04"]


def test_encode_empty_list():
    assert mcastfs.encode_batch([]) == b""


def test_encode_refuses_an_empty_message():
    with pytest.raises(ValueError, match="message 1 is empty"):
        mcastfs.encode_batch([b"a", b"", b"c"])


def test_encode_refuses_a_message_over_max_message():
    mcastfs.encode_batch([b"x" * mcastfs.MAX_MESSAGE])
    with pytest.raises(ValueError, match=r"message 0 is 1044481 bytes, more than max_message \(1044480\)"):
        mcastfs.encode_batch([b"x" * (mcastfs.MAX_MESSAGE + 1)])
    with pytest.raises(ValueError, match="message 2 is 11 bytes, more than max_message"):
        mcastfs.encode_batch([b"a", b"b" * 10, b"c" * 11], max_message=10)


def test_encode_refuses_text():
    with pytest.raises(TypeError, match="message 0 is a str"):
        mcastfs.encode_batch(["hello"])
    with pytest.raises(TypeError, match="message 1 is a int"):
        mcastfs.encode_batch([b"a", 5])


# -- send_batch

@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


class ScriptedWrite:
    """A framed file's write over a real pipe: each call follows the next
    step of the script ("r2": deliver the first 2 records offered and return
    their bytes; "b3": return 3; an OSError: raise it; "all"), and
    delivers what it returns into the pipe. After the script, "all"."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.calls: list[bytes] = []

    def __call__(self, fd, data):
        data = bytes(data)
        self.calls.append(data)
        step = self.steps.pop(0) if self.steps else "all"
        if isinstance(step, OSError):
            raise step
        if step == "all":
            count = len(data)
        elif step[0] == "r":
            count = sum(len(r) + 4 for r in records_of(data)[: int(step[1:])])
        else:
            count = int(step[1:])
        os.write(fd, data[:count])
        return count


MESSAGES = [b"one", b"two!", b"three", b"four4"]
BATCH = b"".join(record(m) for m in MESSAGES)


def test_send_batch_on_a_real_pipe(pipe):
    r, w = pipe
    messages = [bytes([i]) * (i + 1) for i in range(200)]
    assert mcastfs.send_batch(w, messages) == 200
    assert records_of(drain(r)) == messages


def test_short_writes_are_resent_until_all_is_delivered(pipe):
    r, w = pipe
    write = ScriptedWrite("r1", "r2")
    assert mcastfs.send_batch(w, MESSAGES, write=write) == 4
    assert drain(r) == BATCH
    # Each write starts at the first record not yet delivered.
    assert write.calls == [BATCH, BATCH[7:], BATCH[7 + 8 + 9 :]]


def test_eagain_after_a_prefix_says_how_many_were_delivered(pipe):
    r, w = pipe
    write = ScriptedWrite("r2", BlockingIOError(errno.EAGAIN, "full"))
    with pytest.raises(BlockingIOError) as caught:
        mcastfs.send_batch(w, MESSAGES, write=write)
    assert caught.value.messages_delivered == 2
    assert caught.value.characters_written == 15
    assert drain(r) == BATCH[:15]
    # The rest goes out when the file is writable again.
    assert mcastfs.send_batch(w, MESSAGES[caught.value.messages_delivered :]) == 2
    assert records_of(drain(r)) == MESSAGES[2:]


def test_eagain_before_anything(pipe):
    r, w = pipe
    with pytest.raises(BlockingIOError) as caught:
        mcastfs.send_batch(w, MESSAGES, write=ScriptedWrite(BlockingIOError(errno.EAGAIN, "full")))
    assert (caught.value.messages_delivered, caught.value.characters_written) == (0, 0)
    assert drain(r) == b""


def test_real_eagain_from_a_full_nonblocking_pipe(pipe):
    r, w = pipe
    os.set_blocking(w, False)
    while True:
        try:
            os.write(w, b"\0" * 4096)
        except BlockingIOError:
            break
    with pytest.raises(BlockingIOError) as caught:
        mcastfs.send_batch(w, MESSAGES)
    assert caught.value.messages_delivered == 0


@pytest.mark.parametrize("steps", [("r1", InterruptedError), (InterruptedError,), ("r3", InterruptedError, InterruptedError)])
def test_eintr_is_retried(pipe, steps):
    r, w = pipe
    steps = [InterruptedError(errno.EINTR, "signal") if s is InterruptedError else s for s in steps]
    write = ScriptedWrite(*steps)
    assert mcastfs.send_batch(w, MESSAGES, write=write) == 4
    assert drain(r) == BATCH
    assert len(write.calls) == len(steps) + 1


def test_other_errors_carry_the_count(pipe):
    r, w = pipe
    with pytest.raises(OSError) as caught:
        mcastfs.send_batch(w, MESSAGES, write=ScriptedWrite("r1", OSError(errno.EMSGSIZE, "too long")))
    assert caught.value.errno == errno.EMSGSIZE and caught.value.messages_delivered == 1


@pytest.mark.parametrize("steps,delivered", [(("b3",), 0), (("r1", "b5"), 1), (("r1", "b10"), 2), (("b0",), 0), (("b40",), 0)])
def test_counts_off_record_boundaries_break_the_contract(pipe, steps, delivered):
    r, w = pipe
    with pytest.raises(OSError) as caught:
        mcastfs.send_batch(w, MESSAGES, write=ScriptedWrite(*steps))
    assert caught.value.errno == errno.EIO and caught.value.messages_delivered == delivered
    assert "whole records" in str(caught.value)


def test_batches_are_cut_at_max_batch(pipe):
    r, w = pipe
    messages = [bytes([65 + i]) * 10 for i in range(5)]  # 14-byte records
    write = ScriptedWrite()
    assert mcastfs.send_batch(w, messages, max_batch=28, write=write) == 5
    assert [len(c) for c in write.calls] == [28, 28, 14]
    assert records_of(drain(r)) == messages
    write = ScriptedWrite()
    assert mcastfs.send_batch(w, messages, max_batch=14, write=write) == 5
    assert [len(c) for c in write.calls] == [14] * 5


def test_a_record_larger_than_max_batch_is_refused_before_writing(pipe):
    r, w = pipe
    write = ScriptedWrite()
    with pytest.raises(ValueError, match=r"message 1 needs 15 bytes as a record, more than max_batch \(14\)"):
        mcastfs.send_batch(w, [b"a" * 10, b"b" * 11], max_batch=14, write=write)
    assert write.calls == []
    # With the default max_batch, the largest message of a framed write is
    # 4 bytes short of max_message.
    with pytest.raises(ValueError, match="more than max_batch"):
        mcastfs.send_batch(w, [b"x" * mcastfs.MAX_MESSAGE], write=write)


def test_send_nothing(pipe):
    r, w = pipe
    write = ScriptedWrite()
    assert mcastfs.send_batch(w, [], write=write) == 0
    assert write.calls == []


def test_empty_message_is_refused_before_writing(pipe):
    r, w = pipe
    write = ScriptedWrite()
    with pytest.raises(ValueError, match="message 2 is empty"):
        mcastfs.send_batch(w, iter([b"a", b"b", b""]), write=write)
    assert write.calls == []


# -- read_frames and FramedFile

def test_read_frames_one_read_then_end_of_stream(pipe):
    r, w = pipe
    os.write(w, GOLDEN)
    assert [f.sequence for f in mcastfs.read_frames(r)] == [s["sequence"] for s in GOLDEN_FRAMES]
    os.close(w)
    assert mcastfs.read_frames(r) == []


def test_read_frames_refuses_a_broken_read(pipe):
    r, w = pipe
    os.write(w, GOLDEN[:70])
    with pytest.raises(mcastfs.FrameError):
        mcastfs.read_frames(r)


def test_framed_file_with_a_selector(tmp_path):
    fifo = tmp_path / "member"
    os.mkfifo(fifo)
    with mcastfs.FramedFile(fifo, "r") as member:
        # A FIFO without a writer reads as end of file: connect one first.
        writer = os.open(fifo, os.O_WRONLY)
        assert member.read() == [] and not member.at_eof  # EAGAIN: a writer, nothing written
        with selectors.DefaultSelector() as selector:
            selector.register(member, selectors.EVENT_READ)
            assert selector.select(timeout=0) == []
            os.write(writer, GOLDEN)
            assert [key.fileobj for key, _ in selector.select(timeout=5)] == [member]
        assert [f.sender for f in member.read()] == ["alice", None]
        os.close(writer)
        assert member.read() == [] and member.at_eof
    assert member.fileno() == -1


def test_framed_file_send_returns_what_fit(tmp_path):
    fifo = tmp_path / "send"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with mcastfs.FramedFile(fifo, "w") as out:
            assert out.send([b"a", b"bc"]) == 2
            assert records_of(os.read(reader, 100)) == [b"a", b"bc"]
            # Fill the pipe with batches under PIPE_BUF (a pipe writes those
            # whole or not at all) until one does not fit.
            sent = 0
            while (n := out.send([b"x" * 1000])) == 1:
                sent += 1
            assert n == 0 and sent > 10
            drain(reader)
            assert out.send([b"y" * 1000]) == 1
    finally:
        os.close(reader)


def test_framed_file_mode():
    with pytest.raises(ValueError, match="mode is 'r', 'w' or 'rw'"):
        mcastfs.FramedFile("/dev/null", "a")


def test_import_as_the_docs_say():
    import subprocess
    import sys
    from pathlib import Path

    code = 'import sys; sys.path.insert(0, "clients/python"); import mcastfs; print(mcastfs.MAX_BATCH)'
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, check=True)
    assert out.stdout == "1044480\n"


# -- properties

messages = st.lists(st.binary(min_size=1, max_size=300), max_size=40)

frame_specs = st.lists(
    st.fixed_dictionaries(dict(
        payload=st.binary(max_size=100),
        name=st.binary(max_size=255),
        sequence=st.integers(0, 2**64 - 1),
        time_ns=st.integers(0, 2**64 - 1),
        pid=st.integers(0, 2**32 - 1),
        uid=st.integers(0, 2**32 - 1),
        gid=st.integers(0, 2**32 - 1),
        dropped=st.integers(0, 2**32 - 1),
        flags=st.integers(0, 255),
        extra=st.binary(max_size=30),
    )),
    max_size=12,
)


@given(messages)
def test_property_encode_round_trips(batch_messages):
    batch = mcastfs.encode_batch(batch_messages)
    assert len(batch) == sum(4 + len(m) for m in batch_messages)
    assert records_of(batch) == batch_messages


@given(messages, st.lists(st.integers(1, 5), max_size=20))
def test_property_send_batch_delivers_each_message_once_in_order(batch_messages, prefixes):
    r, w = os.pipe()
    try:
        assert mcastfs.send_batch(w, batch_messages, write=ScriptedWrite(*[f"r{n}" for n in prefixes])) == len(batch_messages)
        assert records_of(drain(r)) == batch_messages
    finally:
        os.close(r)
        os.close(w)


@given(frame_specs, st.booleans())
def test_property_frames_round_trip(specs, last_padding):
    buffer = frames_of(specs)
    if not last_padding and specs:
        last = specs[-1]
        buffer = buffer[: len(buffer) - (-(40 + len(last["extra"]) + len(last["name"]) + len(last["payload"])) % 8)]
    parsed = [fields(f) for f in mcastfs.parse_frames(buffer)]
    assert parsed == [
        dict(size=len(s["payload"]), name=s["name"] or None, flags=s["flags"], sequence=s["sequence"],
             time_ns=s["time_ns"], pid=s["pid"], uid=s["uid"], gid=s["gid"], dropped=s["dropped"],
             payload=s["payload"])
        for s in specs
    ]


@given(frame_specs.filter(bool), st.data())
def test_property_a_cut_inside_a_frame_is_refused(specs, data):
    buffer = frames_of(specs)
    starts, ends, at = [], set(), 0
    for s in specs:
        unpadded = 40 + len(s["extra"]) + len(s["name"]) + len(s["payload"])
        starts.append(at)
        ends.add(at + unpadded)
        at += (unpadded + 7) // 8 * 8
    ends.add(at)
    cut = data.draw(st.integers(1, len(buffer)).filter(lambda n: n not in ends and n not in starts))
    with pytest.raises(mcastfs.FrameError, match="^truncated frame"):
        list(mcastfs.parse_frames(buffer[:cut]))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_property_any_bytes_parse_or_raise_frame_error(buffer):
    try:
        frames = list(mcastfs.parse_frames(buffer))
    except mcastfs.FrameError as error:
        assert 0 <= error.offset < len(buffer) and error.offset % 8 == 0
    else:
        assert len(buffer) == 0 or frames
