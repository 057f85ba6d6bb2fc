"""Frames built by hand for the client helpers' tests, independently of the
helpers: the golden bytes, a builder that can also build broken frames, and
the broken buffers both the Python and the C parser must refuse.

The layout is the contract's (../shared/interface.md, Version 2, "The framed
view: batches and message metadata"): 40-byte little-endian header, the
sender's name, the payload, zero padding to the next multiple of 8.
"""

from __future__ import annotations

import struct

# Two frames, as one read of G/frames/NAME returns them, field by field.
GOLDEN = bytes.fromhex(
    # frame 0, offset 0: from member "alice", 5-byte payload
    "05000000"          # size 5
    "2d00"              # header_size 45 = 40 + name_size
    "05"                # name_size 5
    "00"                # flags 0
    "0807060504030201"  # sequence 0x0102030405060708
    "15cd853dfe9c9717"  # time 1_700_000_000_123_456_789 ns
    "92100000"          # pid 4242
    "e8030000"          # uid 1000
    "e8030000"          # gid 1000
    "03000000"          # dropped 3
    "616c696365"        # name "alice"
    "68656c6c6f"        # payload "hello"
    "000000000000"      # padding: 45 + 5 = 50, up to 56
    # frame 1, offset 56: written on send, private flag, 3-byte payload
    "03000000"          # size 3
    "2800"              # header_size 40
    "00"                # name_size 0
    "01"                # flags: private
    "0907060504030201"  # sequence 0x0102030405060709
    "15ae7b43fe9c9717"  # time 1_700_000_000_223_456_789 ns
    "00000000"          # pid 0
    "feff0000"          # uid 65534
    "feff0000"          # gid 65534
    "00000000"          # dropped 0
    "616263"            # payload "abc"
    "0000000000"        # padding: 40 + 3 = 43, up to 48
)
assert len(GOLDEN) == 104

GOLDEN_FRAMES = [
    dict(size=5, header_size=45, name=b"alice", flags=0, sequence=0x0102030405060708,
         time_ns=1_700_000_000_123_456_789, pid=4242, uid=1000, gid=1000, dropped=3,
         payload=b"hello", payload_offset=45),
    dict(size=3, header_size=40, name=None, flags=1, sequence=0x0102030405060709,
         time_ns=1_700_000_000_223_456_789, pid=0, uid=65534, gid=65534, dropped=0,
         payload=b"abc", payload_offset=96),
]

# encode_batch([b"hello", b"abc"]), by hand.
GOLDEN_BATCH = bytes.fromhex("05000000" "68656c6c6f" "03000000" "616263")

HEADER = struct.Struct("<IHBBQQIIII")


def frame(payload: bytes = b"", name: bytes = b"", *, sequence=0, time_ns=0, pid=0, uid=0, gid=0,
          dropped=0, flags=0, extra: bytes = b"", header_size=None, size=None, name_size=None,
          padding=None) -> bytes:
    """One frame. `extra` stands for header fields added by a later version
    (between the 40 bytes and the name); header_size, size, name_size and
    padding override the true values, to build broken frames."""
    true_header = 40 + len(extra) + len(name)
    head = HEADER.pack(
        len(payload) if size is None else size,
        true_header if header_size is None else header_size,
        len(name) if name_size is None else name_size,
        flags, sequence, time_ns, pid, uid, gid, dropped,
    )
    body = head + extra + name + payload
    if padding is None:
        padding = b"\0" * (-len(body) % 8)
    return body + padding


def frames_of(specs) -> bytes:
    return b"".join(frame(**spec) for spec in specs)


def records_of(batch: bytes) -> list[bytes]:
    """The messages of a batch, decoded by hand."""
    out, at = [], 0
    while at < len(batch):
        (n,) = struct.unpack_from("<I", batch, at)
        assert n > 0 and at + 4 + n <= len(batch), f"bad record at {at}"
        out.append(batch[at + 4 : at + 4 + n])
        at += 4 + n
    return out


def record(message: bytes) -> bytes:
    return struct.pack("<I", len(message)) + message


_ok = frame(b"hello", b"alice")  # 45 + 5 -> 56 bytes
assert len(_ok) == 56

# (id, buffer, kind, offset of the frame at fault, frames before it)
BAD_BUFFERS = [
    ("short-header", GOLDEN[:39], "truncated", 0, 0),
    ("one-byte", b"\x05", "truncated", 0, 0),
    ("second-header-short", GOLDEN[:56 + 20], "truncated", 56, 1),
    ("payload-cut", GOLDEN[:56 + 42], "truncated", 56, 1),
    ("name-cut", GOLDEN[:43], "truncated", 0, 0),
    ("ends-in-padding", GOLDEN[:101], "truncated", 56, 1),
    ("first-ends-in-padding", GOLDEN[:53], "truncated", 0, 0),
    ("header-size-below-40", frame(b"x", header_size=39), "corrupt", 0, 0),
    ("header-size-zero", frame(b"x", header_size=0), "corrupt", 0, 0),
    ("header-size-below-name", frame(b"x", b"bob", header_size=42), "corrupt", 0, 0),
    ("name-size-past-header", _ok + frame(b"x", name_size=1), "corrupt", 56, 1),
    ("size-past-end", frame(b"abc", size=9), "truncated", 0, 0),
    ("size-huge", frame(b"abc", size=0xFFFFFFFF), "truncated", 0, 0),
    ("header-size-huge", frame(b"abc", header_size=0xFFFF), "truncated", 0, 0),
    ("nonzero-padding", frame(b"abc", padding=b"\0\0\0\0\x01"), "corrupt", 0, 0),
    ("nonzero-padding-second", _ok + frame(b"abc", padding=b"\x80\0\0\0\0"), "corrupt", 56, 1),
    ("trailing-garbage", GOLDEN + b"\0" * 8, "truncated", 104, 2),
]
