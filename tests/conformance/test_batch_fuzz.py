"""Bad input, part (b): the batch parser of G/frames/, fuzzed through the
mount with hypothesis and judged by the reference parser of model.py
(`parse_batch`, from docs/contract.md "Writing a batch").

Batches are arbitrary bytes, valid batches, and valid batches with one or
more mutations (a length set to 0, off by a few, huge, a bit flipped in a
length, bytes cut off the end or added after it, a record one byte over
max_message, a lone length with no payload). Every write on G/frames/send
(or G/frames/w, as member w) must either deliver exactly the records the
reference finds, whole and in order, as consecutive sequence numbers with the
writer's credentials, or fail with the reference's EINVAL or EMSGSIZE and
deliver nothing (the reader's queue stays empty and `sent` does not move).
The daemon must never crash or hang (each write has the test's time limit,
and the daemon must be running at the end).

    python3 -m pytest tests/conformance/test_batch_fuzz.py -s            # CI: a few seconds
    CONFORMANCE_SCALE=long python3 -m pytest tests/conformance/test_batch_fuzz.py -s
"""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from helpers import parse_status
from .model import MAX_BATCH, MAX_MESSAGE, ModelError, decode_frames, parse_batch

LONG = os.environ.get("CONFORMANCE_SCALE") == "long"
EXAMPLES = 20_000 if LONG else 1_500

FIGURES = {"examples": 0, "valid": 0, "records_delivered": 0, "bytes_written": 0, "EINVAL": 0, "EMSGSIZE": 0,
           "empty": 0, "as_member": 0, "largest": 0}


def encode(records) -> bytes:
    return b"".join(len(r).to_bytes(4, "little") + r for r in records)


RECORD = st.one_of(st.binary(min_size=1, max_size=24), st.binary(min_size=1, max_size=300),
                   st.integers(1, 70_000).map(lambda n: bytes([n % 251]) * n))
RECORDS = st.lists(RECORD, min_size=1, max_size=12)


@st.composite
def mutated(draw, max_message: int) -> bytes:
    """A valid batch with 1..3 mutations, each at a record boundary or a
    length field, where a parser is most likely to go wrong."""
    records = draw(RECORDS)
    data = bytearray(encode(records))
    starts = []
    off = 0
    for r in records:
        starts.append(off)
        off += 4 + len(r)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["zero", "off_by", "huge", "bitflip", "cut", "append", "oversize", "lone_length",
                                   "insert"]))
        at = draw(st.sampled_from(starts)) if starts else 0
        if op in ("zero", "off_by", "huge", "bitflip") and at + 4 <= len(data):
            n = int.from_bytes(data[at:at + 4], "little")
            if op == "zero":
                n = 0
            elif op == "off_by":
                n = max(0, n + draw(st.sampled_from([-4, -3, -1, 1, 3, 4, 8])))
            elif op == "huge":
                n = draw(st.sampled_from([0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, MAX_BATCH, MAX_MESSAGE + 1, 1 << 24]))
            else:
                n ^= 1 << draw(st.integers(0, 31))
            data[at:at + 4] = (n & 0xFFFFFFFF).to_bytes(4, "little")
        elif op == "cut" and data:
            del data[len(data) - draw(st.integers(1, min(8, len(data)))):]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=7))
        elif op == "oversize":
            data += (max_message + 1).to_bytes(4, "little") + b"o" * (max_message + 1) if max_message < 4096 else b""
        elif op == "lone_length":
            data += draw(st.integers(1, 1 << 20)).to_bytes(4, "little")
        else:
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = draw(st.binary(min_size=1, max_size=5))
    return bytes(data)


MAX_MESSAGES = st.sampled_from([1, 5, 24, 300, MAX_MESSAGE])


@st.composite
def case(draw):
    max_message = draw(MAX_MESSAGES)
    kind = draw(st.sampled_from(["arbitrary", "valid", "valid", "mutated", "mutated", "mutated"]))
    if kind == "arbitrary":
        data = draw(st.binary(max_size=400))
    elif kind == "valid":
        data = encode(draw(RECORDS))
    else:
        data = draw(mutated(max_message))
    return max_message, data, draw(st.booleans())


@pytest.mark.timeout(3600 if LONG else 240)
def test_every_batch_delivers_exactly_its_records_or_nothing(mount, new_group):
    g = new_group(prefix="batchfuzz")
    g.set(capacity=1_000_000, queue_bytes=1 << 30)
    g.member("r")
    g.member("w")
    out = {False: os.open(g.p("frames/send"), os.O_WRONLY | os.O_NONBLOCK),
           True: os.open(g.p("frames/w"), os.O_WRONLY | os.O_NONBLOCK)}
    inbox = os.open(g.p("frames/r"), os.O_RDONLY | os.O_NONBLOCK)
    state = {"max_message": None, "sequence": 0}
    tid = threading.get_native_id()
    started = time.monotonic()

    def sent() -> int:
        return parse_status(open(g.p("status"), "rb").read().decode()).group["sent"]

    def drain() -> list:
        frames = []
        while True:
            try:
                buf = os.read(inbox, 1 << 20)
            except BlockingIOError:
                return frames
            frames += decode_frames(buf)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case())
    @example((MAX_MESSAGE, encode([b"m" * (MAX_BATCH - 4)]), False))           # one record, the largest batch
    @example((MAX_MESSAGE, encode([b"a" * 1000, b"b" * (MAX_BATCH - 1008)]), True))  # two, the largest batch
    @example((24, encode([b"x" * 24, b"y" * 25]), False))                       # EMSGSIZE in the second record
    @example((24, encode([b"x" * 25]) + b"\0\0\0", False))                      # EINVAL wins over EMSGSIZE
    @example((5, b"\0\0\0\0", True))                                           # a lone zero length
    @example((5, b"", False))                                                  # a zero-length write
    def run(c):
        max_message, data, as_member = c
        FIGURES["examples"] += 1
        if state["max_message"] != max_message:
            g.set(max_message=max_message)
            state["max_message"] = max_message
        before = sent()
        try:
            expected, allowed = parse_batch(data, max_message), None
        except ModelError as e:
            expected, allowed = None, e.allowed
        try:
            got, err = os.write(out[as_member], data), None
        except OSError as e:
            got, err = None, e.errno
        frames = drain()
        what = f"batch of {len(data)} bytes (max_message {max_message}, as member: {as_member}): {data[:64]!r}"
        if allowed is not None:
            assert err in allowed, f"{what}: reference {'/'.join(errno.errorcode[a] for a in allowed)}, got " \
                                   f"{got if err is None else errno.errorcode.get(err, err)}"
            assert not frames, f"{what}: failed with {errno.errorcode[err]} but delivered {len(frames)} frames"
            assert sent() == before, f"{what}: failed but sent went from {before} to {sent()}"
            FIGURES[errno.errorcode[err]] += 1
            return
        assert err is None, f"{what}: reference accepts {len(expected)} records, got {errno.errorcode.get(err, err)}"
        assert got == len(data), f"{what}: wrote {got} of {len(data)} bytes with room for everything"
        assert [f.payload for f in frames] == expected, \
            f"{what}: delivered {[len(f.payload) for f in frames]}, expected records of {[len(r) for r in expected]}"
        for k, f in enumerate(frames):
            assert f.sequence == state["sequence"] + 1 + k, f"{what}: frame {k} has sequence {f.sequence}, " \
                                                            f"expected {state['sequence'] + 1 + k}"
            assert (f.pid, f.uid, f.gid) == (tid, os.getuid(), os.getgid()), f"{what}: credentials {f}"
            assert f.name == (b"w" if as_member else b""), f"{what}: sender {f.name!r}"
            assert f.dropped == 0 and f.flags == 0, f"{what}: {f}"
        state["sequence"] += len(frames)
        assert sent() == before + len(expected)
        FIGURES["empty" if not data else "valid"] += 1
        FIGURES["records_delivered"] += len(frames)
        FIGURES["bytes_written"] += len(data)
        FIGURES["as_member"] += as_member
        FIGURES["largest"] = max(FIGURES["largest"], len(data))

    try:
        state["sequence"] = sent()
        run()
    finally:
        for fd in (*out.values(), inbox):
            os.close(fd)
        print(f"\nbatch fuzz: {FIGURES} in {time.monotonic() - started:.1f} s")
    assert mount.running(), "the daemon died"
