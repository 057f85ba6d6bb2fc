"""Limits per user (docs/contract.md, "Limits per user"): user_groups,
user_members and user_bytes, per uid, root's included; EDQUOT past the counts;
a member whose owner is at user_bytes is full (a writer waits, a
drop-when-full member drops); status and .metrics show each owner's use; and
one user flooding a shared mount cannot grow the daemon without bound nor
stop another user's traffic.
"""

import errno
import os
import subprocess
import threading
import time

import pytest

from helpers import Call, Group, read_file, read_status, wait_for

EDQUOT = errno.EDQUOT
NOBODY = 65534


def ok(res):
    assert res.ok, f"expected success, got {res}"
    return res


def mkgroup(root, name, mode=0o777):
    old = os.umask(0)
    try:
        os.mkdir(os.path.join(root, name), mode)
    finally:
        os.umask(old)
    return Group(root, name)


def vmrss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_mkdir_past_user_groups_is_edquot_for_root_and_for_another_user(mount_factory, as_nobody):
    m = mount_factory(options="allow_other,user_groups=2")
    os.chmod(m.path, 0o1777)
    for name in ("a", "b"):
        os.mkdir(os.path.join(m.path, name))
    with pytest.raises(OSError) as e:
        os.mkdir(os.path.join(m.path, "c"))
    assert e.value.errno == EDQUOT
    # nobody has a count of its own.
    ok(as_nobody("mkdir", os.path.join(m.path, "n1"), "755"))
    ok(as_nobody("mkdir", os.path.join(m.path, "n2"), "755"))
    res = as_nobody("mkdir", os.path.join(m.path, "n3"), "755")
    assert not res.ok and res.errno == EDQUOT, res
    # rmdir gives one back.
    os.rmdir(os.path.join(m.path, "a"))
    os.mkdir(os.path.join(m.path, "c"))


def test_member_creation_past_user_members_is_edquot(mount_factory, as_nobody):
    m = mount_factory(options="allow_other,user_members=2")
    g1, g2 = mkgroup(m.path, "g1"), mkgroup(m.path, "g2")
    g1.member("a")
    g2.member("b")  # across groups
    for make in (lambda: g1.member("c"), lambda: os.mknod(g2.p("d"))):
        with pytest.raises(OSError) as e:
            make()
        assert e.value.errno == EDQUOT
    assert not os.path.exists(g1.p("c"))
    ok(as_nobody("create", g1.p("n1"), "644"))
    ok(as_nobody("create", g2.p("n2"), "644"))
    res = as_nobody("create", g1.p("n3"), "644")
    assert not res.ok and res.errno == EDQUOT, res
    os.unlink(g1.p("a"))
    g1.member("c")
    # chown does not move the charge: root's count stays full, nobody's too.
    os.chown(g1.p("c"), NOBODY, NOBODY)
    with pytest.raises(OSError) as e:
        g2.member("e")
    assert e.value.errno == EDQUOT
    users = read_status(g1.path).users
    assert users[0]["members"] == 2 and users[NOBODY]["members"] == 2, users


def test_user_bytes_holds_a_writer_in_another_group_until_a_read_anywhere(mount_factory):
    """quiet's owner (root) is at user_bytes through hog, in another group: a
    send to g2 waits for room at quiet until a read anywhere takes root below
    it. The writer held is another user; root itself, at its limit, is not
    held but refused (EDQUOT: a waiting write is charged to its writer)."""
    m = mount_factory(options="allow_other,user_bytes=100")
    g1, g2 = mkgroup(m.path, "g1"), mkgroup(m.path, "g2")
    os.chmod(g2.path, 0o777)
    g1.member("hog")
    g2.member("quiet")
    assert g1.send(b"x" * 100) == 100
    # quiet's own queue is empty; its owner is at user_bytes.
    with pytest.raises(BlockingIOError):
        g2.send(b"y")
    assert read_status(g2.path).member("quiet")["full"] == 1
    with pytest.raises(OSError) as refused:
        g2.send(b"late", nonblock=False)
    assert refused.value.errno == errno.EDQUOT
    writer = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/usr/bin/python3", "-c",
         "import os, sys; print(os.write(os.open(sys.argv[1], os.O_WRONLY), b'late'))", g2.p("send")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        wait_for(lambda: read_status(g2.path).group["blocked_writers"] == 1, timeout=10, what="a blocked writer")
        # A read in g1 takes root below the limit: the write in g2 goes.
        assert g1.take_one("hog") == b"x" * 100
    finally:
        out, err = writer.communicate(timeout=10)
    assert out.strip() == "4", err
    assert g2.take_one("quiet") == b"late"


def test_a_drop_when_full_member_drops_what_its_owner_has_no_room_for(mount_factory):
    m = mount_factory(options="user_bytes=10")
    g1, g2 = mkgroup(m.path, "g1"), mkgroup(m.path, "g2")
    g1.member("hog")
    g2.member("lossy", drop_when_full=1)
    g1.send(b"z" * 10)
    g2.send(b"gone")
    assert read_status(g2.path).member("lossy")["dropped"] == 1
    g1.take("hog")
    g2.send(b"kept")
    assert g2.take_one("lossy") == b"kept"


def test_status_and_metrics_show_each_owners_use(mount_factory, as_nobody):
    m = mount_factory(options="allow_other")
    os.chmod(m.path, 0o1777)
    g = mkgroup(m.path, "g")
    g.member("mine")
    ok(as_nobody("create", g.p("theirs"), "666"))
    g.send(b"12345")
    users = read_status(g.path).users
    assert users[0] == {"groups": 1, "members": 1, "queued_bytes": 5, "held_bytes": 0}, users
    assert users[NOBODY] == {"groups": 0, "members": 1, "queued_bytes": 5, "held_bytes": 0}, users
    metrics = read_file(os.path.join(m.path, ".metrics")).decode()
    for line in ('mcastfs_user_groups{uid="0"} 1', 'mcastfs_user_members{uid="65534"} 1',
                 'mcastfs_user_queued_bytes{uid="65534"} 5', "# TYPE mcastfs_user_queued_bytes gauge",
                 'mcastfs_user_held_bytes{uid="65534"} 0', "# TYPE mcastfs_user_held_bytes gauge"):
        assert line in metrics, metrics


FLOOD = r"""
import os, sys, time
root, groups, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
chunk = b"f" * 65536
fds = []
for i in range(groups):
    g = os.path.join(root, f"flood{i}")
    os.mkdir(g, 0o755)
    for j in range(4):
        os.close(os.open(os.path.join(g, f"m{j}"), os.O_CREAT | os.O_WRONLY, 0o644))
    with open(os.path.join(g, "ctl"), "w") as ctl:
        ctl.write("member m0 capacity=1000000 queue_bytes=1073741824\n")
    fds.append(os.open(os.path.join(g, "send"), os.O_WRONLY | os.O_NONBLOCK))
accepted = tries = 0
end = time.time() + seconds
while time.time() < end:
    for fd in fds:
        tries += 1
        try:
            accepted += os.write(fd, chunk)
        except BlockingIOError:
            pass
print(accepted, tries)
"""


@pytest.mark.timeout(120)
def test_one_user_flooding_a_shared_mount_stays_bounded_and_others_keep_flowing(mount_factory):
    limit = 16 << 20
    m = mount_factory(options=f"allow_other,user_bytes={limit},capacity=1000000,queue_bytes=1073741824")
    os.chmod(m.path, 0o1777)
    g = mkgroup(m.path, "steady", 0o755)
    g.member("reader")
    rss_before = vmrss_kib(m.pid)
    flood = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", "python3", "-c", FLOOD, m.path, "16", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    # Root's traffic while nobody floods: every message, in order.
    fd = os.open(g.p("reader"), os.O_RDONLY)
    sent = 0
    got = []
    deadline = time.time() + 4
    while time.time() < deadline or flood.poll() is None:
        if sent < 2000:
            g.send(f"m{sent}".encode(), nonblock=False)
            sent += 1
            got.append(os.read(fd, 100))
        else:
            time.sleep(0.05)
    os.close(fd)
    out, err = flood.communicate(timeout=30)
    assert flood.returncode == 0, err
    accepted, tries = map(int, out.split())
    rss_after = vmrss_kib(m.pid)
    queued = read_status(g.path).users[NOBODY]["queued_bytes"]
    print(f"flood: {accepted} bytes accepted of {tries * 65536} tried; nobody queued {queued}; "
          f"VmRSS {rss_before} -> {rss_after} KiB")
    assert got == [f"m{i}".encode() for i in range(sent)]
    # Each of the 16 groups' 4 members gets each message: the limit is in
    # bytes queued, so nobody's total stays within the limit plus less than
    # one message per member.
    assert limit <= queued < limit + 64 * 65536
    # Without the limit the slow members would hold everything accepted.
    assert tries * 65536 > 4 * limit
    assert (rss_after - rss_before) * 1024 < 3 * limit + (32 << 20)


@pytest.mark.parametrize("option", ["user_groups=0", "user_members=0", "user_bytes=0", "user_bytes=x", "user_members="])
def test_a_bad_limit_is_one_line_and_exit_1(mcastfs_bin, tmp_path, option):
    res = subprocess.run([mcastfs_bin, str(tmp_path), "-f", "-o", option], capture_output=True, text=True, timeout=10)
    assert res.returncode == 1, res
    assert len(res.stderr.strip().splitlines()) == 1 and option.split("=")[0] in res.stderr, res.stderr
