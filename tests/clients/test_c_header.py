"""clients/c/mcastfs.h, compiled with `cc -Wall -Wextra -Werror -std=c99`
and driven through tests/clients/c/framestool.c: the same golden bytes and
broken buffers as the Python module, the batch builder, mcastfs_send_batch
over a real pipe and over a scripted write that returns short counts, and a
differential test against the Python parser on generated buffers."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings, strategies as st

import mcastfs
from cbuild import compile_c
from framebuilder import BAD_BUFFERS, GOLDEN, GOLDEN_BATCH, GOLDEN_FRAMES, frames_of, record, records_of


def parse(tool: str, buffer: bytes) -> list[str]:
    out = subprocess.run([tool, "parse"], input=buffer, capture_output=True, check=True)
    return out.stdout.decode().splitlines()


def line(size, header_size, name, flags, sequence, time_ns, pid, uid, gid, dropped, payload, payload_offset=None):
    text = (
        f"frame size={size} header_size={header_size} name_size={len(name or b'')} flags={flags} "
        f"sequence={sequence} time={time_ns} pid={pid} uid={uid} gid={gid} dropped={dropped} "
        f"name={'none' if name is None else name.hex()} payload={payload.hex()}"
    )
    return text if payload_offset is None else f"{text} payload_offset={payload_offset}"


def test_header_compiles_clean_under_stricter_warnings(tmp_path):
    source = tmp_path / "strict.c"
    source.write_text('#include "mcastfs.h"\nint main(void) { return 0; }\n')
    compile_c(source, tmp_path / "strict.o", "-c", "-Wconversion", "-Wsign-conversion", "-Wshadow",
              "-Wcast-qual", "-Wcast-align", "-Wstrict-prototypes", "-Wmissing-prototypes")


def test_golden_frames(framestool):
    assert parse(framestool, GOLDEN) == [line(**f) for f in GOLDEN_FRAMES] + ["end"]


def test_golden_frames_without_the_last_padding(framestool):
    assert parse(framestool, GOLDEN[:99]) == [line(**f) for f in GOLDEN_FRAMES] + ["end"]


def test_empty_buffer(framestool):
    assert parse(framestool, b"") == ["end"]


@pytest.mark.parametrize("buffer,kind,offset,before", [c[1:] for c in BAD_BUFFERS], ids=[c[0] for c in BAD_BUFFERS])
def test_broken_buffer_is_refused_at_the_bad_frame(framestool, buffer, kind, offset, before):
    lines = parse(framestool, buffer)
    assert len(lines) == before + 1
    assert lines[-1] == f"error {kind} offset={offset}"


def test_longer_header(framestool):
    from framebuilder import frame

    buffer = frame(b"payload", b"bob", extra=b"\xee" * 17, sequence=5) + frame(b"z", sequence=6)
    assert parse(framestool, buffer) == [
        line(7, 40 + 17 + 3, b"bob", 0, 5, 0, 0, 0, 0, 0, b"payload", 60),
        line(1, 40, None, 0, 6, 0, 0, 0, 0, 0, b"z", 72 + 40),
        "end",
    ]


# -- the batch builder

def build(tool: str, cap: int, *messages: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool, "build", str(cap), *messages], capture_output=True)


def test_build_golden_batch(framestool):
    out = build(framestool, 64, b"hello".hex(), b"abc".hex())
    assert (out.returncode, out.stdout) == (0, GOLDEN_BATCH)
    assert out.stdout == mcastfs.encode_batch([b"hello", b"abc"])


def test_build_exactly_full(framestool):
    out = build(framestool, len(GOLDEN_BATCH), b"hello".hex(), b"abc".hex())
    assert (out.returncode, out.stdout) == (0, GOLDEN_BATCH)


@pytest.mark.parametrize("cap,messages,refused", [
    (64, ["61", "", "62"], "add 1 EINVAL"),
    (len(GOLDEN_BATCH) - 1, [b"hello".hex(), b"abc".hex()], "add 1 ENOBUFS"),
    (3, ["61"], "add 0 ENOBUFS"),
    (4 << 20, ["@1044480", "@1044481"], "add 1 EMSGSIZE"),
])
def test_build_refuses_and_leaves_the_batch_unchanged(framestool, cap, messages, refused):
    out = build(framestool, cap, *messages)
    # Exit 2: refused with the batch as it was (5 would mean it changed).
    assert (out.returncode, out.stderr.decode().strip()) == (2, refused)


def test_send_batch_over_a_real_pipe(framestool):
    # 300 KiB: more than a pipe holds, so the writes wait for the reader.
    messages = [bytes([i % 256]) * (1000 + i) for i in range(300)]
    out = build(framestool, 4 << 20, *(m.hex() for m in messages))
    assert out.returncode == 0
    assert records_of(out.stdout) == messages


# -- mcastfs_send_batch's loop

MESSAGES = [b"one", b"two!", b"three", b"four4"]
BATCH = b"".join(record(m) for m in MESSAGES)  # records of 7, 8, 9 and 9 bytes


@pytest.mark.parametrize("script,result,err,sent_bytes,sent_messages,writes", [
    ("all", 0, "0", 33, 4, 1),
    ("r1,r2", 0, "0", 33, 4, 3),
    ("r1,r1,r1,r1", 0, "0", 33, 4, 4),
    ("r2,EAGAIN", -1, "EAGAIN", 15, 2, 2),
    ("EAGAIN", -1, "EAGAIN", 0, 0, 1),
    ("EINTR", -1, "EINTR", 0, 0, 1),
    ("r1,EINTR,EINTR", 0, "0", 33, 4, 4),
    ("r1,EMSGSIZE", -1, "EMSGSIZE", 7, 1, 2),
    ("b3", -1, "EIO", 0, 0, 1),
    ("r1,b10", -1, "EIO", 15, 2, 2),
    ("0", -1, "EIO", 0, 0, 1),
    ("r3,b10", -1, "EIO", 24, 3, 2),
])
def test_send_batch_loop(framestool, script, result, err, sent_bytes, sent_messages, writes):
    out = subprocess.run([framestool, "send", script, *(m.hex() for m in MESSAGES)], capture_output=True)
    assert out.returncode == 0
    assert out.stderr.decode().strip() == (
        f"result={result} errno={err} sent_bytes={sent_bytes} sent_messages={sent_messages} writes={writes}"
    )
    if err != "EIO":
        # What the scripted write accepted is the batch's first records.
        assert out.stdout == BATCH[:sent_bytes]


def test_send_batch_refuses_a_batch_that_does_not_parse(framestool):
    out = subprocess.run([framestool, "send", "all", "-"], capture_output=True)
    assert out.stderr.decode().strip() == "result=-1 errno=EINVAL sent_bytes=0 sent_messages=0 writes=0"


# -- the C and Python parsers agree

def python_lines(buffer: bytes) -> list[str]:
    lines = []
    try:
        for f in mcastfs.parse_frames(buffer):
            name = None if f.name is None else bytes(f.name)
            lines.append(line(len(f.payload), None, name, f.flags, f.sequence, f.time_ns, f.pid, f.uid,
                              f.gid, f.dropped, bytes(f.payload)))
    except mcastfs.FrameError as error:
        lines.append(f"error {str(error).split()[0]} offset={error.offset}")
    else:
        lines.append("end")
    return lines


def without_layout(c_line: str) -> str:
    """A C line without header_size and payload_offset, which the Python
    Frame does not show."""
    words = [w for w in c_line.split() if not w.startswith("payload_offset=")]
    return " ".join("header_size=None" if w.startswith("header_size=") else w for w in words)


frame_specs = st.lists(
    st.fixed_dictionaries(dict(
        payload=st.binary(max_size=40),
        name=st.binary(max_size=20),
        sequence=st.integers(0, 2**64 - 1),
        pid=st.integers(0, 2**32 - 1),
        flags=st.integers(0, 255),
        extra=st.binary(max_size=12),
    )),
    min_size=1,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(frame_specs, st.data())
def test_property_c_and_python_agree(framestool, specs, data):
    buffer = bytearray(frames_of(specs))
    # Break it, or not: cut it short, or change a few bytes.
    damage = data.draw(st.sampled_from(["none", "cut", "flip"]))
    if damage == "cut":
        buffer = buffer[: data.draw(st.integers(0, len(buffer)))]
    elif damage == "flip":
        for _ in range(data.draw(st.integers(1, 3))):
            buffer[data.draw(st.integers(0, len(buffer) - 1))] = data.draw(st.integers(0, 255))
    buffer = bytes(buffer)
    assert [without_layout(x) for x in parse(framestool, buffer)] == python_lines(buffer)
