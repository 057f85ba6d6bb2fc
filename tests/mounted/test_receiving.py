"""Receiving (docs/contract.md, "Receiving").

read(2) on G/NAME returns the oldest queued message, whole, when the buffer is
large enough; with a smaller buffer the first part, and the following reads on
the same open file return the rest before any other message. Nothing is ever
silently cut. An empty queue blocks the read (EAGAIN with O_NONBLOCK). Several
open files reading one member share its queue: each message goes to exactly
one of them. A queue is full at `capacity` messages or `queue_bytes` bytes; an
empty queue always accepts one message.
"""

import errno
import os
import subprocess
import threading
import time

import pytest

from helpers import (
    Call,
    drain,
    expect_errno,
    read_timeout,
    set_nonblock,
    try_read,
    wait_blocked,
    wait_for,
)


def test_reads_return_oldest_first_each_whole(group):
    group.member("a")
    msgs = [b"first", b"second message", b"3"]
    for m in msgs:
        group.send(m)
    fd = group.open_nb("a")
    try:
        assert [os.read(fd, 1000) for _ in msgs] == msgs
        assert try_read(fd) is None
    finally:
        os.close(fd)


@pytest.mark.parametrize("bufsize", [1, 7, 10, 99])
def test_small_buffer_reads_the_rest_next(group, bufsize):
    group.member("a")
    m1 = bytes(range(100))
    m2 = b"the next message"
    group.send(m1)
    group.send(m2)
    fd = group.open_nb("a")
    try:
        parts = []
        while sum(map(len, parts)) < len(m1):
            part = os.read(fd, bufsize)
            assert 0 < len(part) <= bufsize
            parts.append(part)
        assert b"".join(parts) == m1, "the pieces make the message, nothing cut, nothing added"
        assert os.read(fd, 1000) == m2
    finally:
        os.close(fd)


def test_rest_of_message_comes_before_messages_that_arrive_meanwhile(group):
    group.member("a")
    group.send(b"0123456789")
    fd = group.open_nb("a")
    try:
        assert os.read(fd, 4) == b"0123"
        group.send(b"later")
        assert os.read(fd, 1000) == b"456789", "the rest, not the rest plus the next message"
        assert os.read(fd, 1000) == b"later"
    finally:
        os.close(fd)


def test_queue_is_empty_once_the_rest_is_read(group):
    group.member("a")
    group.send(b"0123456789")
    fd = group.open_nb("a")
    try:
        assert os.read(fd, 3) == b"012"
        assert os.read(fd, 100) == b"3456789"
        assert group.member_status("a")["queued"] == 0
    finally:
        os.close(fd)


def test_buffer_exactly_message_size(group):
    group.member("a")
    group.send(b"x" * 50)
    group.send(b"y" * 50)
    fd = group.open_nb("a")
    try:
        assert os.read(fd, 50) == b"x" * 50
        assert os.read(fd, 50) == b"y" * 50
    finally:
        os.close(fd)


def test_small_buffer_with_blocking_reads(group):
    group.member("a")
    fd = group.open("a")
    try:
        group.send(b"abcdef")
        assert read_timeout(fd, 4) == b"abcd"
        assert read_timeout(fd, 4) == b"ef"
        call = Call(os.read, fd, 4)
        call.wait_blocked(path=group.p("a"))
        group.send(b"gh")
        assert call.result(2.0) == b"gh"
    finally:
        os.close(fd)


def test_empty_queue_blocks_until_a_message_arrives(group):
    group.member("a")
    fd = group.open("a")
    try:
        call = Call(os.read, fd, 1000)
        call.wait_blocked(path=group.p("a"))
        time.sleep(0.2)
        assert not call.done(), "read of an empty queue returned without a message"
        t0 = time.monotonic()
        group.send(b"wake up")
        assert call.result(2.0) == b"wake up"
        print(f"reader woke {1000 * (time.monotonic() - t0):.1f} ms after the write")
    finally:
        os.close(fd)


def test_nonblocking_read_of_empty_queue_eagain(group):
    group.member("a")
    fd = group.open_nb("a")
    try:
        expect_errno(errno.EAGAIN, os.read, fd, 100)
        group.send(b"now")
        assert os.read(fd, 100) == b"now"
        expect_errno(errno.EAGAIN, os.read, fd, 100)
    finally:
        os.close(fd)


def test_nonblock_set_by_fcntl_after_open_gives_eagain(group):
    group.member("a")
    fd = group.open("a")
    try:
        set_nonblock(fd)
        expect_errno(errno.EAGAIN, os.read, fd, 100)
        set_nonblock(fd, False)
        call = Call(os.read, fd, 100)
        call.wait_blocked(path=group.p("a"))
        assert not call.done()
        group.send(b"blocking again")
        assert call.result(2.0) == b"blocking again"
        set_nonblock(fd)
        expect_errno(errno.EAGAIN, os.read, fd, 100)
    finally:
        os.close(fd)


def test_nonblocking_and_blocking_handles_on_one_member(group):
    group.member("a")
    blocking = group.open("a")
    nonblocking = group.open_nb("a")
    try:
        expect_errno(errno.EAGAIN, os.read, nonblocking, 10)
        call = Call(os.read, blocking, 10)
        call.wait_blocked(path=group.p("a"))
        group.send(b"one")
        assert call.result(2.0) == b"one"
        expect_errno(errno.EAGAIN, os.read, nonblocking, 10)
    finally:
        os.close(blocking)
        os.close(nonblocking)


# --- shared queue -------------------------------------------------------------


def test_open_files_of_one_member_share_its_queue(group):
    group.member("a")
    fds = [group.open_nb("a") for _ in range(3)]
    try:
        msgs = [f"m{i:02d}".encode() for i in range(30)]
        for m in msgs:
            group.send(m)
        got = [[] for _ in fds]
        while True:
            progress = False
            for i, fd in enumerate(fds):
                data = try_read(fd)
                if data:
                    got[i].append(data)
                    progress = True
            if not progress:
                break
        everything = sorted(m for per_fd in got for m in per_fd)
        assert everything == msgs, "each message to exactly one open file"
        for per_fd in got:
            assert per_fd == sorted(per_fd), "each open file sees the queue's order"
        assert group.member_status("a")["queued"] == 0
    finally:
        for fd in fds:
            os.close(fd)


def test_shared_queue_across_processes(group):
    """Two `cat`s on one member: together they print every message once."""
    group.member("a")
    cats = [subprocess.Popen(["cat", group.p("a")], stdout=subprocess.PIPE) for _ in range(2)]
    try:
        for c in cats:
            wait_blocked(c.pid, path=group.p("a"))
        msgs = [f"line {i}\n".encode() for i in range(40)]
        for m in msgs:
            Call(group.send, m, nonblock=False).result(5.0)
        os.unlink(group.p("a"))
        outs = [c.communicate(timeout=10)[0] for c in cats]
    finally:
        for c in cats:
            if c.poll() is None:
                c.kill()
                c.wait(5)
    lines = sorted(line for out in outs for line in out.splitlines(keepends=True))
    assert lines == sorted(msgs)


def test_blocked_readers_on_one_member_each_get_one_message(group):
    group.member("a")
    fds = [group.open("a") for _ in range(4)]
    try:
        calls = [Call(os.read, fd, 100) for fd in fds]
        for c in calls:
            c.wait_blocked(path=group.p("a"))
        for i in range(4):
            group.send(f"msg{i}".encode())
        got = sorted(c.result(2.0) for c in calls)
        assert got == [b"msg0", b"msg1", b"msg2", b"msg3"]
        assert group.member_status("a")["queued"] == 0
    finally:
        for fd in fds:
            os.close(fd)


def test_two_threads_blocked_on_one_fd_do_not_hold_each_other(group):
    group.member("a")
    fd = group.open("a")
    try:
        c1 = Call(os.read, fd, 100)
        c2 = Call(os.read, fd, 100)
        c1.wait_blocked(path=group.p("a"))
        c2.wait_blocked(path=group.p("a"))
        group.send(b"one")
        first = wait_for(lambda: [c for c in (c1, c2) if c.done()], timeout=2.0, what="one reader to return")
        assert len(first) == 1
        assert first[0].result() == b"one"
        group.send(b"two")
        other = c2 if first[0] is c1 else c1
        assert other.result(2.0) == b"two"
    finally:
        os.close(fd)


# --- one open file used by several threads --------------------------------------


def test_rdwr_member_loopback_receives_own_write_while_blocked(group):
    """One fd O_RDWR: a thread blocks in read, another writes through the same
    fd; with loopback=1 the blocked read receives that very message."""
    group.member("a", loopback=1)
    fd = group.open("a", os.O_RDWR)
    try:
        reader = Call(os.read, fd, 100)
        reader.wait_blocked(path=group.p("a"))
        writer = Call(os.write, fd, b"to myself")
        assert writer.result(2.0) == 9
        assert reader.result(2.0) == b"to myself"
    finally:
        os.close(fd)


def test_rdwr_member_write_not_held_up_by_blocked_read(group):
    group.member("a")
    group.member("b")
    fd = group.open("a", os.O_RDWR)
    try:
        reader = Call(os.read, fd, 100)
        reader.wait_blocked(path=group.p("a"))
        t0 = time.monotonic()
        writer = Call(os.write, fd, b"while reading")
        assert writer.result(2.0) == 13
        print(f"write on the fd of a blocked read took {1000 * (time.monotonic() - t0):.1f} ms")
        assert group.take("b") == [b"while reading"]
        assert not reader.done(), "no loopback: a's own message does not wake it"
        group.send_as("b", b"for a")
        assert reader.result(2.0) == b"for a"
    finally:
        os.close(fd)


def test_rdwr_member_chat_in_both_directions(group):
    group.member("a")
    group.member("b")
    fa = group.open("a", os.O_RDWR)
    fb = group.open("b", os.O_RDWR)
    try:
        ra = Call(os.read, fa, 100)
        rb = Call(os.read, fb, 100)
        ra.wait_blocked(path=group.p("a"))
        rb.wait_blocked(path=group.p("b"))
        Call(os.write, fa, b"hi b").result(2.0)
        Call(os.write, fb, b"hi a").result(2.0)
        assert ra.result(2.0) == b"hi a"
        assert rb.result(2.0) == b"hi b"
    finally:
        os.close(fa)
        os.close(fb)


# --- full queues --------------------------------------------------------------


def test_lowering_capacity_drops_nothing(group):
    group.member("a")
    for i in range(3):
        group.send(f"q{i}".encode())
    group.configure("a", capacity=1)
    st = group.member_status("a")
    assert (st["queued"], st["capacity"], st["full"]) == (3, 1, 1)
    expect_errno(errno.EAGAIN, group.send, b"no room")
    fd = group.open_nb("a")
    try:
        assert os.read(fd, 100) == b"q0"
        assert os.read(fd, 100) == b"q1"
        assert group.member_status("a")["full"] == 1, "still holds capacity messages"
        assert os.read(fd, 100) == b"q2"
        assert group.member_status("a")["full"] == 0
    finally:
        os.close(fd)
    group.send(b"room again")
    assert group.take("a") == [b"room again"]


def test_reading_makes_room_for_a_blocked_writer(group):
    group.member("a", capacity=3)
    for i in range(3):
        group.send(f"{i}".encode())
    writer = Call(group.send, b"3", nonblock=False)
    fd = group.open("a")
    try:
        wait_for(lambda: group.status().group["blocked_writers"] == 1, what="a blocked writer")
        got = [read_timeout(fd, 10) for _ in range(4)]
        assert got == [b"0", b"1", b"2", b"3"]
        writer.result(2.0)
    finally:
        os.close(fd)


def test_many_messages_through_one_member(group):
    group.member("a", capacity=1000)
    for i in range(1000):
        group.send(f"{i}".encode())
    expect_errno(errno.EAGAIN, group.send, b"1000")
    fd = group.open_nb("a")
    try:
        got = drain(fd)
    finally:
        os.close(fd)
    assert got == [f"{i}".encode() for i in range(1000)]


def test_reader_thread_and_writer_thread_stream(group):
    """A writer that blocks and a reader that drains, concurrently, lose nothing."""
    group.member("a", capacity=4)
    n = 500
    stop = threading.Event()

    def produce():
        fd = group.open("send", os.O_WRONLY)
        try:
            for i in range(n):
                os.write(fd, f"{i}".encode())
        finally:
            os.close(fd)

    def consume():
        fd = group.open("a")
        out = []
        try:
            while len(out) < n and not stop.is_set():
                out.append(os.read(fd, 100))
        finally:
            os.close(fd)
        return out

    producer = Call(produce)
    consumer = Call(consume)
    try:
        producer.result(30.0)
        got = consumer.result(30.0)
    finally:
        stop.set()
    assert got == [f"{i}".encode() for i in range(n)]
