"""Line messages (docs/contract.md, "Line messages"): with `set message=line`
every line of a record-view write is a message, a partial line waits for the
file's next write, close or fsync, so runtimes that split or merge writes
(shell printf, tee, buffered streams) send one message per line."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from helpers import expect_errno, sh


@pytest.fixture
def lines(group):
    group.member("r")
    group.ctl("set message=line")
    return group


def test_status_shows_the_setting_and_bad_values_are_einval(group):
    assert group.status().group["message"] == "write"
    group.ctl("set message=line")
    assert group.status().group["message"] == "line"
    expect_errno(errno.EINVAL, group.ctl, "set message=lines")
    group.ctl("set message=write")
    assert group.status().group["message"] == "write"


def test_one_write_of_many_lines_is_many_messages_and_close_sends_the_tail(lines):
    fd = os.open(lines.p("send"), os.O_WRONLY)
    try:
        assert os.write(fd, b"one\ntwo\nthr") == 11
        assert lines.take("r") == [b"one\n", b"two\n"]
        assert os.write(fd, b"ee") == 2
        assert lines.take("r") == []
    finally:
        os.close(fd)
    assert lines.take("r") == [b"three"]


def test_fsync_sends_the_waiting_tail(lines):
    fd = os.open(lines.p("send"), os.O_WRONLY)
    try:
        os.write(fd, b"partial")
        os.fsync(fd)
        assert lines.take("r") == [b"partial"]
    finally:
        os.close(fd)
    assert lines.take("r") == []


def test_a_member_sends_its_lines_as_itself(lines):
    lines.member("w")
    lines.configure("w", loopback=1)
    fd = os.open(lines.p("w"), os.O_WRONLY)
    try:
        os.write(fd, b"a\nb\n")
    finally:
        os.close(fd)
    assert lines.take("r") == [b"a\n", b"b\n"]
    assert lines.take("w") == [b"a\n", b"b\n"]


def test_tee_of_a_pipeline_gives_one_message_per_line(lines):
    lines.configure("r", capacity=4000)
    sh(f"seq 1 2000 | tee {lines.p('send')} > /dev/null")
    got = []
    while len(got) < 2000:
        more = lines.take("r")
        assert more, f"only {len(got)} lines arrived"
        got += more
    assert got == [b"%d\n" % i for i in range(1, 2001)]


def test_shell_printf_in_pieces_still_makes_whole_lines(lines):
    """bash's printf builtin writes a long format in several writes, and the
    subshell of $(...) inherits the descriptor and closes it when it exits:
    only the last close sends a waiting tail."""
    script = f"exec 3>{lines.p('send')}; printf 'x%.0s' $(seq 1 5000) >&3; printf '\\nnext\\n' >&3; exec 3>&-"
    subprocess.run(["bash", "-c", script], check=True, timeout=20)
    got = lines.take("r")
    assert [len(m) for m in got] == [5001, 5] and got == [b"x" * 5000 + b"\n", b"next\n"]


def test_a_line_longer_than_max_message_fails_that_write(lines):
    lines.set(max_message=8)
    fd = os.open(lines.p("send"), os.O_WRONLY)
    try:
        os.write(fd, b"ab")
        expect_errno(errno.EMSGSIZE, os.write, fd, b"c\nmuch too long\n")
        assert os.write(fd, b"c\n") == 2
    finally:
        os.close(fd)
    assert lines.take("r") == [b"abc\n"]


def test_nonblocking_delivers_the_lines_that_fit(lines):
    lines.configure("r", capacity=2)
    fd = os.open(lines.p("send"), os.O_WRONLY | os.O_NONBLOCK)
    try:
        assert os.write(fd, b"a\nb\nc\n") == 4
        expect_errno(errno.EAGAIN, os.write, fd, b"d\n")
    finally:
        os.close(fd)
    assert lines.take("r") == [b"a\n", b"b\n"]


def test_the_framed_view_is_not_cut(lines):
    fd = os.open(lines.p("frames/send"), os.O_WRONLY)
    try:
        os.write(fd, (4).to_bytes(4, "little") + b"a\nb\n")
    finally:
        os.close(fd)
    assert lines.take("r") == [b"a\nb\n"]
