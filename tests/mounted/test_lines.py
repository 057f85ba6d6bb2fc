"""Line messages (docs/contract.md, "Line messages"): with `set message=line`
every line of a record-view write is a message, a partial line waits for the
file's next write, close or fsync (which returns once it is sent), so runtimes that split or merge writes
(shell printf, tee, buffered streams) send one message per line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import Call, expect_errno, read_line, sh, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
import mcastfs  # noqa: E402

NOBODY = 65534


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


def full_behind(lines) -> None:
    """r full (capacity 1) with one line, so that the next line waits."""
    lines.configure("r", capacity=1)
    lines.send(b"x\n")


def test_fsync_behind_a_full_member_returns_once_the_tail_is_in(lines):
    """fsync means what was written is out: behind a full member it waits as a
    blocking write does (one blocked writer, nothing sent), and returns once
    the tail is queued, where a reader finds it at once."""
    full_behind(lines)
    fd = os.open(lines.p("send"), os.O_WRONLY)
    try:
        assert os.write(fd, b"tail") == 4
        sent = lines.status().group["sent"]
        sync = Call(os.fsync, fd)
        wait_for(lambda: lines.status().group["blocked_writers"] == 1, what="fsync to wait")
        assert not sync.wait(0.3), "fsync returned while its tail could not be sent"
        assert lines.status().group["sent"] == sent
        assert lines.take_one("r") == b"x\n"
        sync.result()
        assert lines.take("r") == [b"tail"]
        st = lines.status()
        assert (st.group["sent"], st.group["blocked_writers"]) == (sent + 1, 0)
    finally:
        os.close(fd)
    assert lines.take("r") == []


FSYNC_INTERRUPTED = r"""
import os, signal, sys, time
class Interrupted(Exception):
    pass
def handler(signum, frame):
    raise Interrupted()
signal.signal(signal.SIGALRM, handler)
fd = os.open(sys.argv[1], os.O_WRONLY)
os.write(fd, b"tail")
signal.setitimer(signal.ITIMER_REAL, 0.3)
t0 = time.monotonic()
try:
    os.fsync(fd)
    print("returned", flush=True)
except Interrupted:
    print("interrupted", round((time.monotonic() - t0 - 0.3) * 1000, 1), flush=True)
signal.setitimer(signal.ITIMER_REAL, 0)
sys.stdin.readline()  # the test drained r: the next line finds room
os.write(fd, b"s\n")
print("written", flush=True)
"""


def test_an_interrupted_fsync_is_eintr_and_sends_nothing(lines):
    """A signal ends a waiting fsync with EINTR (a handler that raises: PEP 475
    retries fsync otherwise) and nothing is sent; the tail still waits in the
    open file, and begins its next line."""
    full_behind(lines)
    sent = lines.status().group["sent"]
    proc = subprocess.Popen([sys.executable, "-I", "-c", FSYNC_INTERRUPTED, lines.p("send")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        word, *late = read_line(proc.stdout, timeout=10).split()
        assert word == "interrupted"
        print(f"fsync interrupted {late[0]} ms after SIGALRM")
        st = lines.status()
        assert (st.group["sent"], st.group["blocked_writers"]) == (sent, 0)
        assert lines.take("r") == [b"x\n"]
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert read_line(proc.stdout, timeout=10).strip() == "written"
        assert lines.take("r") == [b"tails\n"]
    finally:
        proc.kill()
        proc.wait()


def test_close_does_not_wait_for_the_tail(lines):
    """The last close sends the tail holding nobody: close(2) returns at once
    behind a full member, and the tail follows when there is room."""
    full_behind(lines)
    fd = os.open(lines.p("send"), os.O_WRONLY)
    os.write(fd, b"tail")
    t0 = time.monotonic()
    os.close(fd)
    assert time.monotonic() - t0 < 1.0
    wait_for(lambda: lines.status().group["blocked_writers"] == 1, what="the released tail to wait")
    assert lines.take_one("r") == b"x\n"
    wait_for(lambda: lines.take("r") == [b"tail"], what="the tail")


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


# --- whose a line is ---------------------------------------------------------


def frames_until(group, name: str, count: int, timeout: float = 5.0) -> list:
    """`count` frames of member `name`, waiting for them (the last close's tail
    comes with the release, after close(2) returned)."""
    fd = os.open(group.p(f"frames/{name}"), os.O_RDONLY | os.O_NONBLOCK)
    frames = []
    try:
        deadline = time.monotonic() + timeout
        while len(frames) < count and time.monotonic() < deadline:
            try:
                frames += [(bytes(f.payload), f.pid, f.uid, f.gid) for f in mcastfs.read_frames(fd)]
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        os.close(fd)
    return frames


def test_a_tail_sent_by_fsync_or_close_carries_its_writers_credentials(mount_factory):
    """"The framed view": every message carries the writer's credentials as
    the kernel gave them; "Line messages": the bytes after the last newline
    are sent at fsync or the last close. uid 65534 writes a whole line, a tail
    it fsyncs and a tail it closes: all three frames say its uid, gid and pid.
    (The tail once went out with pid, uid and gid 0: FUSE's RELEASE carries
    no credentials.)"""
    m = mount_factory(options="allow_other")
    g = m.group("tails", 0o777)
    g.set(message="line")
    g.member("r")
    os.chmod(g.p("send"), 0o222)
    code = ("import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY); os.write(fd, b'whole\\ntail-fsync'); "
            "os.fsync(fd); os.write(fd, b'tail-close'); os.close(fd); print(os.getpid())")
    res = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
                          sys.executable, "-I", "-c", code, g.p("send")],
                         capture_output=True, text=True, timeout=20, cwd="/")
    assert res.returncode == 0, res.stderr
    pid = int(res.stdout)
    assert frames_until(g, "r", 3) == [(p, pid, NOBODY, NOBODY) for p in (b"whole\n", b"tail-fsync", b"tail-close")]


# One open file, written by children of other users; the parent (root) only
# fsyncs and closes it. Prints each child's pid.
SHARED_WRITERS = r"""
import json, os, sys

fd = os.open(sys.argv[1], os.O_WRONLY)

def child_writes(uid, data):
    pid = os.fork()
    if pid == 0:
        os.setgroups([]); os.setgid(uid); os.setuid(uid)
        os.write(fd, data)
        os._exit(0)  # closes its copy: a FLUSH, not the last close
    assert os.waitpid(pid, 0)[1] == 0
    return pid

pids = {}
pids["a1"] = child_writes(65534, b"by-a,fsynced-by-root")
os.fsync(fd)
pids["a2"] = child_writes(65534, b"x")
pids["b2"] = child_writes(65533, b"y\n")
pids["a3"] = child_writes(65534, b"by-a,")
pids["b3"] = child_writes(65533, b"then-b,closed-by-root")
os.close(fd)
print(json.dumps(pids))
"""


def test_a_line_is_the_last_writers_not_the_fsyncing_or_closing_processs(mount_factory):
    """docs/contract.md, "Line messages": a message carries the credentials of
    the write(2) that gave its last bytes, whoever sends it by fsync or close.
    One open file, shared with children: user A (65534) writes a tail that
    root fsyncs; A writes "x" and user B (65533) "y\n"; A then B write a
    tail that root closes."""
    m = mount_factory(options="allow_other")
    g = m.group("shared", 0o777)
    g.set(message="line")
    g.member("r")
    res = subprocess.run([sys.executable, "-I", "-c", SHARED_WRITERS, g.p("send")],
                         capture_output=True, text=True, timeout=20, cwd="/")
    assert res.returncode == 0, res.stderr
    pids = json.loads(res.stdout)
    assert frames_until(g, "r", 3) == [
        (b"by-a,fsynced-by-root", pids["a1"], NOBODY, NOBODY),
        (b"xy\n", pids["b2"], NOBODY - 1, NOBODY - 1),
        (b"by-a,then-b,closed-by-root", pids["b3"], NOBODY - 1, NOBODY - 1),
    ]
