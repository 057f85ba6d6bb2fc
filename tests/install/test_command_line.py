"""mcastfs's own command line as mount helpers call it (man 8 mcastfs):
`mcastfs [SOURCE] MOUNTPOINT [-f] [-d] [-s] [-o ...]`, `--version`, `--help`,
the whole options field of an fstab line typed by hand or given to
mount.fuse3 directly (which, unlike mount(8), passes `defaults` and `x-*`
on), and the errors: one line and exit 1 for a bad value, the usage and
exit 64 for a command line that does not parse.
"""

import os
import re
import signal
import subprocess

import pytest

from helpers import Group, run, wait_for
from installutil import GENERIC, daemons_at, findmnt, wait_gone
from mounttable import mounts_at


def one_line_error(res, code=1):
    assert res.returncode == code, f"exit {res.returncode}, stderr {res.stderr!r}"
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mcastfs: "), res.stderr
    return lines[0]


class Foreground:
    """`mcastfs ARGS... -f`, up once the mount is live; SIGTERM ends it, exit 0."""

    def __init__(self, binary, *args):
        self.proc = subprocess.Popen([binary, *args, "-f"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def wait_mounted(self, path):
        wait_for(lambda: mounts_at(path) or self.proc.poll() is not None, timeout=15, what=f"mount at {path}")
        assert self.proc.poll() is None, f"mcastfs exited {self.proc.returncode}: {self.proc.stderr.read()}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=10) == 0


def test_version(mcastfs_bin):
    res = run([mcastfs_bin, "--version"])
    assert res.returncode == 0 and res.stderr == ""
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", res.stdout), res.stdout


def test_help_and_version_do_not_mount(mcastfs_bin, mount_point):
    for flag in ("--help", "-h", "--version"):
        res = run([mcastfs_bin, "mcastfs", mount_point, flag])
        assert res.returncode == 0, res.stderr
        assert mounts_at(mount_point) == [] and daemons_at(mount_point) == []
    res = run([mcastfs_bin, "--help"])
    assert "USAGE: mcastfs [SOURCE] MOUNTPOINT" in res.stdout
    for word in ("capacity=N", "max_threads=N", "remount", "_netdev", "x-*", "ro mounts read-only"):
        assert word in res.stdout, word


@pytest.mark.parametrize("args", [[], ["a", "b", "c"], ["--bogus", "/tmp"]], ids=["none", "three", "unknown-flag"])
def test_usage_errors_exit_64(mcastfs_bin, args):
    res = run([mcastfs_bin, *args])
    assert res.returncode == 64, res
    assert "Usage: mcastfs [SOURCE] MOUNTPOINT" in res.stderr
    assert res.stdout == ""


def test_source_then_mount_point(mcastfs_bin, mount_point):
    daemon = Foreground(mcastfs_bin, "my,bus", mount_point, "-o", "capacity=9")
    daemon.wait_mounted(mount_point)
    # libfuse splits options at commas: the source must come through whole.
    assert findmnt(mount_point)["source"] == "my,bus"
    g = Group(mount_point, "g")
    os.mkdir(g.path)
    assert g.status().group["capacity"] == 9
    daemon.stop()
    assert mounts_at(mount_point) == []


def test_background_mount_returns_once_live(mcastfs_bin, mount_point):
    res = run([mcastfs_bin, "mcastfs", mount_point, "-o", "capacity=5"])
    assert res.returncode == 0, res.stderr
    assert mounts_at(mount_point) == ["fuse.mcastfs"], "the command returns once the mount is live"
    pids = daemons_at(mount_point)
    assert len(pids) == 1
    assert run(["umount", mount_point]).returncode == 0
    assert wait_gone(pids)


@pytest.mark.parametrize("option", GENERIC)
def test_generic_option_typed_by_hand(mcastfs_bin, mount_point, option):
    daemon = Foreground(mcastfs_bin, "mcastfs", mount_point, "-o", f"{option},capacity=7")
    daemon.wait_mounted(mount_point)
    g = Group(mount_point, "g")
    os.mkdir(g.path)
    g.member("m")
    g.send(b"x")
    assert g.take("m") == [b"x"] and g.status().group["capacity"] == 7
    daemon.stop()


def test_whole_fstab_field_through_mount_fuse3(helper_path, mount_point):
    """mount.fuse3 run directly strips only user, users, nouser, auto,
    noauto, _netdev and nofail: defaults, x-* and comment= reach mcastfs."""
    opts = "defaults,noatime,x-systemd.requires=network.target,x-mount.mkdir,comment=c,_netdev,nofail,capacity=11"
    res = run(["mount.fuse3", "mcastfs", mount_point, "-t", "fuse.mcastfs", "-o", opts])
    assert res.returncode == 0, res.stderr
    assert "noatime" in findmnt(mount_point)["options"]
    g = Group(mount_point, "g")
    os.mkdir(g.path)
    assert g.status().group["capacity"] == 11
    pids = daemons_at(mount_point)
    assert run(["umount", mount_point]).returncode == 0 and wait_gone(pids)


def test_bad_value_among_generic_options(mcastfs_bin, mount_point):
    line = one_line_error(run([mcastfs_bin, "mcastfs", mount_point, "-f", "-o", "defaults,_netdev,x-a=b,max_message=0"]))
    assert "max_message=0" in line
    assert mounts_at(mount_point) == []


def test_remount_errors(mcastfs_bin, mount_point, tmp_path):
    line = one_line_error(run([mcastfs_bin, "mcastfs", mount_point, "-o", "remount,ro"]))
    assert "nothing is mounted there" in line
    other = tmp_path / "tmpfs"
    other.mkdir()
    assert run(["mount", "-t", "tmpfs", "none", str(other)]).returncode == 0
    try:
        line = one_line_error(run([mcastfs_bin, "mcastfs", str(other), "-o", "remount,ro"]))
        assert "tmpfs, not fuse.mcastfs" in line
        assert "rw" in findmnt(str(other))["options"], "another filesystem is left alone"
    finally:
        run(["umount", str(other)])


def test_drop_privileges_is_refused_in_one_line(helper_path, mount_point):
    """mount.fuse3's drop_privileges mounts by itself and passes /dev/fd/N;
    mcastfs says it does not support that (the mount mount.fuse3 made stays
    behind, dead, until unmounted: the fixture does)."""
    res = run(["mount", "-t", "fuse.mcastfs", "mcastfs", mount_point, "-o", "drop_privileges"])
    assert res.returncode != 0
    assert "drop_privileges, which mcastfs does not support" in res.stderr, res.stderr
