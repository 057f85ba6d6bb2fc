"""poll readiness where the model test found mcastfs off the contract:
"`send` and member files are writable (POLLOUT) when a write would not
block". A write that fails at once does not block."""

from __future__ import annotations

import errno
import os
import select

import pytest


def events(fd: int) -> int:
    p = select.poll()
    p.register(fd, select.POLLIN | select.POLLOUT)
    return dict(p.poll(0)).get(fd, 0)


def test_send_of_a_members_only_group_is_writable(group):
    group.member("a")
    group.member("b")
    group.ctl("member a capacity=1")
    group.ctl("set send=members")
    group.send_as("b", b"fills a")
    assert group.member_status("a")["full"] == 1
    fd = os.open(group.p("send"), os.O_WRONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"x")
        assert e.value.errno == errno.EPERM  # fails at once: it would not block
        assert events(fd) & select.POLLOUT, "send is not writable though a write would not block"
    finally:
        os.close(fd)


def test_send_of_a_members_only_group_with_room_is_writable(group):
    """The same without a full recipient: writable (and the write is EPERM)."""
    group.member("a")
    group.ctl("set send=members")
    fd = os.open(group.p("send"), os.O_WRONLY | os.O_NONBLOCK)
    try:
        assert events(fd) & select.POLLOUT
    finally:
        os.close(fd)


def test_a_reader_holding_the_rest_of_a_message_is_readable(group):
    """A file that began a message with a small buffer has data to read."""
    group.member("a")
    group.send(b"0123456789")
    fd = os.open(group.p("a"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert os.read(fd, 4) == b"0123"
        assert group.member_status("a")["queued"] == 0
        assert events(fd) & select.POLLIN
        assert os.read(fd, 100) == b"456789"
        assert not events(fd) & select.POLLIN
    finally:
        os.close(fd)
