"""Members (docs/contract.md, "Members", and rmdir in "The root
directory").

Creating G/NAME (touch, open O_CREAT) joins the group with the group's
default settings, owned by the caller with the mode given (umask applied);
O_EXCL on an existing member is EEXIST. `rm G/NAME` leaves: no new messages,
open handles still read what was queued and then read returns 0, new opens get
ENOENT.
"""

import errno
import os
import select
import signal
import stat
import subprocess
import time

import pytest

from helpers import (
    DEFAULT_CAPACITY,
    DEFAULT_QUEUE_BYTES,
    RESERVED,
    Call,
    expect_errno,
    read_timeout,
    try_read,
    wait_blocked,
)


@pytest.mark.parametrize(
    "mode,mask,expected",
    [(0o644, 0o022, 0o644), (0o666, 0o022, 0o644), (0o666, 0o077, 0o600), (0o640, 0o000, 0o640), (0o600, 0o000, 0o600)],
    ids=lambda v: f"{v:o}",
)
def test_open_creat_joins_with_mode_and_owner(group, mode, mask, expected):
    old = os.umask(mask)
    try:
        fd = os.open(group.p("m"), os.O_CREAT | os.O_WRONLY, mode)
    finally:
        os.umask(old)
    os.close(fd)
    st = os.stat(group.p("m"))
    assert stat.S_ISREG(st.st_mode)
    assert st.st_mode & 0o7777 == expected
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    status = group.status()
    assert "m" in status.members
    assert status.group["members"] == 1


def test_touch_creates_member_and_touching_again_is_harmless(group):
    res = subprocess.run(["touch", group.p("t")], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert "t" in group.status().members
    group.send(b"kept")
    res = subprocess.run(["touch", group.p("t")], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert group.take("t") == [b"kept"]


def test_new_member_gets_group_defaults(group):
    m = group.status()
    assert m.group["capacity"] == DEFAULT_CAPACITY
    group.member("old")
    group.set(capacity=7, queue_bytes=700)
    group.member("new")
    st = group.status()
    assert st.member("new")["capacity"] == 7
    assert st.member("new")["queue_bytes"] == 700
    assert st.member("new")["loopback"] == 0
    assert st.member("new")["drop_when_full"] == 0
    assert st.member("old")["capacity"] == DEFAULT_CAPACITY, "group defaults apply to new members only"
    assert st.member("old")["queue_bytes"] == DEFAULT_QUEUE_BYTES


def test_create_existing_member_with_excl_eexist(group):
    group.member("m")
    group.send(b"queued")
    expect_errno(errno.EEXIST, os.open, group.p("m"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    assert group.status().group["members"] == 1
    assert group.take("m") == [b"queued"]


def test_create_existing_member_without_excl_opens_it(group):
    group.member("m")
    group.send(b"queued")
    fd = os.open(group.p("m"), os.O_CREAT | os.O_RDONLY | os.O_NONBLOCK, 0o644)
    try:
        assert os.read(fd, 100) == b"queued"
    finally:
        os.close(fd)
    assert group.status().group["members"] == 1


def test_open_missing_member_enoent(group):
    expect_errno(errno.ENOENT, os.open, group.p("nobody-here"), os.O_RDONLY)
    expect_errno(errno.ENOENT, os.open, group.p("nobody-here"), os.O_WRONLY)


# --- leaving ------------------------------------------------------------------


def test_rm_member_leaves(group):
    group.member("a")
    group.member("b")
    os.unlink(group.p("a"))
    st = group.status()
    assert "a" not in st.members
    assert st.group["members"] == 1
    assert "a" not in os.listdir(group.path)
    expect_errno(errno.ENOENT, os.stat, group.p("a"))
    expect_errno(errno.ENOENT, os.open, group.p("a"), os.O_RDONLY)
    expect_errno(errno.ENOENT, os.open, group.p("a"), os.O_WRONLY | os.O_NONBLOCK)
    group.send(b"after")
    assert group.take("b") == [b"after"]


def test_rm_via_shell(group):
    group.member("a")
    res = subprocess.run(["rm", group.p("a")], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert group.status().members == {}


def test_rm_missing_member_enoent(group):
    expect_errno(errno.ENOENT, os.unlink, group.p("ghost"))


def test_open_handle_reads_what_was_queued_then_eof(group):
    group.member("a")
    fd = group.open_nb("a")
    try:
        group.send(b"m1")
        group.send(b"m2")
        os.unlink(group.p("a"))
        group.send(b"m3 after rm")
        assert os.read(fd, 100) == b"m1"
        assert os.read(fd, 100) == b"m2"
        assert os.read(fd, 100) == b"", "read returns 0 once the queue of a removed member is empty"
        assert os.read(fd, 100) == b"", "and keeps returning 0"
    finally:
        os.close(fd)


def test_open_blocking_handle_reads_queued_then_eof(group):
    group.member("a")
    fd = group.open("a")
    try:
        group.send(b"m1")
        os.unlink(group.p("a"))
        assert read_timeout(fd, 100) == b"m1"
        assert read_timeout(fd, 100) == b""
    finally:
        os.close(fd)


def test_rm_releases_blocked_reader_with_eof(group):
    group.member("a")
    fd = group.open("a")
    try:
        call = Call(os.read, fd, 100)
        call.wait_blocked(path=group.p("a"))
        t0 = time.monotonic()
        os.unlink(group.p("a"))
        assert call.result(timeout=2.0) == b""
        print(f"blocked reader released {1000 * (time.monotonic() - t0):.1f} ms after rm")
    finally:
        os.close(fd)


def test_cat_prints_queued_messages_and_exits_after_rm(group):
    group.member("a")
    cat = subprocess.Popen(["cat", group.p("a")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_blocked(cat.pid, path=group.p("a"))
        group.send(b"hello\n")
        group.send(b"world\n")
        os.unlink(group.p("a"))
        out, err = cat.communicate(timeout=5)
        assert cat.returncode == 0, err
        assert out == b"hello\nworld\n"
    finally:
        if cat.poll() is None:
            cat.kill()
            cat.wait(5)


def test_rm_then_recreate_is_a_new_member(group):
    group.member("a")
    fd = group.open_nb("a")
    try:
        group.send(b"old")
        os.unlink(group.p("a"))
        group.member("a")
        group.send(b"new")
        assert os.read(fd, 100) == b"old"
        assert os.read(fd, 100) == b"", "the old handle belongs to the member that left"
        assert group.take("a") == [b"new"]
    finally:
        os.close(fd)


def test_poll_handle_of_removed_member_is_readable(group):
    group.member("a")
    fd = group.open_nb("a")
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        assert p.poll(0) == []
        os.unlink(group.p("a"))
        events = p.poll(2000)
        assert events and events[0][1] & select.POLLIN
        assert try_read(fd) == b""
    finally:
        os.close(fd)


def test_rmdir_needs_every_member_gone(mount, group):
    for n in ("a", "b", "c"):
        group.member(n)
    expect_errno(errno.ENOTEMPTY, os.rmdir, group.path)
    for n in ("a", "b"):
        os.unlink(group.p(n))
        expect_errno(errno.ENOTEMPTY, os.rmdir, group.path)
    os.unlink(group.p("c"))
    os.rmdir(group.path)
    assert group.name not in os.listdir(mount.path)


def test_rmdir_with_removed_member_still_open(mount, group):
    """A member that left is not a member any more, even while a handle is open."""
    group.member("a")
    fd = group.open_nb("a")
    try:
        os.unlink(group.p("a"))
        os.rmdir(group.path)
        assert group.name not in os.listdir(mount.path)
        assert os.read(fd, 10) == b""
    finally:
        os.close(fd)


def test_member_created_by_one_process_is_seen_by_another(group):
    res = subprocess.run(["sh", "-c", f"touch '{group.p('x')}' && ls '{group.path}'"], capture_output=True,
                         text=True, timeout=10)
    assert res.returncode == 0
    assert sorted(res.stdout.split()) == sorted(RESERVED + ("x",))
    assert "x" in group.status().members


def test_cat_killed_does_not_remove_member(group):
    group.member("a")
    cat = subprocess.Popen(["cat", group.p("a")], stdout=subprocess.DEVNULL)
    try:
        wait_blocked(cat.pid, path=group.p("a"))
        cat.send_signal(signal.SIGTERM)
        cat.wait(5)
    finally:
        if cat.poll() is None:
            cat.kill()
    assert "a" in group.status().members
