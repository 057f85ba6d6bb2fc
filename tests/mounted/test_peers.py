"""Connected groups (docs/contract.md, "Connected groups: peers"): G/peers/,
a peer file per member, send_to_peer, private messages, and what `rm` does
to them; owners and modes against a second user (setpriv, as
test_permissions.py does).

G/peers/NAME reads what member NAME sent while send_to_peer=1 (a recipient
like any other) and writes private messages to NAME alone."""

from __future__ import annotations

import errno
import os
import select
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import NOBODY, BlockOp, Call, Group, expect_errno, try_read, try_write

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
import mcastfs  # noqa: E402


def peer(group, name: str) -> str:
    return group.p(f"peers/{name}")


def open_peer(group, name: str, flags: int = os.O_RDWR) -> int:
    return os.open(peer(group, name), flags | os.O_NONBLOCK)


def answer(group, name: str, data: bytes, nonblock: bool = True) -> int:
    """One write(2) on G/peers/NAME from a fresh open file."""
    fd = os.open(peer(group, name), os.O_WRONLY | (os.O_NONBLOCK if nonblock else 0))
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def take_peer(group, name: str) -> list[bytes]:
    fd = open_peer(group, name, os.O_RDONLY)
    try:
        out = []
        while (m := try_read(fd)) is not None:
            if m == b"":
                break
            out.append(m)
        return out
    finally:
        os.close(fd)


def frames_of(group, name: str) -> list:
    fd = os.open(group.p(f"frames/{name}"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        return mcastfs.read_frames(fd)
    finally:
        os.close(fd)


# --- the directory and its files ---------------------------------------------------


def test_peers_is_made_with_the_group_and_is_listed(new_group):
    g = new_group(mode=0o750)
    assert sorted(os.listdir(g.path)) == ["ctl", "frames", "peers", "send", "status"]
    st = os.stat(g.p("peers"))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert os.listdir(g.p("peers")) == []
    # G has . and .., frames/.. and peers/..
    assert os.stat(g.path).st_nlink == 4


def test_a_peer_file_comes_and_goes_with_its_member(group):
    group.member("alice")
    group.member("bob")
    assert sorted(os.listdir(group.p("peers"))) == ["alice", "bob"]
    st = os.stat(peer(group, "alice"))
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o600
    os.unlink(group.p("alice"))
    assert os.listdir(group.p("peers")) == ["bob"]
    expect_errno(errno.ENOENT, os.open, peer(group, "alice"), os.O_RDONLY)
    # A new member of the same name has a new peer file.
    group.member("alice")
    assert os.stat(peer(group, "alice")).st_ino != st.st_ino


def test_nothing_is_made_removed_or_renamed_in_peers(group):
    group.member("alice")
    expect_errno(errno.EPERM, os.open, peer(group, "new"), os.O_CREAT | os.O_WRONLY, 0o644)
    expect_errno(errno.EPERM, os.open, peer(group, "new"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    expect_errno(errno.EPERM, os.mknod, peer(group, "fifo"), stat.S_IFIFO | 0o644)
    expect_errno(errno.EPERM, os.unlink, peer(group, "alice"))
    expect_errno(errno.EPERM, os.mkdir, peer(group, "d"))
    expect_errno(errno.EPERM, os.symlink, "alice", peer(group, "link"))
    expect_errno((errno.EPERM, errno.EINVAL), os.link, peer(group, "alice"), peer(group, "hard"))
    expect_errno((errno.EPERM, errno.EINVAL), os.rename, peer(group, "alice"), peer(group, "carol"))
    expect_errno((errno.EPERM, errno.EINVAL), os.rename, peer(group, "alice"), group.p("carol"))
    expect_errno(errno.EPERM, os.rmdir, group.p("peers"))
    expect_errno(errno.EISDIR, os.unlink, group.p("peers"))
    expect_errno((errno.EPERM, errno.EINVAL), os.rename, group.p("peers"), group.p("others"))
    assert os.listdir(group.p("peers")) == ["alice"]
    # truncation is accepted and ignored, as on every file in G: `> G/peers/NAME` works.
    os.truncate(peer(group, "alice"), 0)
    expect_errno(errno.EINVAL, os.truncate, peer(group, "alice"), 5)


def test_peers_is_a_reserved_name(group):
    expect_errno(errno.EEXIST, os.open, group.p("peers"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    expect_errno(errno.EISDIR, os.open, group.p("peers"), os.O_CREAT | os.O_WRONLY, 0o644)
    expect_errno(errno.EEXIST, os.mknod, group.p("peers"), stat.S_IFREG | 0o644)
    assert "peers" not in group.status().members
    # A group may be called peers; the framed view has no peers/ of its own.
    os.mkdir(os.path.join(group.root, "peers"))
    os.rmdir(os.path.join(group.root, "peers"))
    expect_errno(errno.ENOENT, os.stat, group.p("frames/peers"))


def test_rmdir_takes_peers_with_the_group(new_group):
    g = new_group()
    g.member("m")
    expect_errno(errno.ENOTEMPTY, os.rmdir, g.path)
    os.unlink(g.p("m"))
    os.rmdir(g.path)
    assert not os.path.exists(g.path)


# --- reading a peer ----------------------------------------------------------------


def test_a_peer_reads_what_its_member_sends_while_send_to_peer_is_on(group):
    group.member("alice")
    group.member("bob")
    group.send_as("alice", b"before")
    assert take_peer(group, "alice") == []
    group.configure("alice", send_to_peer=1)
    group.send_as("alice", b"request 1")
    group.send_as("bob", b"from bob")
    group.send(b"anonymous")
    group.send_as("alice", b"request 2")
    assert take_peer(group, "alice") == [b"request 1", b"request 2"]
    assert take_peer(group, "bob") == []
    # ... and bob got alice's messages as well: the peer is one more recipient.
    assert group.take("bob") == [b"before", b"request 1", b"anonymous", b"request 2"]


def test_the_peer_gets_the_same_message_with_the_same_sequence(group):
    group.member("alice", send_to_peer=1)
    group.member("bob")
    group.send_as("alice", b"hello")
    at_bob = frames_of(group, "bob")
    fd = open_peer(group, "alice", os.O_RDONLY)
    try:
        assert os.read(fd, 65536) == b"hello"
    finally:
        os.close(fd)
    assert [f.sequence for f in at_bob] == [1] and at_bob[0].sender == "alice" and not at_bob[0].private


def test_the_group_default_applies_to_members_that_join_later(group):
    group.member("before")
    group.set(send_to_peer=1)
    group.member("after")
    status = group.status()
    assert status.group["send_to_peer"] == 1
    assert status.member("before")["send_to_peer"] == 0 and status.member("after")["send_to_peer"] == 1
    group.send_as("after", b"x")
    group.send_as("before", b"y")
    assert take_peer(group, "after") == [b"x"] and take_peer(group, "before") == []


def test_frames_written_as_a_member_reach_its_peer(group):
    group.member("alice", send_to_peer=1)
    fd = os.open(group.p("frames/alice"), os.O_WRONLY)
    try:
        mcastfs.send_batch(fd, [b"one", b"two", b"three"])
    finally:
        os.close(fd)
    assert take_peer(group, "alice") == [b"one", b"two", b"three"]


def test_peer_reads_block_split_and_are_nonblocking_with_o_nonblock(group):
    group.member("alice", send_to_peer=1)
    fd = os.open(peer(group, "alice"), os.O_RDONLY)
    try:
        reader = Call(os.read, fd, 4)
        reader.wait_blocked()
        group.send_as("alice", b"a long message")
        assert reader.result() == b"a lo"
        assert os.read(fd, 100) == b"ng message"
        os.set_blocking(fd, False)
        expect_errno(errno.EAGAIN, os.read, fd, 100)
    finally:
        os.close(fd)


def test_peer_poll_and_edge_triggered_epoll(group):
    group.member("alice", send_to_peer=1)
    fd = open_peer(group, "alice", os.O_RDONLY)
    ep = select.epoll()
    try:
        ep.register(fd, select.EPOLLIN | select.EPOLLET)
        assert ep.poll(0.05) == []
        for i in range(3):
            group.send_as("alice", f"m{i}".encode())
            # a new event for every message, as a pipe gives
            assert ep.poll(2) == [(fd, select.EPOLLIN)], f"message {i}"
        assert [os.read(fd, 100) for _ in range(3)] == [b"m0", b"m1", b"m2"]
        os.unlink(group.p("alice"))
        assert ep.poll(2) == [(fd, select.EPOLLIN)]
        assert os.read(fd, 100) == b""
    finally:
        ep.close()
        os.close(fd)


# --- the peer holds its member's writes back -----------------------------------------


def test_a_full_peer_holds_its_members_writes_back_and_only_those(group):
    group.member("alice", capacity=2, send_to_peer=1)
    group.member("bob")
    group.send_as("alice", b"1")
    group.send_as("alice", b"2")
    assert group.member_status("alice")["peer_full"] == 1
    assert group.member_status("alice")["peer_queued"] == 2
    fd = group.open_nb("alice", os.O_WRONLY)
    try:
        assert try_write(fd, b"3") is None  # EAGAIN: nobody got it
        p = select.poll()
        p.register(fd, select.POLLOUT)
        assert p.poll(0) == []
    finally:
        os.close(fd)
    # Others still send; their messages do not go to alice's peer.
    group.send_as("bob", b"from bob")
    group.send(b"anonymous")
    assert group.take("bob") == [b"1", b"2", b"anonymous"]
    # A blocking write waits until the peer is read, then goes to everyone at once.
    fd = group.open("alice", os.O_WRONLY)
    try:
        writer = Call(os.write, fd, b"3")
        writer.wait_blocked()
        assert group.status().group["blocked_writers"] == 1
        assert group.take("bob") == []
        pfd = open_peer(group, "alice", os.O_RDONLY)
        try:
            assert os.read(pfd, 100) == b"1"
            assert writer.result() == 1
            assert [os.read(pfd, 100) for _ in range(2)] == [b"2", b"3"]
        finally:
            os.close(pfd)
    finally:
        os.close(fd)
    assert group.take("bob") == [b"3"]


def test_the_peer_has_its_members_bounds_and_never_drops(group):
    group.member("alice", capacity=1, drop_when_full=1, send_to_peer=1)
    group.send_as("alice", b"1")
    expect_errno(errno.EAGAIN, group.send_as, "alice", b"2")
    assert group.member_status("alice")["dropped"] == 0
    group.configure("alice", capacity=2)
    group.send_as("alice", b"2")
    expect_errno(errno.EAGAIN, group.send_as, "alice", b"3")
    group.configure("alice", queue_bytes=1)
    assert take_peer(group, "alice") == [b"1", b"2"]
    group.send_as("alice", b"two bytes and more")
    expect_errno(errno.EAGAIN, group.send_as, "alice", b"3")


def test_rm_releases_a_write_held_back_by_the_peer(group):
    group.member("alice", capacity=1, send_to_peer=1)
    group.send_as("alice", b"1")
    fd = group.open("alice", os.O_WRONLY)
    try:
        writer = Call(os.write, fd, b"2")
        writer.wait_blocked()
        os.unlink(group.p("alice"))
        assert writer.errno() == errno.EPIPE
    finally:
        os.close(fd)


# --- private messages ------------------------------------------------------------------


def test_a_write_on_a_peer_file_goes_to_its_member_alone(group):
    group.member("alice")
    group.member("bob")
    group.member("all", loopback=1)
    assert answer(group, "alice", b"for alice only") == 14
    assert group.take("alice") == [b"for alice only"]
    assert group.take("bob") == [] and group.take("all") == []
    assert take_peer(group, "alice") == []


def test_a_private_message_is_numbered_and_marked_private_in_frames(group):
    group.member("alice")
    group.send(b"to all")
    answer(group, "alice", b"private")
    group.send(b"to all again")
    frames = frames_of(group, "alice")
    assert [f.payload for f in frames] == [b"to all", b"private", b"to all again"]
    assert [f.sequence for f in frames] == [1, 2, 3]
    assert [f.private for f in frames] == [False, True, False]
    assert frames[1].flags == 1 and frames[1].sender is None
    # the writer's credentials, as for any message
    assert (frames[1].pid, frames[1].uid, frames[1].gid) == (os.getpid(), os.getuid(), os.getgid())
    assert group.status().group["sent"] == 3
    # On the wire: name_size 0 and header_size 40, flags bit 0.
    answer(group, "alice", b"raw")
    fd = os.open(group.p("frames/alice"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    assert (int.from_bytes(raw[0:4], "little"), int.from_bytes(raw[4:6], "little"), raw[6], raw[7]) == (3, 40, 0, 1)
    assert raw[40:43] == b"raw"


def test_private_messages_are_not_refused_by_send_members_but_by_max_message(group):
    group.member("alice")
    group.set(send="members", max_message=4)
    expect_errno(errno.EPERM, group.send, b"anon")
    assert answer(group, "alice", b"ok") == 2
    expect_errno(errno.EMSGSIZE, answer, group, "alice", b"too long")
    assert group.take("alice") == [b"ok"]


def test_a_private_write_waits_while_its_member_is_full(group):
    group.member("alice", capacity=1)
    answer(group, "alice", b"1")
    expect_errno(errno.EAGAIN, answer, group, "alice", b"x")
    fd = os.open(peer(group, "alice"), os.O_WRONLY)
    try:
        p = select.poll()
        p.register(fd, select.POLLOUT)
        assert p.poll(0) == []
        writer = Call(os.write, fd, b"2")
        writer.wait_blocked()
        # It waits in alice's line, not the group's.
        assert group.status().group["blocked_writers"] == 0
        assert group.take_one("alice") == b"1"
        assert writer.result() == 1
        assert group.take("alice") == [b"2"]
        assert p.poll(2000) == [(fd, select.POLLOUT)]
    finally:
        os.close(fd)


def test_a_private_writer_gets_an_edge_each_time_its_member_has_room_again(group):
    group.member("alice", capacity=1)
    fd = open_peer(group, "alice", os.O_WRONLY)
    ep = select.epoll()
    try:
        ep.register(fd, select.EPOLLOUT | select.EPOLLET)
        assert ep.poll(1) == [(fd, select.EPOLLOUT)]
        for i in range(3):
            assert os.write(fd, f"a{i}".encode()) == 2
            assert try_write(fd, b"x") is None  # EAGAIN: alice is full
            assert ep.poll(0.05) == []
            assert group.take_one("alice") == f"a{i}".encode()
            # room again: a new event, as a pipe gives
            assert ep.poll(2) == [(fd, select.EPOLLOUT)], f"round {i}"
    finally:
        ep.close()
        os.close(fd)


def test_a_signal_interrupts_blocked_peer_reads_and_private_writes(group, cbin):
    group.member("alice", capacity=1, send_to_peer=1)
    answer(group, "alice", b"fill")
    reader = BlockOp(cbin["blockop"], "read", peer(group, "alice"), timer_ms=200)
    writer = BlockOp(cbin["blockop"], "write", peer(group, "alice"), data="interrupted", timer_ms=200)
    try:
        read, written = reader.result(5.0), writer.result(5.0)
    finally:
        reader.close()
        writer.close()
    assert (read["ret"], read["errno"]) == (-1, errno.EINTR)
    assert (written["ret"], written["errno"]) == (-1, errno.EINTR)
    # The interrupted write delivered nothing; the interrupted read took nothing.
    assert group.take("alice") == [b"fill"]
    group.send_as("alice", b"kept")
    assert take_peer(group, "alice") == [b"kept"]


def test_a_private_write_does_not_wait_for_the_groups_blocked_writes(group):
    group.member("slow", capacity=1)
    group.member("alice")
    group.fill("slow")
    fd = group.open("send", os.O_WRONLY)
    try:
        writer = Call(os.write, fd, b"waits for slow")
        writer.wait_blocked()
        assert answer(group, "alice", b"now") == 3
        assert group.take("alice") == [b"fill-slow-0", b"now"]
        assert not writer.done()
        group.take("slow")
        assert writer.result() == 14
    finally:
        os.close(fd)


def test_a_private_message_to_a_full_drop_when_full_member_is_dropped(group):
    group.member("alice", capacity=1, drop_when_full=1)
    answer(group, "alice", b"1")
    assert answer(group, "alice", b"2") == 1  # accepted, and missed
    assert group.member_status("alice")["dropped"] == 1
    assert group.take("alice") == [b"1"]
    answer(group, "alice", b"3")
    frames = frames_of(group, "alice")
    assert [(f.payload, f.dropped, f.private) for f in frames] == [(b"3", 1, True)]


def test_private_messages_in_line_mode_are_one_per_line(group):
    group.member("alice")
    group.set(message="line")
    fd = os.open(peer(group, "alice"), os.O_WRONLY)
    try:
        assert os.write(fd, b"one\ntwo\nha") == 10
        assert os.write(fd, b"lf\n") == 3
        assert os.write(fd, b"tail") == 4
    finally:
        os.close(fd)
    frames = frames_of(group, "alice")
    assert [(f.payload, f.private) for f in frames] == [(b"one\n", True), (b"two\n", True), (b"half\n", True),
                                                         (b"tail", True)]


def test_shell_redirection_answers_a_member(group):
    group.member("alice")
    res = subprocess.run(["sh", "-c", f"echo pong > '{peer(group, 'alice')}'"], capture_output=True, text=True,
                         timeout=10)
    assert res.returncode == 0, res.stderr
    frames = frames_of(group, "alice")
    assert [(f.payload, f.private) for f in frames] == [(b"pong\n", True)]


# --- rm -----------------------------------------------------------------------------------


def test_after_rm_an_open_peer_reads_what_is_queued_then_end_of_file(group):
    group.member("alice", send_to_peer=1)
    group.send_as("alice", b"last words")
    fd = open_peer(group, "alice")
    try:
        os.unlink(group.p("alice"))
        assert os.read(fd, 100) == b"last words"
        assert os.read(fd, 100) == b""
        expect_errno(errno.EPIPE, os.write, fd, b"too late")
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        assert dict(p.poll(0))[fd] & (select.POLLIN | select.POLLOUT) == select.POLLIN | select.POLLOUT
    finally:
        os.close(fd)
    expect_errno(errno.ENOENT, os.open, peer(group, "alice"), os.O_RDONLY)


def test_rm_ends_a_blocked_peer_read_and_fails_a_blocked_private_write(group):
    group.member("alice", capacity=1)
    answer(group, "alice", b"fill")
    rfd = os.open(peer(group, "alice"), os.O_RDONLY)
    wfd = os.open(peer(group, "alice"), os.O_WRONLY)
    try:
        reader = Call(os.read, rfd, 100)
        writer = Call(os.write, wfd, b"waits")
        reader.wait_blocked()
        writer.wait_blocked()
        os.unlink(group.p("alice"))
        assert reader.result() == b""
        assert writer.errno() == errno.EPIPE
    finally:
        os.close(rfd)
        os.close(wfd)


# --- status -------------------------------------------------------------------------------


def test_status_keys_come_after_the_v1_keys(group):
    group.member("alice", capacity=2, send_to_peer=1)
    group.send_as("alice", b"x")
    status = group.status()
    # Appended: a parser of the keys that were there before keeps working.
    assert status.group_order.index("send_to_peer") > status.group_order.index("message")
    order = status.member_order["alice"]
    assert order[:9] == ["queued", "queued_bytes", "capacity", "queue_bytes", "loopback", "drop_when_full", "full",
                         "delivered", "dropped"]
    at = order.index("send_to_peer")
    assert at >= 9 and order[at:at + 3] == ["send_to_peer", "peer_queued", "peer_full"]
    alice = status.member("alice")
    assert (alice["send_to_peer"], alice["peer_queued"], alice["peer_full"]) == (1, 1, 0)
    for bad in ("member alice send_to_peer=2", "set send_to_peer=on", "member nobody send_to_peer=1"):
        expect_errno(errno.EINVAL, group.ctl, bad)


# --- owners and modes, against another user ---------------------------------------------------


@pytest.fixture(scope="module")
def shared(module_mount_factory):
    """A mount with -o allow_other."""
    return module_mount_factory(options="allow_other")


_serial = iter(range(1, 1_000_000))


@pytest.fixture
def rgroup(shared, request):
    """A group of root's in the shared mount, with the mode given."""

    def make(mode=0o755):
        name = f"{request.node.name[:60]}-{next(_serial)}"
        old = os.umask(0)
        try:
            os.mkdir(os.path.join(shared.path, name), mode)
        finally:
            os.umask(old)
        return Group(shared.path, name)

    return make


def ok(res):
    assert res.ok, f"expected success, got {res}"
    return res


def denied(res, codes=(errno.EACCES,)):
    assert not res.ok, f"expected {codes}, got success: {res.out}"
    assert res.errno in codes, f"expected {[errno.errorcode[c] for c in codes]}, got {res}"


def test_peer_files_belong_to_the_group_owner_not_the_member(rgroup, as_nobody):
    g = rgroup(0o777)
    ok(as_nobody("create", g.p("client"), "666"))
    member, p = os.stat(g.p("client")), os.stat(peer(g, "client"))
    assert (member.st_uid, p.st_uid, p.st_gid) == (NOBODY, 0, 0)
    assert stat.S_IMODE(os.stat(g.p("peers")).st_mode) == 0o700 and stat.S_IMODE(p.st_mode) == 0o600
    g.configure("client", send_to_peer=1)
    ok(as_nobody("write", g.p("client"), "a request"))
    # The member's owner can neither list peers/ nor read or answer its peer.
    denied(as_nobody("ls", g.p("peers")))
    denied(as_nobody("read", peer(g, "client")))
    denied(as_nobody("write", peer(g, "client"), "forged answer"))
    assert take_peer(g, "client") == [b"a request"], "the denied reader took nothing"
    assert g.take("client") == [], "the denied writer sent nothing"


def test_chmod_and_chown_of_peers_and_peer_files_are_enforced(rgroup, as_nobody):
    g = rgroup(0o755)
    g.member("client", send_to_peer=1)
    g.send_as("client", b"r1")
    os.chmod(g.p("peers"), 0o755)
    ok(as_nobody("ls", g.p("peers")))
    denied(as_nobody("read", peer(g, "client")))
    # A peer file's mode is its own, not its member's (and the reverse).
    os.chmod(peer(g, "client"), 0o604)
    assert stat.S_IMODE(os.stat(g.p("client")).st_mode) == 0o644
    res = ok(as_nobody("read", peer(g, "client")))
    assert bytes.fromhex(res.out) == b"r1"
    denied(as_nobody("write", peer(g, "client"), "x"))
    # Given away, the other user serves it: reads and answers.
    os.chown(peer(g, "client"), NOBODY, NOBODY)
    os.chmod(peer(g, "client"), 0o600)
    ok(as_nobody("write", peer(g, "client"), "answered by nobody"))
    assert g.take("client") == [b"answered by nobody"]
    ok(as_nobody("chmod", peer(g, "client"), "640"))
    denied(as_nobody("chown", peer(g, "client"), "0", "0"), (errno.EPERM,))
    denied(as_nobody("chmod", g.p("peers"), "777"), (errno.EPERM,))


def test_a_peer_file_takes_the_mode_of_peers_when_its_member_joins(rgroup, as_nobody):
    g = rgroup(0o750)
    assert stat.S_IMODE(os.stat(g.p("peers")).st_mode) == 0o700
    os.chmod(g.p("peers"), 0o500)
    g.member("a")
    assert stat.S_IMODE(os.stat(peer(g, "a")).st_mode) == 0o400
    os.chmod(g.p("peers"), 0o700)
    g.member("b")
    assert stat.S_IMODE(os.stat(peer(g, "a")).st_mode) == 0o400
    assert stat.S_IMODE(os.stat(peer(g, "b")).st_mode) == 0o600
    # Root passes mode checks, as everywhere: the kernel decides.
    assert answer(g, "a", b"root may") == 8


def test_a_group_of_nobodys_has_nobodys_peers(shared, as_nobody):
    os.chmod(shared.path, 0o1777)
    path = os.path.join(shared.path, "nobodys-connected-group")
    try:
        ok(as_nobody("mkdir", path, "755", umask="022"))
        os.close(os.open(os.path.join(path, "by-root"), os.O_CREAT | os.O_WRONLY, 0o644))
        for entry in ("peers", "peers/by-root"):
            st = os.stat(os.path.join(path, entry))
            assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), entry
        ok(as_nobody("write", os.path.join(path, "peers/by-root"), "hello root"))
        fd = os.open(os.path.join(path, "by-root"), os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert os.read(fd, 100) == b"hello root"
        finally:
            os.close(fd)
    finally:
        if os.path.exists(os.path.join(path, "by-root")):
            os.unlink(os.path.join(path, "by-root"))
        os.rmdir(path)
        os.chmod(shared.path, 0o755)
