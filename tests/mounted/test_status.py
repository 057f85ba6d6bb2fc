"""G/status (docs/contract.md, "`G/status`").

A consistent snapshot, one line per object, in the nested-keyed format of
cgroup v2 (`NAME KEY=VALUE ...`):

    group chat send=anyone capacity=256 queue_bytes=4194304 max_message=1044480 members=2 sent=17 blocked_writers=0
    member alice queued=3 queued_bytes=120 capacity=256 queue_bytes=4194304 loopback=0 drop_when_full=0 full=0 delivered=14 dropped=0

More keys may be added (so extra keys are allowed, after the documented ones);
none is removed or renamed.
"""

import os
import subprocess

from helpers import (
    DEFAULT_CAPACITY,
    DEFAULT_QUEUE_BYTES,
    GROUP_KEYS,
    MAX_MESSAGE,
    MEMBER_KEYS,
    Call,
    Group,
    parse_status,
    read_file,
    wait_for,
)

CONTRACT_GROUP_LINE = (
    "group chat send=anyone capacity=256 queue_bytes=4194304 max_message=1044480 members=2 sent=17 blocked_writers=0"
)
CONTRACT_MEMBER_LINE = (
    "member alice queued=3 queued_bytes=120 capacity=256 queue_bytes=4194304 loopback=0 drop_when_full=0 full=0 "
    "delivered=14 dropped=0"
)


def line_matches(line: str, expected: str) -> bool:
    """The documented line, possibly followed by keys added later."""
    return line == expected or line.startswith(expected + " ")


def test_status_of_empty_group(group):
    st = group.status()
    assert st.group_name == group.name
    assert st.members == {}
    assert len(st.lines) == 1
    expected = (
        f"group {group.name} send=anyone capacity={DEFAULT_CAPACITY} queue_bytes={DEFAULT_QUEUE_BYTES} "
        f"max_message={MAX_MESSAGE} members=0 sent=0 blocked_writers=0"
    )
    assert line_matches(st.lines[0], expected), st.lines[0]


def test_every_documented_key_is_present_in_order(group):
    group.member("a")
    group.member("b", loopback=1, drop_when_full=1)
    st = group.status()
    assert st.group_order[: len(GROUP_KEYS)] == list(GROUP_KEYS), st.lines[0]
    for name in ("a", "b"):
        assert st.member_order[name][: len(MEMBER_KEYS)] == list(MEMBER_KEYS), st.text


def test_values_have_the_documented_types(group):
    group.member("a")
    group.send(b"x")
    st = group.status()
    assert st.group["send"] in ("anyone", "members")
    for key in GROUP_KEYS[1:]:
        assert isinstance(st.group[key], int) and st.group[key] >= 0, key
    for key in MEMBER_KEYS:
        assert isinstance(st.member("a")[key], int) and st.member("a")[key] >= 0, key
    for key in ("loopback", "drop_when_full", "full"):
        assert st.member("a")[key] in (0, 1)


def test_the_contract_example_reproduced(mount):
    """Build the exact situation of the contract's example and compare lines."""
    os.mkdir(os.path.join(mount.path, "chat"))
    try:
        g = Group(mount.path, "chat")
        g.member("alice")
        g.member("bob")
        for i in range(14):  # bob -> alice: 14 messages of 40 bytes
            g.send_as("bob", f"{i:02d}".encode() * 20)
        fd = g.open_nb("alice")
        try:
            for _ in range(11):
                assert len(os.read(fd, 100)) == 40
        finally:
            os.close(fd)
        for i in range(3):  # alice -> bob: not delivered to alice (no loopback)
            g.send_as("alice", b"reply")
        st = g.status()
        assert line_matches(st.lines[0], CONTRACT_GROUP_LINE), st.lines[0]
        alice = [line for line in st.lines if line.startswith("member alice ")]
        assert len(alice) == 1
        assert line_matches(alice[0], CONTRACT_MEMBER_LINE), alice[0]
        bob = st.member("bob")
        assert (bob["queued"], bob["queued_bytes"], bob["delivered"]) == (3, 15, 3)
    finally:
        for name in ("alice", "bob"):
            try:
                os.unlink(os.path.join(mount.path, "chat", name))
            except FileNotFoundError:
                pass
        os.rmdir(os.path.join(mount.path, "chat"))


def test_counters_follow_traffic(group):
    group.member("a")
    group.member("b", capacity=2, drop_when_full=1)
    for i in range(4):
        group.send(b"12345")
    st = group.status()
    assert st.group["sent"] == 4
    assert st.group["members"] == 2
    a, b = st.member("a"), st.member("b")
    assert (a["queued"], a["queued_bytes"], a["delivered"], a["dropped"], a["full"]) == (4, 20, 4, 0, 0)
    assert (b["queued"], b["queued_bytes"], b["delivered"], b["dropped"], b["full"]) == (2, 10, 2, 2, 1)
    group.take("a")
    group.take_one("b")
    st = group.status()
    assert (st.member("a")["queued"], st.member("a")["queued_bytes"], st.member("a")["delivered"]) == (0, 0, 4)
    assert (st.member("b")["queued"], st.member("b")["full"]) == (1, 0)


def test_full_marks_the_member_holding_writers_back(group):
    group.member("a")
    group.member("b")
    group.fill("a")
    writer = Call(group.send, b"held", nonblock=False)
    wait_for(lambda: group.status().group["blocked_writers"] == 1, what="blocked_writers=1")
    st = group.status()
    assert st.member("a")["full"] == 1 and st.member("a")["drop_when_full"] == 0
    assert st.member("b")["full"] == 0
    os.unlink(group.p("a"))  # "rm evicts it and releases them"
    assert writer.result(2.0) == 4
    st = group.status()
    assert st.group["blocked_writers"] == 0
    assert "a" not in st.members


def test_members_count_and_lines_follow_joins_and_leaves(group):
    for n in ("a", "b", "c"):
        group.member(n)
    st = group.status()
    assert st.group["members"] == 3 and sorted(st.members) == ["a", "b", "c"]
    os.unlink(group.p("b"))
    st = group.status()
    assert st.group["members"] == 2 and sorted(st.members) == ["a", "c"]


def test_settings_show_up(group):
    group.member("a")
    group.set(capacity=3, queue_bytes=300, max_message=30, send="members")
    group.configure("a", capacity=9, queue_bytes=99, loopback=1, drop_when_full=1)
    st = group.status()
    g = st.group
    assert (g["capacity"], g["queue_bytes"], g["max_message"], g["send"]) == (3, 300, 30, "members")
    a = st.member("a")
    assert (a["capacity"], a["queue_bytes"], a["loopback"], a["drop_when_full"]) == (9, 99, 1, 1)


def test_unicode_member_names_in_status(group):
    group.member("grüße")
    group.member("日本")
    assert sorted(group.status().members) == sorted(["grüße", "日本"])


def test_status_snapshot_is_consistent_across_small_reads(group):
    """Reading status a few bytes at a time while traffic changes it still
    yields one consistent snapshot."""
    group.member("a")
    for i in range(5):
        group.send(b"x")
    fd = os.open(group.p("status"), os.O_RDONLY)
    try:
        head = os.read(fd, 10)
        for i in range(5):
            group.send(b"y")
        group.member("late")
        chunks = [head]
        while True:
            chunk = Call(os.read, fd, 7).result(5.0)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    snapshot = parse_status(b"".join(chunks).decode())
    assert snapshot.group["sent"] == 5
    assert snapshot.member("a")["queued"] == 5
    assert "late" not in snapshot.members
    now = group.status()
    assert now.group["sent"] == 10 and "late" in now.members


def test_each_open_gets_a_fresh_snapshot(group):
    group.member("a")
    first = group.status()
    group.send(b"m")
    second = group.status()
    assert (first.group["sent"], second.group["sent"]) == (0, 1)


def test_cat_status(group):
    group.member("a")
    res = subprocess.run(["cat", group.p("status")], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    st = parse_status(res.stdout)
    assert st.group_name == group.name and "a" in st.members


def test_status_readable_with_python_open(group):
    group.member("a")
    text = Call(lambda: open(group.p("status")).read()).result(5.0)
    assert parse_status(text).members.keys() == {"a"}


def test_many_members_in_status(group):
    names = [f"m{i:04d}" for i in range(500)]
    for n in names:
        group.member(n)
    text = read_file(group.p("status"), timeout=10).decode()
    st = parse_status(text)
    assert sorted(st.members) == names
    assert st.group["members"] == 500
