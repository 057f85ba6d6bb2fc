"""Sending (docs/contract.md, "Sending").

A message is the data of one write(2) on G/send or on a member file. Atomic:
delivered whole to all recipients or to none; a write that returns an error
delivered nothing. Recipients: all members at the moment of delivery, except
the sending member unless it has loopback=1; a drop_when_full member whose
queue is full is skipped (dropped counts it). Blocking: a write waits until
every non-drop recipient has room, then delivers to all at once; O_NONBLOCK
(at open or by fcntl) gives EAGAIN and nobody receives it. Fairness: blocked
writes complete in the order they began. Size: more than max_message is
EMSGSIZE (default and upper bound 1,044,480). `set send=members`: writes on
send fail with EPERM. A group without members accepts and drops everything.
"""

import errno
import os
import time

import pytest

from helpers import (
    BIG_READ,
    MAX_MESSAGE,
    Call,
    expect_errno,
    set_nonblock,
    sh,
    try_read,
    wait_for,
)


def blocked_writers(group):
    return group.status().group["blocked_writers"]


def test_send_reaches_every_member_once(group):
    for n in ("a", "b", "c"):
        group.member(n)
    assert group.send(b"to all") == 6
    for n in ("a", "b", "c"):
        assert group.take(n) == [b"to all"]
    st = group.status()
    assert st.group["sent"] == 1
    for n in ("a", "b", "c"):
        assert st.member(n)["delivered"] == 1


def test_member_write_skips_the_sender(group):
    for n in ("a", "b", "c"):
        group.member(n)
    group.send_as("a", b"from a")
    assert group.take("a") == []
    assert group.take("b") == [b"from a"]
    assert group.take("c") == [b"from a"]
    assert group.member_status("a")["delivered"] == 0


def test_loopback_member_receives_its_own_message(group):
    group.member("a", loopback=1)
    group.member("b")
    group.send_as("a", b"echo")
    assert group.take("a") == [b"echo"]
    assert group.take("b") == [b"echo"]
    group.configure("a", loopback=0)
    group.send_as("a", b"quiet")
    assert group.take("a") == []
    assert group.take("b") == [b"quiet"]


def test_loopback_alone_in_group(group):
    group.member("solo", loopback=1)
    group.send_as("solo", b"me")
    assert group.take("solo") == [b"me"]


def test_each_write_is_one_message(group):
    group.member("a")
    fd = group.open_nb("send", os.O_WRONLY)
    try:
        for chunk in (b"abc", b"de", b"f", b"\n", b"ghi\njkl\n"):
            assert os.write(fd, chunk) == len(chunk)
    finally:
        os.close(fd)
    assert group.take("a") == [b"abc", b"de", b"f", b"\n", b"ghi\njkl\n"]


def test_writev_is_one_message(group):
    """writev(2) is one write: its buffers make one message (an assumption the
    contract implies: a message is the data of one write call)."""
    group.member("a")
    fd = group.open_nb("send", os.O_WRONLY)
    try:
        assert os.writev(fd, [b"ab", b"cd", b"ef"]) == 6
    finally:
        os.close(fd)
    assert group.take("a") == [b"abcdef"]


def test_binary_messages_arrive_unchanged(group):
    group.member("a")
    payload = bytes(range(256)) * 4
    group.send(payload)
    group.send(b"\x00")
    assert group.take("a", size=4096) == [payload, b"\x00"]


def test_group_without_members_accepts_and_drops(group):
    before = group.status().group["sent"]
    assert group.send(b"into the void") == 13
    assert Call(group.send, b"x" * 1000, nonblock=False).result(2.0) == 1000
    assert group.status().group["sent"] == before + 2
    group.member("late")
    assert group.take("late") == [], "a member gets nothing sent before it joined"


# --- blocking, atomicity ------------------------------------------------------


def test_full_queue_nonblocking_write_eagain_nobody_receives(group):
    group.member("a")
    group.member("b")
    group.fill("a")  # capacity 1, one message queued
    assert group.take("b") == [b"fill-a-0"]
    sent = group.status().group["sent"]
    expect_errno(errno.EAGAIN, group.send, b"refused")
    expect_errno(errno.EAGAIN, group.send_as, "b", b"refused too")
    st = group.status()
    assert st.group["sent"] == sent
    assert st.group["blocked_writers"] == 0
    assert st.member("b")["queued"] == 0
    assert group.take("b") == [], "nobody receives a message that got EAGAIN"
    assert group.take("a") == [b"fill-a-0"]


def test_nonblock_set_by_fcntl_after_open_gives_eagain(group):
    group.member("a")
    group.fill("a")
    fd = group.open("send", os.O_WRONLY)
    try:
        set_nonblock(fd)
        expect_errno(errno.EAGAIN, os.write, fd, b"x")
        assert group.member_status("a")["queued"] == 1
        # Clear it again: the write now blocks until there is room.
        set_nonblock(fd, False)
        call = Call(os.write, fd, b"y")
        call.wait_blocked(path=group.p("send"))
        assert not call.done()
        assert group.take_one("a") == b"fill-a-0"
        assert call.result(2.0) == 1
        assert group.take("a") == [b"y"]
    finally:
        os.close(fd)


def test_blocking_write_waits_then_delivers_to_all_at_once(group):
    group.member("a")
    group.member("b")
    group.fill("a")
    group.take("b")
    fd = group.open("send", os.O_WRONLY)
    try:
        call = Call(os.write, fd, b"waited")
        wait_for(lambda: blocked_writers(group) == 1, what="blocked_writers=1")
        time.sleep(0.2)
        assert not call.done()
        st = group.status()
        assert st.member("b")["queued"] == 0, "nobody receives before everyone has room"
        assert st.member("a")["queued"] == 1
        assert group.take_one("a") == b"fill-a-0"
        assert call.result(2.0) == 6
        assert group.take("a") == [b"waited"]
        assert group.take("b") == [b"waited"]
        assert blocked_writers(group) == 0
    finally:
        os.close(fd)


def test_recipients_are_the_members_at_delivery(group):
    """A member that joins while a write waits receives it when it is delivered."""
    group.member("a")
    group.fill("a")
    fd = group.open("send", os.O_WRONLY)
    try:
        call = Call(os.write, fd, b"late joiner gets it")
        wait_for(lambda: blocked_writers(group) == 1, what="blocked_writers=1")
        group.member("c")
        group.take_one("a")
        assert call.result(2.0) > 0
        assert group.take("c") == [b"late joiner gets it"]
    finally:
        os.close(fd)


def test_rm_of_the_full_member_releases_blocked_writer(group):
    group.member("a")
    group.member("b")
    group.fill("a")
    group.take("b")
    fd = group.open("send", os.O_WRONLY)
    try:
        call = Call(os.write, fd, b"go")
        wait_for(lambda: blocked_writers(group) == 1, what="blocked_writers=1")
        os.unlink(group.p("a"))
        assert call.result(2.0) == 2
        assert group.take("b") == [b"go"]
    finally:
        os.close(fd)


def test_member_write_blocks_on_full_recipient(group):
    group.member("w")
    group.member("a")
    group.fill("a")
    group.take("w")
    fd = group.open("w", os.O_WRONLY)
    try:
        call = Call(os.write, fd, b"as w")
        wait_for(lambda: blocked_writers(group) == 1, what="blocked_writers=1")
        assert group.take_one("a") == b"fill-a-0"
        assert call.result(2.0) == 4
        assert group.take("a") == [b"as w"]
        assert group.take("w") == []
    finally:
        os.close(fd)


def test_own_full_queue_does_not_block_sender_without_loopback(group):
    """The sender is not a recipient, so its own full queue does not matter."""
    group.member("w")
    group.member("a")
    group.fill("w")
    group.take("a")
    group.send_as("w", b"fine")
    assert group.take("a") == [b"fine"]


def test_capacity_counts_messages(group):
    group.member("a", capacity=2)
    group.send(b"1")
    group.send(b"2")
    expect_errno(errno.EAGAIN, group.send, b"3")
    st = group.member_status("a")
    assert (st["queued"], st["full"]) == (2, 1)
    assert group.take("a") == [b"1", b"2"]


def test_queue_bytes_counts_bytes(group):
    """Full when it holds queue_bytes bytes; a queue below that still takes a
    message that carries it past the limit (the contract defines full by what
    the queue holds)."""
    group.member("a", queue_bytes=10)
    group.send(b"123456")  # holds 6 < 10: not full
    assert group.member_status("a")["full"] == 0
    group.send(b"789012")  # accepted, now holds 12
    st = group.member_status("a")
    assert (st["queued"], st["queued_bytes"], st["full"]) == (2, 12, 1)
    expect_errno(errno.EAGAIN, group.send, b"x")
    assert group.take("a") == [b"123456", b"789012"]


def test_queue_bytes_exactly_reached_is_full(group):
    group.member("a", queue_bytes=10)
    group.send(b"0123456789")
    assert group.member_status("a")["full"] == 1
    expect_errno(errno.EAGAIN, group.send, b"x")


def test_empty_queue_always_accepts_one_message(group):
    group.member("a", queue_bytes=1)
    group.send(b"much longer than one byte")
    expect_errno(errno.EAGAIN, group.send, b"y")
    assert group.take("a") == [b"much longer than one byte"]


# --- drop_when_full -----------------------------------------------------------


def test_drop_when_full_member_is_skipped_and_counted(group):
    group.member("d", capacity=1, drop_when_full=1)
    group.member("b")
    for i in range(5):
        group.send(f"m{i}".encode())  # never EAGAIN: d does not hold writers back
    st = group.status()
    assert st.member("d")["dropped"] == 4
    assert st.member("d")["delivered"] == 1
    assert st.member("d")["full"] == 1
    assert st.member("b")["delivered"] == 5
    assert st.group["sent"] == 5
    assert group.take("d") == [b"m0"]
    assert group.take("b") == [f"m{i}".encode() for i in range(5)]


def test_drop_when_full_member_does_not_hold_a_blocking_writer(group):
    group.member("d", capacity=1, drop_when_full=1)
    group.send(b"first")
    call = Call(group.send, b"second", nonblock=False)
    assert call.result(2.0) == 6
    assert group.member_status("d")["dropped"] == 1


def test_only_drop_members_full_write_never_blocks(group):
    for n in ("d1", "d2"):
        group.member(n, capacity=1, drop_when_full=1)
    for i in range(50):
        group.send(b"x")
    st = group.status()
    assert st.member("d1")["dropped"] == 49 and st.member("d2")["dropped"] == 49


# --- fairness -----------------------------------------------------------------


def test_blocked_writes_complete_in_the_order_they_began(group):
    """Writers on different files (the kernel serialises writes to one inode
    before they reach the daemon, so each writer uses its own file)."""
    group.member("a")
    writers = ["w1", "w2", "w3", "w4"]
    for w in writers:
        group.member(w, drop_when_full=1)  # they also receive; never hold anyone back
    group.fill("a")
    fds, calls = [], []
    try:
        for i, w in enumerate(writers):
            fd = group.open(w, os.O_WRONLY)
            fds.append(fd)
            calls.append(Call(os.write, fd, f"from-{w}".encode(), name=w))
            wait_for(lambda: blocked_writers(group) == i + 1, what=f"blocked_writers={i + 1}")
        received = []
        for _ in range(len(writers) + 1):
            received.append(wait_for(lambda: group.take_one("a"), timeout=3.0, what="the next message for a"))
        assert received == [b"fill-a-0"] + [f"from-{w}".encode() for w in writers]
        for c in calls:
            assert c.result(2.0) > 0
    finally:
        for fd in fds:
            os.close(fd)


def test_no_writer_starves(group):
    """A slow reader and several writers: every writer finishes."""
    group.member("slow", capacity=2)
    writers = [f"w{i}" for i in range(4)]
    for w in writers:
        group.member(w, drop_when_full=1, capacity=1)
    per_writer = 25

    def write_all(name):
        fd = group.open(name, os.O_WRONLY)
        try:
            for k in range(per_writer):
                os.write(fd, f"{name}:{k}".encode())
        finally:
            os.close(fd)

    calls = [Call(write_all, w, name=w) for w in writers]
    fd = group.open("slow")
    got = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < per_writer * len(writers) and time.monotonic() < deadline:
            got.append(Call(os.read, fd, 100).result(5.0))
    finally:
        os.close(fd)
    for c in calls:
        c.result(5.0)
    assert len(got) == per_writer * len(writers)
    for w in writers:
        mine = [int(m.split(b":")[1]) for m in got if m.startswith(w.encode() + b":")]
        assert mine == list(range(per_writer))


# --- size ---------------------------------------------------------------------


def test_max_message_arrives_whole(group):
    group.member("a")
    group.member("b")
    payload = os.urandom(MAX_MESSAGE)
    assert group.send(payload) == MAX_MESSAGE
    st = group.member_status("a")
    assert (st["queued"], st["queued_bytes"]) == (1, MAX_MESSAGE)
    fd = group.open_nb("a")
    try:
        assert os.read(fd, BIG_READ) == payload
    finally:
        os.close(fd)
    fd = group.open_nb("b")
    try:
        assert os.read(fd, MAX_MESSAGE) == payload, "a buffer of exactly max_message holds it"
        assert try_read(fd) is None
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [4095, 4096, 4097, 65536, 131072 + 1, 1 << 19, MAX_MESSAGE - 1])
def test_sizes_up_to_max_arrive_whole(group, size):
    group.member("a")
    payload = os.urandom(size)
    group.send(payload)
    fd = group.open_nb("a")
    try:
        assert os.read(fd, BIG_READ) == payload
    finally:
        os.close(fd)


def test_max_message_from_member_file(group):
    group.member("w")
    group.member("a")
    payload = os.urandom(MAX_MESSAGE)
    assert group.send_as("w", payload) == MAX_MESSAGE
    fd = group.open_nb("a")
    try:
        assert os.read(fd, BIG_READ) == payload
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [MAX_MESSAGE + 1, 1 << 20, (1 << 20) + 1, 2 << 20, 4 << 20])
def test_oversized_message_emsgsize_nobody_receives(group, size):
    group.member("a")
    group.member("w")
    sent = group.status().group["sent"]
    expect_errno(errno.EMSGSIZE, group.send, b"z" * size)
    expect_errno(errno.EMSGSIZE, group.send_as, "w", b"z" * size)
    st = group.status()
    assert st.group["sent"] == sent
    assert st.member("a")["queued"] == 0
    assert group.take("a") == []
    group.send(b"after")
    assert group.take("a", size=BIG_READ) == [b"after"], "no left-over piece of the refused write"


def test_max_message_setting(group):
    group.member("a")
    group.set(max_message=100)
    group.send(b"m" * 100)
    expect_errno(errno.EMSGSIZE, group.send, b"m" * 101)
    expect_errno(errno.EMSGSIZE, group.send, b"m" * 5000)
    assert group.take("a") == [b"m" * 100]
    group.set(max_message=MAX_MESSAGE)
    group.send(b"m" * 5000)
    assert group.take("a") == [b"m" * 5000]


# --- members-only groups ------------------------------------------------------


def test_send_members_only_eperm_on_send(group):
    group.member("a")
    group.member("b")
    group.set(send="members")
    sent = group.status().group["sent"]
    expect_errno(errno.EPERM, group.send, b"outsider")
    assert Call(expect_errno, errno.EPERM, group.send, b"outsider", nonblock=False).result(2.0)
    assert group.status().group["sent"] == sent
    assert group.take("a") == []
    group.send_as("a", b"insider")
    assert group.take("b") == [b"insider"]
    group.set(send="anyone")
    group.send(b"open again")
    assert group.take("a") == [b"open again"]


def test_send_members_only_shell(group):
    group.member("a")
    group.set(send="members")
    res = sh(f"echo nope > '{group.p('send')}'")
    assert res.returncode != 0, "echo into send of a members-only group must fail"
    assert group.take("a") == []
