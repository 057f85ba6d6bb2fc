"""A group directory (docs/contract.md, "A group directory" and "Members").

send (write-only), ctl (write-only), status (read-only) and one file per
member. The group's owner owns send, ctl and status; their modes come from the
directory's mode when it is made: send = dir & 0222, status = dir & 0444,
ctl = dir & 0200. chmod and chown work on every entry. Inside G, mkdir,
symlink, link and rename fail with EPERM or EINVAL and change nothing;
truncate / O_TRUNC on a member or send is accepted and ignored; a member stats
as a regular file of size 0.

(Enforcement of modes against another user is in test_permissions.py.)
"""

import errno
import os
import stat
import subprocess

import pytest

from helpers import FIXED_FILES, NOBODY, RESERVED, expect_errno, sh

REFUSED = (errno.EPERM, errno.EINVAL)


def mode_of(path):
    return os.stat(path).st_mode & 0o7777


def test_new_group_holds_send_ctl_status(group):
    assert sorted(os.listdir(group.path)) == sorted(RESERVED)


def test_readdir_lists_members_too(group):
    group.member("alice")
    group.member("bob")
    assert sorted(os.listdir(group.path)) == sorted(RESERVED + ("alice", "bob"))
    res = subprocess.run(["ls", "-1", group.path], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0
    assert sorted(res.stdout.split()) == sorted(RESERVED + ("alice", "bob"))
    os.unlink(group.p("alice"))
    assert sorted(os.listdir(group.path)) == sorted(RESERVED + ("bob",))


def test_readdir_many_members(group):
    names = [f"m{i:03d}" for i in range(300)]
    for n in names:
        group.member(n)
    assert sorted(os.listdir(group.path)) == sorted(list(RESERVED) + names)


@pytest.mark.parametrize(
    "dir_mode,send,status,ctl",
    [
        (0o755, 0o200, 0o444, 0o200),
        (0o777, 0o222, 0o444, 0o200),
        (0o700, 0o200, 0o400, 0o200),
        (0o750, 0o200, 0o440, 0o200),
        (0o711, 0o200, 0o400, 0o200),
        (0o555, 0o000, 0o444, 0o000),
        (0o333, 0o222, 0o000, 0o200),
        (0o1777, 0o222, 0o444, 0o200),
    ],
    ids=lambda v: f"{v:o}",
)
def test_modes_of_send_ctl_status_from_dir_mode(mount, request, dir_mode, send, status, ctl):
    name = f"modes-{dir_mode:o}"
    path = os.path.join(mount.path, name)
    old = os.umask(0)
    try:
        os.mkdir(path, dir_mode)
    finally:
        os.umask(old)
    try:
        assert mode_of(path) == dir_mode
        assert mode_of(os.path.join(path, "send")) == send
        assert mode_of(os.path.join(path, "status")) == status
        assert mode_of(os.path.join(path, "ctl")) == ctl
        for f in FIXED_FILES:
            st = os.stat(os.path.join(path, f))
            assert stat.S_ISREG(st.st_mode), f"{f} is not a regular file"
            assert st.st_uid == os.getuid() and st.st_gid == os.getgid()
    finally:
        os.chmod(path, 0o755)
        os.rmdir(path)


def test_modes_use_dir_mode_after_umask(mount):
    path = os.path.join(mount.path, f"umasked-{os.getpid()}")
    old = os.umask(0o027)
    try:
        os.mkdir(path, 0o777)  # -> 0750
    finally:
        os.umask(old)
    try:
        assert mode_of(path) == 0o750
        assert mode_of(os.path.join(path, "send")) == 0o200
        assert mode_of(os.path.join(path, "status")) == 0o440
        assert mode_of(os.path.join(path, "ctl")) == 0o200
    finally:
        os.rmdir(path)


def test_modes_fixed_when_dir_is_made(group):
    """Later chmod of the directory does not change the files' modes."""
    os.chmod(group.path, 0o777)
    assert mode_of(group.p("send")) == 0o200
    assert mode_of(group.p("status")) == 0o444


def test_chmod_every_entry(group):
    group.member("m", mode=0o644)
    for name, mode in (("send", 0o222), ("status", 0o400), ("ctl", 0o600), ("m", 0o600)):
        os.chmod(group.p(name), mode)
        assert mode_of(group.p(name)) == mode, name
    os.chmod(group.path, 0o700)
    assert mode_of(group.path) == 0o700
    os.chmod(group.path, 0o755)


def test_chown_every_entry(group):
    group.member("m")
    for name in ("send", "status", "ctl", "m", ""):
        os.chown(group.p(name), NOBODY, NOBODY)
        st = os.stat(group.p(name))
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), name
        os.chown(group.p(name), -1, 0)
        assert os.stat(group.p(name)).st_gid == 0
        assert os.stat(group.p(name)).st_uid == NOBODY


def test_chmod_chown_keep_the_member_working(group):
    group.member("a")
    group.member("b")
    os.chmod(group.p("a"), 0o600)
    os.chown(group.p("a"), NOBODY, NOBODY)
    group.send(b"still here")
    assert group.take("a") == [b"still here"]
    assert group.take("b") == [b"still here"]


# --- what cannot be made inside a group ---------------------------------------


@pytest.fixture
def populated(group):
    group.member("a")
    group.member("b")
    before = (sorted(os.listdir(group.path)), sorted(group.status().members))
    yield group
    assert (sorted(os.listdir(group.path)), sorted(group.status().members)) == before


def test_mkdir_inside_group_refused(populated):
    expect_errno(REFUSED, os.mkdir, populated.p("sub"))


def test_symlink_inside_group_refused(populated):
    expect_errno(REFUSED, os.symlink, "a", populated.p("link"))


def test_hard_link_inside_group_refused(populated):
    expect_errno(REFUSED, os.link, populated.p("a"), populated.p("c"))
    expect_errno(REFUSED, os.link, populated.p("send"), populated.p("c"))


def test_rename_member_refused(populated):
    expect_errno(REFUSED, os.rename, populated.p("a"), populated.p("c"))
    expect_errno(REFUSED, os.rename, populated.p("a"), populated.p("b"))
    expect_errno(REFUSED, os.rename, populated.p("send"), populated.p("c"))
    expect_errno(REFUSED, os.rename, populated.p("a"), populated.p("status"))


def test_rename_member_into_other_group_refused(populated, new_group):
    other = new_group()
    expect_errno(REFUSED, os.rename, populated.p("a"), other.p("a"))
    assert other.status().members == {}


def test_mv_member_refused(populated):
    res = subprocess.run(["mv", populated.p("a"), populated.p("z")], capture_output=True, timeout=10)
    assert res.returncode != 0


def test_send_ctl_status_cannot_be_removed(populated):
    """Not in the contract's tables; a careful filesystem keeps its control files."""
    for name in RESERVED:
        with pytest.raises(OSError):
            os.unlink(populated.p(name))
        assert os.path.exists(populated.p(name))


# --- truncate and O_TRUNC -----------------------------------------------------------


def test_truncate_member_and_send_accepted_queue_untouched(group):
    group.member("a")
    group.member("b")
    group.send(b"one")
    group.send(b"two")
    os.truncate(group.p("a"), 0)
    os.truncate(group.p("send"), 0)
    fd = os.open(group.p("a"), os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    fd = os.open(group.p("send"), os.O_WRONLY | os.O_TRUNC)
    os.ftruncate(fd, 0)
    os.close(fd)
    st = group.member_status("a")
    assert st["queued"] == 2 and st["queued_bytes"] == 6
    assert group.take("a") == [b"one", b"two"]
    assert group.take("b") == [b"one", b"two"]


def test_echo_redirect_to_member_sends_as_member(group):
    group.member("a")
    group.member("b")
    res = sh(f"echo hi > '{group.p('a')}'")
    assert res.returncode == 0, res.stderr
    assert group.take("b") == [b"hi\n"]
    assert group.take("a") == []  # no loopback


def test_echo_redirect_to_send_broadcasts(group):
    group.member("a")
    group.member("b")
    res = sh(f"echo hello > '{group.p('send')}'")
    assert res.returncode == 0, res.stderr
    assert group.take("a") == [b"hello\n"]
    assert group.take("b") == [b"hello\n"]


def test_printf_append_redirect_works_too(group):
    group.member("a")
    res = sh(f"printf 'x' >> '{group.p('send')}'")
    assert res.returncode == 0, res.stderr
    assert group.take("a") == [b"x"]


# --- stat ---------------------------------------------------------------------


def test_member_is_regular_file_of_size_zero(group):
    group.member("a")
    st = os.stat(group.p("a"))
    assert stat.S_ISREG(st.st_mode)
    assert st.st_size == 0
    group.send(b"x" * 1000)
    group.send(b"y" * 1000)
    st = os.stat(group.p("a"))
    assert stat.S_ISREG(st.st_mode)
    assert st.st_size == 0, "size stays 0 while messages are queued"
    fd = group.open("a")
    try:
        assert os.fstat(fd).st_size == 0
    finally:
        os.close(fd)
    res = subprocess.run(["stat", "-c", "%F %s", group.p("a")], capture_output=True, text=True, timeout=10)
    assert res.stdout.strip() in ("regular empty file 0", "regular file 0")
