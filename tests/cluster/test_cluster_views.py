"""Version 2's views and features on a clustered group: the framed view's
metadata from the stream, line messages, topic filters and peers, each
applied on the node of the member they concern (docs/contract.md, "Groups
across hosts")."""

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cluster_mount import appears, member_line, node_mount, read_n, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
import mcastfs  # noqa: E402


@pytest.fixture
def nodes(nats_server, mount_factory):
    a, b = node_mount(mount_factory, nats_server, "a"), node_mount(mount_factory, nats_server, "b")
    os.mkdir(os.path.join(a.path, "v"))
    assert appears(os.path.join(b.path, "v"))
    return os.path.join(a.path, "v"), os.path.join(b.path, "v")


def frames(path, want, timeout=10.0):
    """At least `want` frames from a framed member file (non-blocking reads until then)."""
    got = []
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want and time.monotonic() < deadline:
            try:
                got += mcastfs.read_frames(fd, 1 << 20)
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        os.close(fd)
    return got


def test_frames_carry_the_stream_sequence_the_writers_credentials_and_name(nodes):
    a, b = nodes
    open(os.path.join(a, "reader"), "w").close()
    open(os.path.join(b, "writer"), "w").close()
    assert wait_until(lambda: member_line(b, "reader") is not None)
    before = time.time_ns()
    # A batch of three through b's framed view, one write(2) from a child process.
    batch = b"".join(struct.pack("<I", len(m)) + m for m in (b"one", b"two", b"three"))
    child = subprocess.run([sys.executable, "-c",
                            f"import os,sys; fd=os.open({os.path.join(b, 'frames', 'writer')!r}, os.O_WRONLY); "
                            f"print(os.getpid()); sys.stdout.flush(); os.write(fd, {batch!r})"],
                           capture_output=True, timeout=20, check=True)
    pid = int(child.stdout.split()[0])
    got = frames(os.path.join(a, "frames", "reader"), 3)
    assert [bytes(f.payload) for f in got] == [b"one", b"two", b"three"]
    # Stored back to back: consecutive stream sequences.
    assert [f.sequence for f in got] == [got[0].sequence + k for k in range(3)]
    assert all(f.sender == "writer" and f.pid == pid and f.uid == os.getuid() and f.gid == os.getgid() for f in got)
    assert all(not f.private and f.dropped == 0 for f in got)
    assert before - 5_000_000_000 < got[0].time_ns <= got[2].time_ns < time.time_ns() + 5_000_000_000


def test_line_messages_cut_on_the_writers_node_arrive_whole_on_the_other(nodes):
    a, b = nodes
    with open(os.path.join(a, "ctl"), "w") as f:
        f.write("set message=line")
    assert wait_until(lambda: "message=line" in open(os.path.join(b, "status")).readline())
    open(os.path.join(a, "lines"), "w").close()
    assert wait_until(lambda: member_line(b, "lines") is not None)
    with open(os.path.join(b, "send"), "wb", buffering=0) as f:
        f.write(b"first\nsec")
        f.write(b"ond\nthird\n")
    assert read_n(os.path.join(a, "lines"), 3) == [b"first\n", b"second\n", b"third\n"]


def test_a_members_filter_applies_on_its_node_to_writes_from_anywhere(nodes):
    a, b = nodes
    open(os.path.join(b, "tx"), "w").close()
    with open(os.path.join(b, "ctl"), "w") as f:
        f.write("member tx subscribe=tx.>")
    open(os.path.join(a, "all"), "w").close()
    assert wait_until(lambda: member_line(a, "tx") is not None and member_line(b, "all") is not None)
    assert wait_until(lambda: member_line(a, "tx")["subscribe"] == "tx.>")
    with open(os.path.join(a, "send"), "wb", buffering=0) as f:
        for m in (b"tx.1 a", b"rx.1 b", b"tx_trytes c", b"tx.2 d"):
            f.write(m)
    assert read_n(os.path.join(b, "tx"), 2) == [b"tx.1 a", b"tx.2 d"]
    assert read_n(os.path.join(a, "all"), 4) == [b"tx.1 a", b"rx.1 b", b"tx_trytes c", b"tx.2 d"]


def test_peers_of_a_local_member_work_through_the_stream(nodes):
    a, b = nodes
    client = os.path.join(b, "client")
    open(client, "w").close()
    with open(os.path.join(b, "ctl"), "w") as f:
        f.write("member client send_to_peer=1")
    open(os.path.join(a, "other"), "w").close()
    assert wait_until(lambda: member_line(b, "other") is not None)
    with open(client, "wb", buffering=0) as f:
        f.write(b"request")
    # The peer queue lives on the member's node, b.
    assert read_n(os.path.join(b, "peers", "client"), 1) == [b"request"]
    assert read_n(os.path.join(a, "other"), 1) == [b"request"]
    # A private answer: to client alone, marked private.
    with open(os.path.join(b, "peers", "client"), "wb", buffering=0) as f:
        f.write(b"answer")
    got = frames(os.path.join(b, "frames", "client"), 1)
    assert [bytes(f.payload) for f in got] == [b"answer"] and got[0].private and got[0].sender is None
    assert frames(os.path.join(a, "frames", "other"), 1, timeout=1.0) == []
