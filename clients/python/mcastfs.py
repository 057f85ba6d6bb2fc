"""Client helpers for the framed view of mcastfs (``G/frames/``).

A write on ``G/frames/send`` or ``G/frames/NAME`` carries a batch of messages;
a read on ``G/frames/NAME`` returns a batch of frames, each with the message's
metadata. This module encodes batches, sends them completely, and parses what
a read returns, with nothing but the standard library. The format is the
contract's section "The framed view: batches and message metadata".

    $ mkdir /mnt/mc/chat && touch /mnt/mc/chat/alice
    $ PYTHONPATH=clients/python python3
    >>> import os, mcastfs
    >>> out = os.open("/mnt/mc/chat/frames/send", os.O_WRONLY)
    >>> mcastfs.send_batch(out, [b"hello", b"world"])
    2
    >>> alice = os.open("/mnt/mc/chat/frames/alice", os.O_RDONLY)
    >>> for f in mcastfs.read_frames(alice):
    ...     print(f.sequence, f.uid, f.sender, bytes(f.payload))
    1 0 None b'hello'
    2 0 None b'world'

Frames hold memoryviews into the buffer of the read that returned them:
nothing is copied until you call ``bytes(frame.payload)``.

For an event loop, ``FramedFile`` opens a file non-blocking and gives
``fileno()`` for ``selectors`` or ``loop.add_reader``:

    >>> m = mcastfs.FramedFile("/mnt/mc/chat/frames/alice")
    >>> loop.add_reader(m.fileno(), lambda: handle(m.read()))
"""

from __future__ import annotations

import bisect
import errno
import os
import struct
from typing import Callable, Iterable, Iterator

__all__ = [
    "FLAG_PRIVATE",
    "FRAME_HEADER_SIZE",
    "MAX_BATCH",
    "MAX_MESSAGE",
    "Frame",
    "FrameError",
    "FramedFile",
    "encode_batch",
    "parse_frames",
    "read_frames",
    "send_batch",
]

# The fixed part of a frame's header in this version of the contract; a
# frame's own header_size may be larger (fields added later) and wins.
FRAME_HEADER_SIZE = 40
# flags bit 0: sent to this member alone, through G/peers/NAME.
FLAG_PRIVATE = 0x01
# The contract's upper bound of a group's max_message.
MAX_MESSAGE = 1_044_480
# The largest write(2) that always reaches the daemon as one request; a
# batch must fit in one, so a batch's records (4 bytes + payload each) are
# at most this many bytes together.
MAX_BATCH = 1_044_480

_HEADER = struct.Struct("<IHBBQQIIII")
assert _HEADER.size == FRAME_HEADER_SIZE
_LENGTH = struct.Struct("<I")
_WORD = struct.Struct("<Q")


class FrameError(ValueError):
    """A read buffer that does not hold whole, well-formed frames.

    ``offset`` is where the offending frame starts in the buffer. The message
    begins with "truncated frame" when the buffer ends inside a frame, and
    with "corrupt frame" when a frame's header or padding is impossible.
    """

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


class Frame:
    """One received message and its metadata.

    ``payload`` and ``name`` are memoryviews of the read buffer; ``name`` is
    None when the message was written on ``send`` (or sent privately through
    ``peers/``). ``time_ns`` is CLOCK_REALTIME in ns when the group accepted
    the message; ``pid``, ``uid`` and ``gid`` come from the kernel;
    ``dropped`` counts what this member missed (drop_when_full) just before
    this message. ``flags`` is kept whole so that bits added later are seen.
    """

    __slots__ = ("payload", "name", "sequence", "time_ns", "pid", "uid", "gid", "dropped", "flags")

    def __init__(self, payload, name, sequence, time_ns, pid, uid, gid, dropped, flags):
        self.payload = payload
        self.name = name
        self.sequence = sequence
        self.time_ns = time_ns
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.dropped = dropped
        self.flags = flags

    @property
    def private(self) -> bool:
        return bool(self.flags & FLAG_PRIVATE)

    @property
    def sender(self) -> str | None:
        """The sending member's name as text (names are UTF-8), or None."""
        return None if self.name is None else str(self.name, "utf-8")

    def __repr__(self) -> str:
        return (
            f"Frame(sequence={self.sequence}, time_ns={self.time_ns}, pid={self.pid}, "
            f"uid={self.uid}, gid={self.gid}, dropped={self.dropped}, flags={self.flags:#x}, "
            f"sender={self.sender!r}, payload={bytes(self.payload[:32])!r}"
            f"{'...' if len(self.payload) > 32 else ''} ({len(self.payload)} bytes))"
        )


def _message_size(index: int, message) -> int:
    if type(message) is bytes:
        return len(message)
    if isinstance(message, str):
        raise TypeError(f"message {index} is a str; messages are bytes (encode it first)")
    try:
        return memoryview(message).nbytes
    except TypeError:
        raise TypeError(
            f"message {index} is a {type(message).__name__}; messages are bytes-like"
        ) from None


def encode_batch(messages: Iterable, max_message: int = MAX_MESSAGE) -> bytes:
    """The batch of ``messages`` (bytes-like objects) as one write's data:
    for each, its length as a little-endian u32, then its bytes.

    Raises ValueError for an empty message (the daemon would refuse the whole
    batch with EINVAL) or one longer than ``max_message`` (EMSGSIZE; pass the
    group's own max_message to check against it), and TypeError for a
    message that is not bytes-like. An empty list encodes to b"".
    """
    return _encode(messages, max_message, None)


def _encode(messages, max_message: int, ends: list | None) -> bytes:
    # One pass for both encode_batch and send_batch, which also needs where
    # each record ends (`ends`).
    parts = []
    pack = _LENGTH.pack
    end = 0
    for index, message in enumerate(messages):
        size = _message_size(index, message)
        if size == 0:
            raise ValueError(f"message {index} is empty; the framed view has no empty messages")
        if size > max_message:
            raise ValueError(f"message {index} is {size} bytes, more than max_message ({max_message})")
        parts.append(pack(size))
        parts.append(message)
        if ends is not None:
            end += 4 + size
            ends.append(end)
    return b"".join(parts)


def send_batch(
    fd: int,
    messages: Iterable,
    *,
    max_message: int = MAX_MESSAGE,
    max_batch: int = MAX_BATCH,
    write: Callable[[int, bytes], int] = os.write,
) -> int:
    """Sends every message of ``messages`` on ``fd`` (a ``G/frames/send`` or
    ``G/frames/NAME`` file) and returns how many it sent (all of them).

    The messages are written as batches of at most ``max_batch`` bytes, in
    order. A batch write may be short (the daemon delivered a prefix of its
    records and returns their bytes): the rest is written again, as many
    times as it takes. Only the messages of one write(2) are promised to enter
    every queue consecutively; others' messages may come between two writes.

    - EAGAIN (``fd`` is non-blocking and the next message does not fit now):
      raises BlockingIOError with ``messages_delivered`` (messages sent before
      it) and ``characters_written`` (their bytes in the encoded batch); send
      the rest (``messages[messages_delivered:]`` of a list) when ``fd`` is
      writable.
    - EINTR: retried, whatever was delivered (an interrupted batch write
      delivered nothing, so retrying is safe); os.write already does this
      itself unless a signal handler raises, and then that exception stops
      send_batch with no count.
    - Any other OSError of write (EMSGSIZE, EINVAL, EPERM, ...) propagates
      with ``messages_delivered`` set the same way.
    - A write that returns 0, or a count that does not end on a record
      boundary, breaks the framed view's contract: OSError(EIO), with
      ``messages_delivered`` counting the records that count covers whole.
    - ValueError, before anything is written, for an empty message, one
      longer than ``max_message``, or one whose record does not fit in
      ``max_batch`` bytes; TypeError for a message that is not bytes-like.

    ``write`` is the function that writes (os.write); it is there for tests
    and for wrappers.
    """
    # ends[i] is the offset just past record i: the only counts a framed
    # write may return, and where a batch may be cut.
    ends: list[int] = []
    data = memoryview(_encode(messages, max_message, ends))
    previous = 0
    for index, end in enumerate(ends):
        if end - previous > max_batch:
            raise ValueError(
                f"message {index} needs {end - previous} bytes as a record, more than max_batch ({max_batch})"
            )
        previous = end

    done = 0  # bytes delivered, always a record boundary
    sent = 0  # messages delivered: ends[sent - 1] == done
    while sent < len(ends):
        # The longest run of whole records from `done` that fits max_batch.
        last = bisect.bisect_right(ends, done + max_batch) - 1
        try:
            count = write(fd, data[done : ends[last]])
        except InterruptedError:
            continue
        except OSError as error:
            error.messages_delivered = sent
            if isinstance(error, BlockingIOError):
                error.characters_written = done
            raise
        if count <= 0 or count > ends[last] - done:
            raise _broken(f"write returned {count} for a batch of {ends[last] - done} bytes", sent)
        done += count
        sent = bisect.bisect_right(ends, done)
        if ends[sent - 1] != done:
            # sent counts the records the count covers whole.
            raise _broken(f"write returned {count}, which ends inside message {sent}", sent)
    return sent


def _broken(what: str, sent: int) -> OSError:
    error = OSError(errno.EIO, f"{what}; a framed write returns the bytes of whole records")
    error.messages_delivered = sent
    return error


def parse_frames(buffer) -> Iterator[Frame]:
    """The frames of ``buffer`` (what one read of ``G/frames/NAME`` returned),
    oldest first, without copying: each frame's payload and name are
    memoryview slices of ``buffer``, so keep the buffer unchanged while they
    are in use.

    Frames start at 8-byte offsets from the buffer's start; a frame's
    ``header_size`` says where its payload begins, so headers longer than 40
    bytes (fields added later) are skipped over, and the name is the
    ``name_size`` bytes just before the payload. The last frame's padding may
    be there or not. Raises FrameError, when the iteration reaches it, for a
    buffer that ends inside a frame or its padding, a header_size below 40 +
    name_size, or padding that is not zero; the frames before it have been
    yielded.
    """
    view = memoryview(buffer)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    length = len(view)
    unpack = _HEADER.unpack_from
    unpack_word = _WORD.unpack_from
    offset = 0
    while offset < length:
        if length - offset < FRAME_HEADER_SIZE:
            raise FrameError(
                f"truncated frame at offset {offset}: {length - offset} bytes left, "
                f"a frame header is {FRAME_HEADER_SIZE}",
                offset,
            )
        size, header_size, name_size, flags, sequence, time_ns, pid, uid, gid, dropped = unpack(view, offset)
        if header_size < FRAME_HEADER_SIZE + name_size:
            raise FrameError(
                f"corrupt frame at offset {offset}: header_size {header_size} is less than "
                f"{FRAME_HEADER_SIZE} + name_size {name_size}",
                offset,
            )
        start = offset + header_size
        end = start + size
        if end > length:
            raise FrameError(
                f"truncated frame at offset {offset}: header {header_size} + payload {size} bytes "
                f"run past the end of the buffer ({length - offset} bytes left)",
                offset,
            )
        following = (end + 7) & ~7
        if following != end:
            if following > length:
                if end != length:
                    raise FrameError(
                        f"truncated frame at offset {offset}: the buffer ends inside its padding", offset
                    )
                following = length
            # The 8 bytes before `following` are all inside the frame (40 at
            # least): one load checks the padding, the top bytes of it.
            elif unpack_word(view, following - 8)[0] >> (8 * (8 - following + end)):
                raise FrameError(f"corrupt frame at offset {offset}: its padding is not zero", offset)
        yield Frame(
            view[start:end],
            view[start - name_size : start] if name_size else None,
            sequence,
            time_ns,
            pid,
            uid,
            gid,
            dropped,
            flags,
        )
        offset = following


def read_frames(fd: int, bufsize: int = 1 << 20) -> list[Frame]:
    """One read(2) of up to ``bufsize`` bytes on ``fd`` and its frames; an
    empty list at end of stream (the member left and its queue is empty).

    The default, 1 MiB, always holds the largest frame; with a smaller
    buffer a frame that does not fit fails the read with EMSGSIZE (OSError)
    and stays queued. Each call reads into a new buffer, so frames from
    earlier calls stay valid.
    """
    return list(parse_frames(os.read(fd, bufsize)))


class FramedFile:
    """A framed-view file opened non-blocking, for selectors and asyncio.

    ``FramedFile(path, "r")`` reads a member (``G/frames/NAME``), ``"w"``
    sends (``G/frames/send`` or a member), ``"rw"`` both. Register
    ``fileno()`` for readability (or writability) and call ``read()`` or
    ``send()`` when it is ready; neither ever blocks.
    """

    _MODES = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}

    def __init__(self, path, mode: str = "r", bufsize: int = 1 << 20):
        if mode not in self._MODES:
            raise ValueError(f"mode is 'r', 'w' or 'rw', not {mode!r}")
        self.bufsize = bufsize
        # True once a read has returned end of stream: the member left and
        # everything it had queued has been read.
        self.at_eof = False
        self._fd = os.open(path, self._MODES[mode] | os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._fd

    def read(self) -> list[Frame]:
        """The frames one read returns; [] when nothing is queued (EAGAIN) or
        at end of stream (then ``at_eof`` is True)."""
        try:
            frames = read_frames(self._fd, self.bufsize)
        except BlockingIOError:
            return []
        if not frames:
            self.at_eof = True
        return frames

    def send(self, messages) -> int:
        """Sends what fits now, in order, and returns how many messages that
        was (0 when not even the first fits); send the rest when writable."""
        try:
            return send_batch(self._fd, messages)
        except BlockingIOError as error:
            return error.messages_delivered

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FramedFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
