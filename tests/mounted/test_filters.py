"""Topic filters (docs/contract.md, "Topic filters").

    member NAME subscribe=PATTERN[,PATTERN...]     (empty: every message)

A message's topic is its payload up to the first space, tab, newline or NUL,
split into tokens at `.`; `*` matches one token, `>` as the last token one or
more. A member whose patterns do not match is not a recipient: it neither
receives, nor holds the writer back, nor counts a drop. POLLOUT stays
conservative. `status` shows `subscribe=` last on each member's line.
"""

from __future__ import annotations

import errno
import os
import select
import struct
import threading

import pytest

from helpers import Call, expect_errno, try_write


def subscribe(group, name: str, patterns: str) -> None:
    group.ctl(f"member {name} subscribe={patterns}")


def batch(*messages: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(m)) + m for m in messages)


# --- the grammar --------------------------------------------------------------


@pytest.mark.parametrize(
    "patterns",
    ["a", "a.b.c", "*", ">", "orders.*.new", "orders.>", "*.b.>", "a.b,c.>,*", "café.*", "x-1.y_2", "a,a"],
)
def test_valid_patterns_are_taken_and_shown(group, patterns):
    group.member("m")
    subscribe(group, "m", patterns)
    assert group.member_status("m")["subscribe"] == patterns


@pytest.mark.parametrize(
    "patterns",
    [
        "a..b", ".a", "a.", ".", "a.>.b", ">.a", "a*", ">b", "a.b*", "x>", "**",  # tokens
        "a,,b", "a,", ",a", ",",  # empty patterns in the list
        "a\tb", "a\x00b", "a\rb", "a\x7f", "a\u00a0b", "\u2028",  # whitespace and control characters, as in names
    ],
)
def test_invalid_patterns_are_einval_and_change_nothing(group, patterns):
    group.member("m")
    subscribe(group, "m", "keep.*")
    expect_errno(errno.EINVAL, group.ctl, f"member m subscribe={patterns}")
    # All keys or none: a good key beside a bad pattern is not applied either.
    expect_errno(errno.EINVAL, group.ctl, f"member m capacity=7 subscribe={patterns}")
    st = group.member_status("m")
    assert st["subscribe"] == "keep.*" and st["capacity"] == 256


def test_at_most_64_patterns(group):
    group.member("m")
    subscribe(group, "m", ",".join(f"p{i}" for i in range(64)))
    assert len(group.member_status("m")["subscribe"].split(",")) == 64
    expect_errno(errno.EINVAL, group.ctl, "member m subscribe=" + ",".join(f"q{i}" for i in range(65)))
    assert group.member_status("m")["subscribe"].startswith("p0,p1,")


def test_more_than_4_kib_is_einval(group):
    group.member("m")
    # Through ctl the command's own 4,096-byte limit comes first: the longest
    # value that fits is taken, one more byte is EINVAL.
    prefix = "member m subscribe="
    longest = "x" * (4096 - len(prefix))
    subscribe(group, "m", longest)
    assert group.member_status("m")["subscribe"] == longest
    expect_errno(errno.EINVAL, group.ctl, prefix + longest + "y")
    expect_errno(errno.EINVAL, group.ctl, prefix + "z" * 4097)
    assert group.member_status("m")["subscribe"] == longest


def test_empty_subscribe_clears_and_is_the_default(group):
    group.member("m")
    assert group.member_status("m")["subscribe"] == ""
    subscribe(group, "m", "a")
    group.send(b"b 1")
    assert group.take("m") == []
    group.ctl("member m subscribe=\n")
    assert group.member_status("m")["subscribe"] == ""
    group.send(b"b 2")
    assert group.take("m") == [b"b 2"]


def test_only_subscribe_may_be_empty_and_groups_have_none(group):
    group.member("m")
    for bad in ["member m capacity=", "member m loopback=", "set subscribe=a", "set subscribe=", "member m subscribe"]:
        expect_errno(errno.EINVAL, group.ctl, bad)


def test_subscribe_names_a_member_that_exists(group):
    expect_errno(errno.EINVAL, group.ctl, "member ghost subscribe=a")


# --- matching -----------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern,topic,match",
    [
        ("orders.*.new", "orders.eu.new", True),
        ("orders.*.new", "orders.eu.old", False),
        ("orders.*.new", "orders.new", False),
        ("orders.>", "orders.eu", True),
        ("orders.>", "orders.eu.new", True),
        ("orders.>", "orders", False),
        ("*", "a", True),
        ("*", "a.b", False),
        (">", "a.b.c", True),
        ("a.b", "a.b", True),
        ("a.b", "a.b.c", False),
    ],
)
def test_the_contracts_matching(group, pattern, topic, match):
    group.member("m")
    subscribe(group, "m", pattern)
    group.send(topic.encode() + b" payload")
    assert group.take("m") == ([topic.encode() + b" payload"] if match else [])


def test_tokens_not_byte_prefixes(group):
    group.member("tx")
    group.member("txs")
    subscribe(group, "tx", "tx,tx.>")
    subscribe(group, "txs", "tx_trytes")
    for payload in [b"tx_trytes 1", b"tx 2", b"tx.a 3", b"tx_trytes.a 4", b"txx 5"]:
        group.send(payload)
    assert group.take("tx") == [b"tx 2", b"tx.a 3"]
    assert group.take("txs") == [b"tx_trytes 1"]


@pytest.mark.parametrize("end", [b" ", b"\t", b"\n", b"\x00"])
def test_the_topic_ends_at_space_tab_newline_nul(group, end):
    group.member("m")
    subscribe(group, "m", "a.b")
    group.send(b"a.b" + end + b"c.d rest")
    group.send(b"a.bc" + end + b"x")
    group.send(b"a.b")  # no end: all of it
    assert group.take("m") == [b"a.b" + end + b"c.d rest", b"a.b"]


@pytest.mark.parametrize("payload", [b" starts with a space", b"\nx", b"a..b x", b".a x", b"a. x", b"."])
def test_an_empty_topic_or_token_reaches_only_unfiltered_members(group, payload):
    group.member("all")
    group.member("wild")
    subscribe(group, "wild", ">,*,*.*,a.>")
    group.send(payload)
    assert group.take("all") == [payload]
    assert group.take("wild") == []


def test_line_messages_each_have_their_topic(group):
    group.set(message="line")
    group.member("eu")
    subscribe(group, "eu", "orders.eu")
    group.send(b"orders.eu 1\norders.us 2\norders.eu\n")
    assert group.take("eu") == [b"orders.eu 1\n", b"orders.eu\n"]


def test_the_framed_view_sends_to_the_same_recipients(group):
    group.member("a")
    subscribe(group, "a", "a")
    fd = os.open(group.p("frames/send"), os.O_WRONLY | os.O_NONBLOCK)
    try:
        data = batch(b"a 1", b"b 2", b"a 3")
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)
    assert group.take("a") == [b"a 1", b"a 3"]


def test_loopback_and_the_sender(group):
    group.member("me")
    group.member("peer")
    subscribe(group, "me", "mine")
    subscribe(group, "peer", "mine")
    group.send_as("me", b"mine 1")
    assert group.take("me") == [] and group.take("peer") == [b"mine 1"]
    group.configure("me", loopback=1)
    group.send_as("me", b"mine 2")
    group.send_as("me", b"other 3")
    assert group.take("me") == [b"mine 2"]


# --- non-matching members never block or drop ---------------------------------


def test_a_full_member_that_does_not_match_holds_no_writer_back(group):
    group.member("full", capacity=1)
    subscribe(group, "full", "a")
    group.send(b"a 1")
    assert group.member_status("full")["full"] == 1
    group.send(b"b 1")  # non-blocking: it would be EAGAIN if full held it back
    assert group.send(b"b 2", nonblock=False) == 3
    expect_errno(errno.EAGAIN, group.send, b"a 2")
    st = group.status()
    assert st.group["sent"] == 3 and st.member("full")["delivered"] == 1
    assert group.take("full") == [b"a 1"]


def test_a_drop_when_full_member_that_does_not_match_counts_no_drop(group):
    group.member("lossy", capacity=1, drop_when_full=1)
    subscribe(group, "lossy", "a")
    group.send(b"a 1")
    group.send(b"a 2")
    group.send(b"b 1")
    st = group.member_status("lossy")
    assert st["dropped"] == 1 and st["delivered"] == 1


def test_a_blocked_write_goes_once_the_full_member_stops_matching(group):
    group.member("full", capacity=1)
    subscribe(group, "full", "a")
    group.send(b"a 1")
    call = Call(group.send, b"a 2", nonblock=False)
    call.wait_blocked()
    assert group.status().group["blocked_writers"] == 1
    subscribe(group, "full", "b")
    assert call.result() == 3
    assert group.take("full") == [b"a 1"]


def test_blocked_writes_keep_their_order_whatever_their_topics(group):
    group.member("slow", capacity=1)
    group.member("other")
    subscribe(group, "slow", "a")
    subscribe(group, "other", "b")
    group.send(b"a 0")
    first = Call(group.send, b"a 1", nonblock=False)
    first.wait_blocked()
    # "b 2" does not go to slow, but an older write waits: it waits behind it.
    expect_errno(errno.EAGAIN, group.send, b"b 1")
    second = Call(group.send, b"b 2", nonblock=False)
    second.wait_blocked()
    assert group.status().group["blocked_writers"] == 2
    assert not first.done() and not second.done()
    assert group.take_one("slow") == b"a 0"
    first.result()
    second.result()
    assert group.take("other") == [b"b 2"]
    assert group.take("slow") == [b"a 1"]


def test_a_framed_batch_stops_before_a_message_whose_recipient_is_full(group):
    group.member("a", capacity=4)
    group.member("b", capacity=1)
    subscribe(group, "a", "a")
    subscribe(group, "b", "b")
    group.send(b"b 0")
    data = batch(b"a 1", b"b 2", b"a 3")
    fd = os.open(group.p("frames/send"), os.O_WRONLY | os.O_NONBLOCK)
    try:
        assert os.write(fd, data) == 4 + 3  # the first record only
        group.take("b")
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)
    assert group.take("a") == [b"a 1", b"a 1", b"a 3"]
    assert group.take("b") == [b"b 2"]


def test_pollout_stays_conservative(group):
    group.member("full", capacity=1)
    subscribe(group, "full", "a")
    group.send(b"a 1")
    fd = group.open_nb("send", os.O_WRONLY)
    try:
        p = select.poll()
        p.register(fd, select.POLLOUT)
        assert not any(mask & select.POLLOUT for _, mask in p.poll(0))
        # ... though a message on another topic goes through.
        assert try_write(fd, b"b 1") == 3
    finally:
        os.close(fd)


# --- order among common recipients -------------------------------------------


def test_common_recipients_see_one_order_with_filters(group):
    readers = {"r0": "t0.>,t1.>", "r1": "t1.>,t2.>", "r2": "*.x", "r3": ""}
    for name, patterns in readers.items():
        group.member(name, capacity=4)
        subscribe(group, name, patterns)
    topics = ["t0.x", "t1.x", "t2.y", "t1.y"]
    writers, per_writer = 3, 120
    sent = {name: [] for name in readers}
    lock = threading.Lock()

    def write(index):
        fd = group.open("send", os.O_WRONLY)
        try:
            for n in range(per_writer):
                topic = topics[(n * 7 + index) % len(topics)]
                payload = f"{topic} w{index}:{n}".encode()
                os.write(fd, payload)
        finally:
            os.close(fd)

    def expected(patterns, payload):
        topic = payload.split(b" ")[0].decode()
        if not patterns:
            return True
        return any(_matches(p, topic) for p in patterns.split(","))

    for index in range(writers):
        for n in range(per_writer):
            topic = topics[(n * 7 + index) % len(topics)]
            payload = f"{topic} w{index}:{n}".encode()
            for name, patterns in readers.items():
                if expected(patterns, payload):
                    sent[name].append(payload)

    got = {name: [] for name in readers}

    def read(name):
        fd = group.open(name)
        try:
            while len(got[name]) < len(sent[name]):
                got[name].append(os.read(fd, 4096))
        finally:
            os.close(fd)

    calls = [Call(read, name) for name in readers] + [Call(write, i) for i in range(writers)]
    for call in calls:
        call.result(timeout=30)
    with lock:
        for name in readers:
            assert sorted(got[name]) == sorted(sent[name]), name
            for w in range(writers):
                mine = [int(m.split(b":")[1]) for m in got[name] if m.split(b" ")[1].startswith(f"w{w}:".encode())]
                assert mine == sorted(mine), f"{name}: writer {w} out of order"
        for x in readers:
            for y in readers:
                common = set(got[x]) & set(got[y])
                assert [m for m in got[x] if m in common] == [m for m in got[y] if m in common], (x, y)
    assert all(group.take(name) == [] for name in readers)


def _matches(pattern: str, topic: str) -> bool:
    """The contract's matching, for the few tokens these tests use."""
    p, t = pattern.split("."), topic.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(t) > i
        if i >= len(t) or (token != "*" and token != t[i]):
            return False
    return len(p) == len(t)


# --- status and membership ----------------------------------------------------


def test_status_shows_subscribe_last_on_every_member_line(group):
    group.member("a")
    group.member("b")
    subscribe(group, "b", "x.*,y.>")
    st = group.status()
    for name, value in [("a", ""), ("b", "x.*,y.>")]:
        assert st.member_order[name][-1] == "subscribe", st.text
        assert st.member(name)["subscribe"] == value
    assert st.text.splitlines()[2].endswith(" subscribe=x.*,y.>")


def test_a_filtered_member_that_leaves_and_a_new_one_of_its_name(group):
    group.member("m", capacity=1)
    subscribe(group, "m", "a")
    group.send(b"a 1")
    os.unlink(group.p("m"))
    group.send(b"a 2")  # m is gone: nothing holds this back
    group.member("m")
    assert group.member_status("m")["subscribe"] == ""
    group.send(b"b 1")
    assert group.take("m") == [b"b 1"]
