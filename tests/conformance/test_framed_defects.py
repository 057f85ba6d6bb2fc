"""Defects of the framed view and line messages that the stress checker
(tests/reliability/test_stress.py) found, each pinned down to a small case,
and kept as tests now that they are fixed: a framed read too small for its
first frame took the message and put it back (another reader could overtake
it); a line tail sent by fsync or close carried no credentials.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import threading
import time

import pytest

from .model import decode_frames

NOBODY = 65534


def batch(*records: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(r)) + r for r in records)


def test_a_framed_read_failing_with_emsgsize_consumes_nothing_and_keeps_the_order(group):
    """docs/contract.md, "Reading frames": a frame that does not fit fails the
    read with EMSGSIZE and consumes nothing; "Ordering": messages written one
    after another reach every recipient in the order written. A framed reader
    with a 64-byte buffer and a record reader of the same member both wait;
    A (200 bytes) and then B arrive in one batch."""
    group.member("m")
    framed_result = {}
    received = []

    def framed():
        fd = os.open(group.p("frames/m"), os.O_RDONLY)
        try:
            framed_result["r"] = os.read(fd, 64)
        except OSError as e:
            framed_result["r"] = e.errno
        finally:
            os.close(fd)

    def record():
        fd = os.open(group.p("m"), os.O_RDONLY)
        try:
            for _ in range(2):
                received.append(os.read(fd, 4096))
        finally:
            os.close(fd)

    tf = threading.Thread(target=framed, daemon=True)
    tf.start()
    time.sleep(0.2)  # the framed read waits first, then the record read
    tr = threading.Thread(target=record, daemon=True)
    tr.start()
    time.sleep(0.2)
    a, b = b"A" * 200, b"B" * 10
    out = os.open(group.p("frames/send"), os.O_WRONLY)
    try:
        assert os.write(out, batch(a, b)) == len(batch(a, b))
    finally:
        os.close(out)
    tf.join(5)
    tr.join(5)
    assert framed_result.get("r") == errno.EMSGSIZE
    assert received == [a, b], f"the record reader received {[r[:4] for r in received]}"


def test_a_line_flushed_by_fsync_or_close_carries_its_writers_credentials(mount_factory):
    """docs/contract.md, "The framed view": every message carries the
    writer's credentials as the kernel gave them (uid "cannot be forged");
    "Line messages": the bytes after the last newline are sent at fsync or
    the last close. uid 65534 writes a whole line, a tail it fsyncs and a tail
    it closes; all three frames must say uid and gid 65534 and its pid."""
    m = mount_factory(options="allow_other")
    g = m.group("tails", 0o777)
    g.set(message="line")
    g.member("r")
    os.chmod(g.p("send"), 0o222)
    code = ("import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY); os.write(fd, b'whole\\ntail-fsync'); "
            "os.fsync(fd); os.write(fd, b'tail-close'); os.close(fd); print(os.getpid())")
    res = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
                          "/usr/bin/python3", "-I", "-c", code, g.p("send")],
                         capture_output=True, text=True, timeout=20, cwd="/")
    assert res.returncode == 0, res.stderr
    pid = int(res.stdout)
    fd = os.open(g.p("frames/r"), os.O_RDONLY | os.O_NONBLOCK)
    frames = []
    try:
        deadline = time.monotonic() + 5
        while len(frames) < 3 and time.monotonic() < deadline:  # the close's tail comes with the release
            try:
                frames += decode_frames(os.read(fd, 1 << 20))
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        os.close(fd)
    assert [f.payload for f in frames] == [b"whole\n", b"tail-fsync", b"tail-close"]
    assert [(f.pid, f.uid, f.gid) for f in frames] == [(pid, NOBODY, NOBODY)] * 3
