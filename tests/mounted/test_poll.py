"""poll, select and epoll (docs/contract.md, "Waiting, signals and poll").

A member file is readable (POLLIN) when a message is queued or it has left the
group; send and member files are writable (POLLOUT) when a write would not
block. Every test runs with poll(2), select(2) and epoll(7); a waiting poller
must be woken (the daemon notifies), not just answered when asked again.
"""

import os
import select
import time

import pytest

from helpers import Call, try_read

WAKE_S = 2.0  # bound for a waiting poller to be woken


class Poller:
    """readable()/writable() with one of the three mechanisms; timeout in seconds."""

    def __init__(self, kind: str):
        self.kind = kind

    def ready(self, fd: int, want_in: bool, want_out: bool, timeout: float) -> tuple[bool, bool]:
        if self.kind == "poll":
            p = select.poll()
            p.register(fd, (select.POLLIN if want_in else 0) | (select.POLLOUT if want_out else 0))
            events = p.poll(int(timeout * 1000))
            mask = events[0][1] if events else 0
            return bool(mask & select.POLLIN), bool(mask & select.POLLOUT)
        if self.kind == "select":
            r, w, _ = select.select([fd] if want_in else [], [fd] if want_out else [], [], timeout)
            return bool(r), bool(w)
        ep = select.epoll()
        try:
            ep.register(fd, (select.EPOLLIN if want_in else 0) | (select.EPOLLOUT if want_out else 0))
            events = ep.poll(timeout)
            mask = events[0][1] if events else 0
            return bool(mask & select.EPOLLIN), bool(mask & select.EPOLLOUT)
        finally:
            ep.close()

    def readable(self, fd: int, timeout: float = 0.0) -> bool:
        return self.ready(fd, True, False, timeout)[0]

    def writable(self, fd: int, timeout: float = 0.0) -> bool:
        return self.ready(fd, False, True, timeout)[1]


@pytest.fixture(params=["poll", "select", "epoll"])
def poller(request):
    return Poller(request.param)


def test_empty_member_is_not_readable(group, poller):
    group.member("a")
    fd = group.open_nb("a")
    try:
        assert not poller.readable(fd, 0)
        assert not poller.readable(fd, 0.1)
    finally:
        os.close(fd)


def test_readable_when_a_message_is_queued(group, poller):
    group.member("a")
    fd = group.open_nb("a")
    try:
        group.send(b"m")
        assert poller.readable(fd, 0)
        assert os.read(fd, 10) == b"m"
        assert not poller.readable(fd, 0), "not readable once drained"
    finally:
        os.close(fd)


def test_message_queued_before_open_is_readable(group, poller):
    group.member("a")
    group.send(b"early")
    fd = group.open_nb("a")
    try:
        assert poller.readable(fd, 0)
    finally:
        os.close(fd)


def test_waiting_poller_woken_by_a_message(group, poller):
    group.member("a")
    fd = group.open_nb("a")
    try:
        waiting = Call(poller.readable, fd, 10.0)
        time.sleep(0.2)
        assert not waiting.done()
        t0 = time.monotonic()
        group.send(b"wake")
        assert waiting.result(WAKE_S) is True
        print(f"{poller.kind} woken {1000 * (time.monotonic() - t0):.1f} ms after the write")
        assert os.read(fd, 10) == b"wake"
    finally:
        os.close(fd)


def test_readable_after_member_left(group, poller):
    group.member("a")
    fd = group.open_nb("a")
    try:
        assert not poller.readable(fd, 0)
        os.unlink(group.p("a"))
        assert poller.readable(fd, 0)
        assert os.read(fd, 10) == b""
    finally:
        os.close(fd)


def test_waiting_poller_woken_when_member_leaves(group, poller):
    group.member("a")
    fd = group.open_nb("a")
    try:
        waiting = Call(poller.readable, fd, 10.0)
        time.sleep(0.2)
        os.unlink(group.p("a"))
        assert waiting.result(WAKE_S) is True
        assert os.read(fd, 10) == b""
    finally:
        os.close(fd)


def test_still_readable_with_rest_of_a_partly_read_message(group, poller):
    group.member("a")
    group.send(b"0123456789")
    fd = group.open_nb("a")
    try:
        assert os.read(fd, 4) == b"0123"
        assert poller.readable(fd, 0), "the rest is waiting: a read would not block"
        assert os.read(fd, 100) == b"456789"
    finally:
        os.close(fd)


def test_send_writable_when_there_is_room(group, poller):
    group.member("a")
    fd = group.open_nb("send", os.O_WRONLY)
    try:
        assert poller.writable(fd, 0)
    finally:
        os.close(fd)


def test_send_writable_in_empty_group(group, poller):
    fd = group.open_nb("send", os.O_WRONLY)
    try:
        assert poller.writable(fd, 0)
    finally:
        os.close(fd)


def test_send_not_writable_while_a_member_is_full_then_woken_by_drain(group, poller):
    group.member("a")
    group.member("b")
    group.fill("a")
    fd = group.open_nb("send", os.O_WRONLY)
    try:
        assert not poller.writable(fd, 0)
        assert not poller.writable(fd, 0.1)
        assert try_read_write_eagain(fd)
        waiting = Call(poller.writable, fd, 10.0)
        time.sleep(0.2)
        assert not waiting.done()
        t0 = time.monotonic()
        assert group.take_one("a") == b"fill-a-0"
        assert waiting.result(WAKE_S) is True
        print(f"{poller.kind} POLLOUT {1000 * (time.monotonic() - t0):.1f} ms after the drain")
        assert os.write(fd, b"now") == 3
    finally:
        os.close(fd)


def try_read_write_eagain(fd):
    try:
        os.write(fd, b"x")
    except BlockingIOError:
        return True
    return False


def test_member_file_not_writable_while_another_member_is_full(group, poller):
    group.member("w")
    group.member("a")
    group.fill("a")
    fd = group.open_nb("w", os.O_WRONLY)
    try:
        assert not poller.writable(fd, 0)
        waiting = Call(poller.writable, fd, 10.0)
        time.sleep(0.2)
        group.take_one("a")
        assert waiting.result(WAKE_S) is True
    finally:
        os.close(fd)


def test_member_file_writable_when_only_its_own_queue_is_full(group, poller):
    """Without loopback the writer is not a recipient of its own writes."""
    group.member("w")
    group.member("a")
    group.fill("w")
    fd = group.open_nb("w", os.O_WRONLY)
    try:
        assert poller.writable(fd, 0)
    finally:
        os.close(fd)


def test_loopback_member_not_writable_when_its_own_queue_is_full(group, poller):
    group.member("w", loopback=1)
    group.fill("w")
    fd = group.open_nb("w", os.O_WRONLY)
    try:
        assert not poller.writable(fd, 0)
    finally:
        os.close(fd)


def test_full_drop_when_full_member_does_not_block_pollout(group, poller):
    group.member("d", capacity=1, drop_when_full=1)
    group.send(b"fills d")
    assert group.member_status("d")["full"] == 1
    fd = group.open_nb("send", os.O_WRONLY)
    try:
        assert poller.writable(fd, 0)
    finally:
        os.close(fd)


def test_writable_again_when_the_full_member_leaves(group, poller):
    group.member("a")
    group.member("b")
    group.fill("a")
    fd = group.open_nb("send", os.O_WRONLY)
    try:
        waiting = Call(poller.writable, fd, 10.0)
        time.sleep(0.2)
        os.unlink(group.p("a"))
        assert waiting.result(WAKE_S) is True
    finally:
        os.close(fd)


def test_rdwr_member_reports_both_directions(group, poller):
    group.member("a")
    group.member("b")
    fd = group.open_nb("a", os.O_RDWR)
    try:
        assert poller.ready(fd, True, True, 0) == (False, True)
        group.send_as("b", b"for a")
        assert poller.ready(fd, True, True, 0) == (True, True)
        group.fill("b")
        assert poller.ready(fd, True, True, 0) == (True, False)
        assert try_read(fd) == b"for a"
    finally:
        os.close(fd)


def test_epoll_many_members_one_wakeup_each(group):
    names = [f"m{i}" for i in range(20)]
    for n in names:
        group.member(n)
    fds = {group.open_nb(n): n for n in names}
    ep = select.epoll()
    try:
        for fd in fds:
            ep.register(fd, select.EPOLLIN)
        assert ep.poll(0) == []
        group.send(b"all")
        ready = set()
        deadline = time.monotonic() + WAKE_S
        while len(ready) < len(names) and time.monotonic() < deadline:
            for fd, _ in ep.poll(0.1):
                if os.read(fd, 10) == b"all":
                    ready.add(fds[fd])
        assert ready == set(names)
        assert ep.poll(0) == []
    finally:
        ep.close()
        for fd in fds:
            os.close(fd)
