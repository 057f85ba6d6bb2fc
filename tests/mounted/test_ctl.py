"""G/ctl (docs/contract.md, "`G/ctl`").

One command per write(2); a trailing newline is allowed. A command that is not
understood, has a bad value or names a member that does not exist fails with
EINVAL and changes nothing; a command with several keys applies all of them or
none.

    set KEY=VALUE ...           capacity, queue_bytes, max_message, send
    member NAME KEY=VALUE ...   capacity, queue_bytes, loopback, drop_when_full
"""

import errno
import os

import pytest

from helpers import (
    DEFAULT_CAPACITY,
    DEFAULT_QUEUE_BYTES,
    MAX_CAPACITY,
    MAX_MESSAGE,
    MAX_QUEUE_BYTES,
    Call,
    expect_errno,
    sh,
    wait_for,
)


@pytest.fixture
def g(group):
    """A group with members a and b."""
    group.member("a")
    group.member("b")
    return group


# --- valid commands -----------------------------------------------------------


@pytest.mark.parametrize(
    "key,value",
    [
        ("capacity", 1),
        ("capacity", 17),
        ("capacity", MAX_CAPACITY),
        ("queue_bytes", 1),
        ("queue_bytes", 12345),
        ("queue_bytes", MAX_QUEUE_BYTES),
        ("max_message", 1),
        ("max_message", 4096),
        ("max_message", MAX_MESSAGE),
        ("send", "members"),
        ("send", "anyone"),
    ],
)
def test_set_group_key(g, key, value):
    g.ctl(f"set {key}={value}")
    assert g.status().group[key] == value


@pytest.mark.parametrize(
    "key,value",
    [
        ("capacity", 1),
        ("capacity", MAX_CAPACITY),
        ("queue_bytes", 1),
        ("queue_bytes", MAX_QUEUE_BYTES),
        ("loopback", 1),
        ("loopback", 0),
        ("drop_when_full", 1),
        ("drop_when_full", 0),
    ],
)
def test_member_key(g, key, value):
    g.ctl(f"member a {key}={value}")
    st = g.status()
    assert st.member("a")[key] == value
    assert st.member("b")[key] == {"capacity": DEFAULT_CAPACITY, "queue_bytes": DEFAULT_QUEUE_BYTES}.get(key, 0)


def test_defaults(g):
    st = g.status()
    assert st.group["capacity"] == DEFAULT_CAPACITY
    assert st.group["queue_bytes"] == DEFAULT_QUEUE_BYTES
    assert st.group["max_message"] == MAX_MESSAGE
    assert st.group["send"] == "anyone"
    for name in ("a", "b"):
        m = st.member(name)
        assert (m["capacity"], m["queue_bytes"], m["loopback"], m["drop_when_full"]) == (
            DEFAULT_CAPACITY,
            DEFAULT_QUEUE_BYTES,
            0,
            0,
        )


def test_trailing_newline_allowed(g):
    g.ctl("set capacity=9\n")
    assert g.status().group["capacity"] == 9
    g.ctl("member a loopback=1\n")
    assert g.member_status("a")["loopback"] == 1


def test_echo_into_ctl(g):
    """The shell way: `echo ... > G/ctl` (O_TRUNC on ctl must be accepted too)."""
    res = sh(f"echo 'member b drop_when_full=1' > '{g.p('ctl')}'")
    assert res.returncode == 0, res.stderr
    assert g.member_status("b")["drop_when_full"] == 1
    res = sh(f"echo 'set bogus=1' > '{g.p('ctl')}'")
    assert res.returncode != 0


def test_several_group_keys_in_one_command(g):
    g.ctl("set capacity=5 queue_bytes=500 max_message=50 send=members")
    st = g.status().group
    assert (st["capacity"], st["queue_bytes"], st["max_message"], st["send"]) == (5, 500, 50, "members")


def test_several_member_keys_in_one_command(g):
    g.ctl("member b capacity=3 queue_bytes=30 loopback=1 drop_when_full=1")
    m = g.member_status("b")
    assert (m["capacity"], m["queue_bytes"], m["loopback"], m["drop_when_full"]) == (3, 30, 1, 1)


def test_settings_take_effect(g):
    g.ctl("member a capacity=1")
    g.send(b"1")
    expect_errno(errno.EAGAIN, g.send, b"2")
    g.ctl("member a drop_when_full=1")
    g.send(b"2")
    assert g.member_status("a")["dropped"] == 1
    assert g.take("b") == [b"1", b"2"]


def test_group_defaults_apply_to_members_made_later(g):
    g.ctl("set capacity=2 queue_bytes=64")
    g.member("c")
    st = g.status()
    assert (st.member("c")["capacity"], st.member("c")["queue_bytes"]) == (2, 64)
    assert st.member("a")["capacity"] == DEFAULT_CAPACITY


def test_raising_capacity_releases_a_blocked_writer(g):
    g.fill("a")
    writer = Call(g.send, b"waiting", nonblock=False)
    wait_for(lambda: g.status().group["blocked_writers"] == 1, what="a blocked writer")
    g.ctl("member a capacity=2")
    assert writer.result(2.0) == 7
    assert g.take("a") == [b"fill-a-0", b"waiting"]


def test_drop_when_full_on_the_full_member_releases_a_blocked_writer(g):
    g.fill("a")
    writer = Call(g.send, b"waiting", nonblock=False)
    wait_for(lambda: g.status().group["blocked_writers"] == 1, what="a blocked writer")
    g.ctl("member a drop_when_full=1")
    assert writer.result(2.0) == 7
    assert g.member_status("a")["dropped"] == 1
    assert g.take("a") == [b"fill-a-0"]


# --- invalid commands ---------------------------------------------------------

INVALID = [
    "\n",
    "hello",
    "get capacity",
    "set",
    "set capacity",
    "set capacity=",
    "set =5",
    "set capacity = 5",
    "set capacity=0",
    f"set capacity={MAX_CAPACITY + 1}",
    "set capacity=-1",
    "set capacity=abc",
    "set capacity=1.5",
    "set capacity=99999999999999999999999",
    "set queue_bytes=0",
    f"set queue_bytes={MAX_QUEUE_BYTES + 1}",
    "set max_message=0",
    f"set max_message={MAX_MESSAGE + 1}",
    "set send=everyone",
    "set send=",
    "set bogus=1",
    "set loopback=1",
    "set drop_when_full=1",
    "member",
    "member a",
    "member ghost capacity=5",
    "member a bogus=1",
    "member a send=members",
    "member a max_message=10",
    "member a loopback=2",
    "member a loopback=yes",
    "member a drop_when_full=-1",
    "member a drop_when_full=true",
    "member a capacity=0",
    f"member a capacity={MAX_CAPACITY + 1}",
    "member a queue_bytes=0",
    f"member a queue_bytes={MAX_QUEUE_BYTES + 1}",
    "member send loopback=1",
    "set capacity=5\nset capacity=6",  # two commands in one write
]


@pytest.mark.parametrize("command", INVALID, ids=repr)
def test_invalid_command_einval_changes_nothing(g, command):
    before = g.status().text
    expect_errno(errno.EINVAL, g.ctl, command)
    assert g.status().text == before


def test_empty_write_changes_nothing(g):
    before = g.status().text
    fd = os.open(g.p("ctl"), os.O_WRONLY)
    try:
        try:
            os.write(fd, b"")
        except OSError as e:
            assert e.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert g.status().text == before


@pytest.mark.parametrize(
    "command",
    [
        "set capacity=7 bogus=1",
        "set capacity=7 queue_bytes=0",
        "set capacity=7 max_message=5 send=nobody",
        "set send=members capacity=0",
    ],
)
def test_multi_key_group_command_is_all_or_nothing(g, command):
    before = g.status().text
    expect_errno(errno.EINVAL, g.ctl, command)
    assert g.status().text == before


@pytest.mark.parametrize(
    "command",
    [
        "member a loopback=1 capacity=0",
        "member a capacity=9 loopback=2",
        "member a drop_when_full=1 queue_bytes=99 bogus=3",
        "member a capacity=9 max_message=5",
    ],
)
def test_multi_key_member_command_is_all_or_nothing(g, command):
    before = g.status().text
    expect_errno(errno.EINVAL, g.ctl, command)
    assert g.status().text == before


def test_ctl_after_member_left_einval(g):
    os.unlink(g.p("a"))
    expect_errno(errno.EINVAL, g.ctl, "member a loopback=1")


def test_one_open_ctl_many_commands(g):
    """Each write(2) is one command, also on one open file."""
    fd = os.open(g.p("ctl"), os.O_WRONLY)
    try:
        for cmd in (b"set capacity=11", b"member a loopback=1", b"member b capacity=4\n"):
            assert os.write(fd, cmd) == len(cmd)
        expect_errno(errno.EINVAL, os.write, fd, b"set nope=1")
        assert os.write(fd, b"set send=members") == 16
    finally:
        os.close(fd)
    st = g.status()
    assert st.group["capacity"] == 11 and st.group["send"] == "members"
    assert st.member("a")["loopback"] == 1 and st.member("b")["capacity"] == 4
