"""The root directory (docs/contract.md, "The root directory").

One directory per group; the root is owned by the user who mounted, mode 0755
unless changed with chmod. mkdir makes a group owned by the caller with the
mode given (umask applied); EEXIST for an existing name; rmdir removes an
empty group, ENOTEMPTY otherwise; ls lists the groups; regular files,
symlinks, links, renames and mknod in the root fail with EPERM or EINVAL and
change nothing.
"""

import errno
import os
import stat
import subprocess

import pytest

from helpers import RESERVED, expect_errno, sh

REFUSED = (errno.EPERM, errno.EINVAL)


@pytest.fixture
def umask():
    """Set the process umask for one test: umask(0o022); restored afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(value):
        os.umask(value)

    yield set_umask
    os.umask(old)


def test_root_owned_by_mounting_user_mode_0755(mount):
    st = os.stat(mount.path)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert st.st_uid == os.getuid()
    assert st.st_gid == os.getgid()


@pytest.mark.parametrize(
    "mode,mask,expected",
    [
        (0o777, 0o022, 0o755),
        (0o755, 0o022, 0o755),
        (0o777, 0o077, 0o700),
        (0o750, 0o000, 0o750),
        (0o700, 0o000, 0o700),
        (0o1777, 0o000, 0o1777),
        (0o1777, 0o022, 0o1755),
        (0o711, 0o000, 0o711),
    ],
    ids=lambda v: f"{v:o}" if isinstance(v, int) else v,
)
def test_mkdir_makes_group_owned_by_caller_with_mode(mount, request, umask, mode, mask, expected):
    name = f"mode-{mode:o}-{mask:o}-{os.getpid()}"
    path = os.path.join(mount.path, name)
    umask(mask)
    os.mkdir(path, mode)
    try:
        st = os.stat(path)
        assert stat.S_ISDIR(st.st_mode)
        assert st.st_mode & 0o7777 == expected
        assert st.st_uid == os.getuid()
        assert st.st_gid == os.getgid()
        assert sorted(os.listdir(path)) == sorted(RESERVED)
    finally:
        os.rmdir(path)


def test_mkdir_existing_name_eexist(group):
    expect_errno(errno.EEXIST, os.mkdir, group.path)
    # The existing group is untouched.
    assert sorted(os.listdir(group.path)) == sorted(RESERVED)


def test_mkdir_existing_name_with_members_eexist(group):
    group.member("a")
    expect_errno(errno.EEXIST, os.mkdir, group.path)
    assert "a" in group.status().members


def test_rmdir_removes_empty_group(mount, group):
    os.rmdir(group.path)
    assert group.name not in os.listdir(mount.path)
    expect_errno(errno.ENOENT, os.stat, group.path)
    # The name is free again: a new group of that name is a fresh one.
    os.mkdir(group.path)
    assert group.status().group["sent"] == 0
    os.rmdir(group.path)


def test_rmdir_group_with_members_enotempty(mount, group):
    group.member("a")
    group.member("b")
    expect_errno(errno.ENOTEMPTY, os.rmdir, group.path)
    assert group.name in os.listdir(mount.path)
    assert sorted(group.status().members) == ["a", "b"]
    os.unlink(group.p("a"))
    expect_errno(errno.ENOTEMPTY, os.rmdir, group.path)
    os.unlink(group.p("b"))
    os.rmdir(group.path)
    assert group.name not in os.listdir(mount.path)


def test_rmdir_nonexistent_enoent(mount):
    expect_errno(errno.ENOENT, os.rmdir, os.path.join(mount.path, "never-made"))


def test_ls_lists_the_groups(mount, new_group):
    made = [new_group() for _ in range(3)]
    names = os.listdir(mount.path)
    for g in made:
        assert g.name in names
    for name in names:
        if name == ".metrics":  # the one file of the root (test_metrics.py)
            continue
        assert os.path.isdir(os.path.join(mount.path, name)), f"{name} in the root is not a group directory"
    res = subprocess.run(["ls", "-1", mount.path], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    for g in made:
        assert g.name in res.stdout.split("\n")
    os.rmdir(made[1].path)
    assert made[1].name not in os.listdir(mount.path)
    assert made[0].name in os.listdir(mount.path)


def test_ls_long_and_find(mount, group):
    """Ordinary tools walk the tree."""
    group.member("m")
    res = subprocess.run(["ls", "-la", mount.path], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert group.name in res.stdout
    res = subprocess.run(["find", group.path], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    found = set(res.stdout.split())
    assert {group.path, group.p("send"), group.p("ctl"), group.p("status"), group.p("m")} <= found


# --- what cannot be made in the root ---------------------------------------------


@pytest.fixture
def unchanged(mount):
    """Assert at the end of the test that the root lists exactly what it did before."""
    before = sorted(os.listdir(mount.path))
    yield
    assert sorted(os.listdir(mount.path)) == before


def test_create_regular_file_in_root_refused(mount, unchanged):
    expect_errno(REFUSED, os.open, os.path.join(mount.path, "file"), os.O_CREAT | os.O_WRONLY, 0o644)
    expect_errno(REFUSED, os.open, os.path.join(mount.path, "file"), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)


def test_shell_redirect_into_root_refused(mount, unchanged):
    res = sh(f"echo hi > '{mount.path}/file'")
    assert res.returncode != 0
    res = subprocess.run(["touch", os.path.join(mount.path, "file2")], capture_output=True, timeout=10)
    assert res.returncode != 0


def test_symlink_in_root_refused(mount, unchanged):
    expect_errno(REFUSED, os.symlink, "/etc/hostname", os.path.join(mount.path, "link"))


def test_hard_link_into_root_refused(mount, group):
    member = group.member("m")
    before = sorted(os.listdir(mount.path))
    expect_errno(REFUSED, os.link, member, os.path.join(mount.path, "linked"))
    expect_errno(REFUSED, os.link, group.p("send"), os.path.join(mount.path, "linked"))
    assert sorted(os.listdir(mount.path)) == before


def test_rename_group_refused(mount, new_group):
    a, b = new_group(), new_group()
    before = sorted(os.listdir(mount.path))
    expect_errno(REFUSED, os.rename, a.path, os.path.join(mount.path, a.name + "-renamed"))
    expect_errno(REFUSED, os.rename, a.path, b.path)
    assert sorted(os.listdir(mount.path)) == before
    assert sorted(os.listdir(a.path)) == sorted(RESERVED)


def test_mknod_in_root_refused(mount, unchanged):
    expect_errno(REFUSED, os.mkfifo, os.path.join(mount.path, "fifo"), 0o644)
    expect_errno(REFUSED, os.mknod, os.path.join(mount.path, "node"), 0o644 | stat.S_IFREG)


def test_chmod_root(mount):
    try:
        os.chmod(mount.path, 0o1777)
        assert os.stat(mount.path).st_mode & 0o7777 == 0o1777
        os.chmod(mount.path, 0o700)
        assert os.stat(mount.path).st_mode & 0o7777 == 0o700
    finally:
        os.chmod(mount.path, 0o755)
    assert os.stat(mount.path).st_mode & 0o7777 == 0o755
