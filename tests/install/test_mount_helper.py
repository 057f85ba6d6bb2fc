"""mcastfs as mount(8) runs it: `mount -t fuse.mcastfs`, fstab lines, the
generic options, `ro` and remount, `umount` (docs/contract.md, "Mounting";
man 8 mcastfs). The real mount(8) and umount(8) of util-linux and the real
mount.fuse3 of fuse3 run the build under test (conftest: `helper_path`).

What they pass on, measured here (util-linux 2.38, fuse3 3.14):
`mount -t fuse.mcastfs mcastfs ROOT -o capacity=64` runs
`mcastfs mcastfs ROOT -o rw,capacity=64,dev,suid`; `defaults`, `auto`,
`noauto`, `user*`, `_netdev`, `nofail`, `comment=` and `x-*` never reach
mcastfs; a remount runs the helper again with `remount` and every flag of
the mount table.
"""

import errno
import os
import subprocess

import pytest

from helpers import Group, expect_errno, read_status, run
from installutil import GENERIC, daemons_at, findmnt, wait_gone
from mounttable import mounts_at


def mount(*args, timeout=20.0):
    res = run(["mount", *args], timeout=timeout)
    assert res.returncode == 0, f"mount {' '.join(args)}: exit {res.returncode}\n{res.stderr}"
    return res


def umount(path):
    pids = daemons_at(path)
    assert pids, f"no mcastfs daemon serves {path}"
    res = run(["umount", path])
    assert res.returncode == 0, f"umount {path}: {res.stderr}"
    assert mounts_at(path) == []
    assert wait_gone(pids), f"the daemon of {path} is still running after umount"


def echo_cat(root: str, group: str = "chat") -> None:
    """A message through the mount the way the README's tour sends one: a
    member read by cat, a line sent with echo."""
    os.mkdir(os.path.join(root, group))
    g = Group(root, group)
    g.member("alice")
    cat = subprocess.Popen(["cat", g.p("alice")], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        res = run(["sh", "-c", f'echo "hello, everyone" > "{g.p("send")}"'])
        assert res.returncode == 0, res.stderr
        assert cat.stdout.readline() == b"hello, everyone\n"
    finally:
        cat.kill()
        cat.wait(timeout=10)


def test_mount_t_fuse_mcastfs(helper_path, mount_point):
    mount("-t", "fuse.mcastfs", "mcastfs", mount_point, "-o", "capacity=64")
    info = findmnt(mount_point)
    assert info["fstype"] == "fuse.mcastfs" and info["source"] == "mcastfs"
    # mount.fuse3 adds dev,suid unless told nodev/nosuid.
    assert "nosuid" not in info["options"] and "nodev" not in info["options"]
    assert "default_permissions" in info["options"]
    echo_cat(mount_point)
    assert read_status(os.path.join(mount_point, "chat")).group["capacity"] == 64
    umount(mount_point)




@pytest.mark.parametrize("option", GENERIC)
def test_generic_option_through_mount(helper_path, mount_point, option):
    mount("-t", "fuse.mcastfs", "mcastfs", mount_point, "-o", f"{option},capacity=32")
    info = findmnt(mount_point)
    assert info["fstype"] == "fuse.mcastfs"
    if option in ("nosuid", "nodev", "noexec", "noatime", "sync", "dirsync"):
        assert option in info["options"], info
    if option == "user":
        # mount(8) turns user into noexec,nosuid,nodev itself.
        assert {"noexec", "nosuid", "nodev"} <= info["options"], info
    g = Group(mount_point, "g")
    os.mkdir(g.path)
    g.member("m")
    g.send(b"one")
    assert g.take("m") == [b"one"]
    assert g.status().group["capacity"] == 32
    umount(mount_point)


def test_every_generic_option_at_once(helper_path, mount_point):
    mount("-t", "fuse.mcastfs", "mcastfs", mount_point, "-o", ",".join(o for o in GENERIC if o != "noexec") + ",capacity=8")
    echo_cat(mount_point)
    umount(mount_point)


def test_mount_options_are_still_checked(helper_path, mount_point):
    """A bad value among fstab's options: mount fails with mcastfs's one line."""
    res = run(["mount", "-t", "fuse.mcastfs", "mcastfs", mount_point, "-o", "defaults,_netdev,capacity=0"])
    assert res.returncode != 0
    assert "mcastfs: bad option capacity=0" in res.stderr, res.stderr
    assert mounts_at(mount_point) == []
    res = run(["mount", "-t", "fuse.mcastfs", "mcastfs", mount_point, "-o", "defaults,bogus"])
    assert res.returncode != 0 and "bogus" in res.stderr, res.stderr
    assert mounts_at(mount_point) == []


def test_source_names_the_mount(helper_path, mount_point):
    mount("-t", "fuse.mcastfs", "bus-one", mount_point)
    assert findmnt(mount_point)["source"] == "bus-one"
    umount(mount_point)


# --- read-only ----------------------------------------------------------------


def test_ro_mount_is_empty_and_refuses_everything(helper_path, mount_point):
    """The kernel enforces ro before mcastfs sees a call: with no group
    there from the start, nothing can ever be made."""
    mount("-t", "fuse.mcastfs", "mcastfs", mount_point, "-o", "ro")
    assert "ro" in findmnt(mount_point)["options"]
    assert os.listdir(mount_point) == [".metrics"]  # no group, only the metrics file
    expect_errno(errno.EROFS, os.mkdir, os.path.join(mount_point, "g"))
    expect_errno(errno.EROFS, os.open, os.path.join(mount_point, "f"), os.O_CREAT | os.O_WRONLY, 0o644)
    expect_errno(errno.EROFS, os.chmod, mount_point, 0o1777)
    res = run(["sh", "-c", f"mkdir {mount_point}/g"])
    assert "Read-only file system" in res.stderr
    umount(mount_point)


@pytest.fixture
def live_bus(helper_path, mount_point):
    """A mount with group g, members alice and bob, one message queued for each."""
    mount("-t", "fuse.mcastfs", "mcastfs", mount_point)
    g = Group(mount_point, "g")
    os.mkdir(g.path)
    g.member("alice")
    g.member("bob")
    g.send(b"before")
    return g


def test_remount_ro_freezes_a_live_bus(live_bus, mount_point):
    g = live_bus
    mount("-o", "remount,ro", mount_point)
    assert "ro" in findmnt(mount_point)["options"]
    assert len(daemons_at(mount_point)) == 1, "a remount starts no second daemon"
    for name in ("send", "ctl", "alice", "frames/send", "frames/alice"):
        expect_errno(errno.EROFS, os.open, g.p(name), os.O_WRONLY)
    res = run(["sh", "-c", f'echo hi > "{g.p("send")}"'])
    assert res.returncode != 0 and "Read-only file system" in res.stderr
    expect_errno(errno.EROFS, os.open, g.p("carol"), os.O_CREAT | os.O_RDONLY, 0o644)
    expect_errno(errno.EROFS, os.unlink, g.p("bob"))
    expect_errno(errno.EROFS, os.rmdir, g.path)
    expect_errno(errno.EROFS, os.mkdir, os.path.join(mount_point, "h"))
    expect_errno(errno.EROFS, os.chmod, g.p("alice"), 0o600)
    expect_errno(errno.EROFS, os.truncate, g.p("alice"), 0)
    expect_errno(errno.EROFS, os.chown, g.p("alice"), 65534, 65534)
    # Reading goes on: the queue and the snapshot.
    assert g.take("alice") == [b"before"]
    st = g.status()
    assert st.group["members"] == 2 and st.member("bob")["queued"] == 1

    mount("-o", "remount,rw", mount_point)
    assert "rw" in findmnt(mount_point)["options"]
    g.send(b"after")
    assert g.take("bob") == [b"before", b"after"]
    umount(mount_point)


def test_remount_ro_waits_for_writers_to_close(live_bus, mount_point):
    """The kernel refuses to make a mount read-only while a file on it is
    open for writing (EBUSY), and mcastfs says so in one line."""
    fd = os.open(live_bus.p("send"), os.O_WRONLY)
    try:
        res = run(["mount", "-o", "remount,ro", mount_point])
        assert res.returncode != 0
        assert "mcastfs: cannot remount" in res.stderr and "busy" in res.stderr, res.stderr
        assert "rw" in findmnt(mount_point)["options"]
        assert os.write(fd, b"still") == 5
    finally:
        os.close(fd)
    mount("-o", "remount,ro", mount_point)
    assert "ro" in findmnt(mount_point)["options"]
    umount(mount_point)


# --- fstab --------------------------------------------------------------------


def fstab(tmp_path, *lines):
    path = tmp_path / "fstab"
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_fstab_line_mount_and_umount(helper_path, mount_point, tmp_path):
    """`mount ROOT` with a line of fstab (util-linux's --fstab names the file:
    the same parser as /etc/fstab's; tests/install/test_deb.py uses
    /etc/fstab itself)."""
    table = fstab(tmp_path, f"mcastfs  {mount_point}  fuse.mcastfs  defaults,capacity=32,_netdev,nofail,x-systemd.requires=network.target  0  0")
    mount("--fstab", table, mount_point)
    assert findmnt(mount_point)["fstype"] == "fuse.mcastfs"
    echo_cat(mount_point)
    assert read_status(os.path.join(mount_point, "chat")).group["capacity"] == 32
    # mount -a sees the line as mounted and leaves it.
    res = mount("--fstab", table, "-a", "-v")
    assert "already mounted" in res.stdout + res.stderr
    assert mounts_at(mount_point) == ["fuse.mcastfs"]
    umount(mount_point)


def test_fstab_noauto_and_another_source(helper_path, mount_point, tmp_path):
    table = fstab(tmp_path, f"bus  {mount_point}  fuse.mcastfs  noauto,capacity=16  0  0")
    mount("--fstab", table, "-a")
    assert mounts_at(mount_point) == [], "noauto: mount -a leaves it"
    mount("--fstab", table, mount_point)
    assert findmnt(mount_point)["source"] == "bus"
    # The source is the mount's, so mount -a knows the line is mounted (with
    # "mcastfs" in the table instead, it would run mcastfs a second time).
    table_auto = fstab(tmp_path, f"bus  {mount_point}  fuse.mcastfs  capacity=16  0  0")
    mount("--fstab", table_auto, "-a")
    assert mounts_at(mount_point) == ["fuse.mcastfs"]
    g = Group(mount_point, "g")
    os.mkdir(g.path)
    assert g.status().group["capacity"] == 16
    umount(mount_point)


def test_fstab_ro_line(helper_path, mount_point, tmp_path):
    table = fstab(tmp_path, f"mcastfs  {mount_point}  fuse.mcastfs  ro  0  0")
    mount("--fstab", table, mount_point)
    assert "ro" in findmnt(mount_point)["options"]
    expect_errno(errno.EROFS, os.mkdir, os.path.join(mount_point, "g"))
    umount(mount_point)
