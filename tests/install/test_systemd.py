"""The systemd units: mcastfs@.service (installed by `make install` and the
package), the example mnt-mcastfs.mount, and the .mount unit that systemd's
fstab generator makes from an fstab line.

systemd is not PID 1 here (nor in CI), so no unit can be started by
systemctl. What runs: `systemd-analyze verify` on each unit (it checks the
syntax, that every Exec command is an executable, and that the man pages
Documentation= names exist); the real systemd-fstab-generator on an fstab
line; and each unit's commands run as systemd would run them, from the
installed file (ExecStartPre, ExecStart, ExecStartPost, then SIGTERM as
`systemctl stop` sends it, then ExecStopPost; for the .mount unit,
`mount WHAT WHERE -t TYPE -o OPTIONS`). What does not run: systemd
itself: ordering, Restart=, the journal, boot.
"""

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import Group, run
from installutil import daemons_at, findmnt, wait_gone
from mounttable import mounts_at

REPO = Path(__file__).resolve().parents[2]
GENERATOR = "/lib/systemd/system-generators/systemd-fstab-generator"


@pytest.fixture(scope="module")
def prefix(release_build, tmp_path_factory):
    """`make install PREFIX=DIR/usr`: the units name real paths under DIR."""
    root = tmp_path_factory.mktemp("prefix") / "usr"
    res = run(["make", "--no-print-directory", "-C", str(REPO), "install", f"PREFIX={root}"], timeout=1800)
    assert res.returncode == 0, res.stderr
    return root


def verify(unit: Path, manpath: Path | None = None):
    env = dict(os.environ)
    if manpath is not None:
        env["MANPATH"] = str(manpath)
    return run(["systemd-analyze", "verify", str(unit)], env=env, timeout=60, cwd=str(unit.parent))


@pytest.mark.timeout(1800)
def test_verify_template_service(prefix):
    res = verify(prefix / "lib/systemd/system/mcastfs@.service", prefix / "share/man")
    assert res.returncode == 0 and res.stderr == "", res.stderr


@pytest.mark.timeout(1800)
def test_verify_finds_a_broken_unit(prefix, tmp_path):
    """verify is not a rubber stamp: a missing binary or man page fails it."""
    unit = tmp_path / "mcastfs@.service"
    unit.write_text((prefix / "lib/systemd/system/mcastfs@.service").read_text().replace(str(prefix / "bin"), "/nonexistent"))
    res = verify(unit, prefix / "share/man")
    assert res.returncode != 0 and "/nonexistent/mcastfs is not executable" in res.stderr, res.stderr
    res = verify(prefix / "lib/systemd/system/mcastfs@.service", tmp_path)
    assert res.returncode != 0 and "man mcastfs(8)" in res.stderr, res.stderr


@pytest.mark.timeout(1800)
def test_verify_example_mount_unit(prefix):
    res = verify(prefix / "share/doc/mcastfs/examples/mnt-mcastfs.mount", prefix / "share/man")
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_fstab_generator_makes_a_valid_mount_unit(tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text("mcastfs  /mnt/bus  fuse.mcastfs  defaults,capacity=64,x-systemd.requires=network.target,nofail  0  0\n")
    out = tmp_path / "generated"
    out.mkdir()
    res = run([GENERATOR, str(out), str(out), str(out)], env=dict(os.environ, SYSTEMD_FSTAB=str(fstab)))
    assert res.returncode == 0, res.stderr
    unit = out / "mnt-bus.mount"
    text = unit.read_text()
    for line in ("What=mcastfs", "Where=/mnt/bus", "Type=fuse.mcastfs", "Requires=network.target",
                 "Options=defaults,capacity=64,x-systemd.requires=network.target,nofail"):
        assert line in text.split("\n"), f"{line} not in\n{text}"
    # A local filesystem: mounted with local-fs.target (nofail: wanted, not required).
    assert (out / "local-fs.target.wants" / "mnt-bus.mount").exists()
    res = verify(unit)
    assert res.returncode == 0 and res.stderr == "", res.stderr


def unit_entries(path: Path, section: str) -> list[tuple[str, str]]:
    entries, current = [], None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, _, value = line.partition("=")
            entries.append((key, value))
    return entries


class ServiceRun:
    """The Exec lines of an instance of mcastfs@.service, run as systemd runs
    them: specifiers %i and %f (from systemd-escape), $OPTIONS split into
    words, a leading `-` ignoring failure."""

    def __init__(self, unit: Path, mount_point: str, options: str = ""):
        self.instance = run(["systemd-escape", "--path", mount_point]).stdout.strip()
        self.path = "/" + run(["systemd-escape", "--unescape", "--path", self.instance]).stdout.strip().lstrip("/")
        assert self.path == mount_point
        self.entries = unit_entries(unit, "Service")
        self.options = options
        self.daemon = None

    def command(self, line: str) -> tuple[list[str], bool]:
        # systemd splits first, then expands specifiers within each word.
        ignore = line.startswith("-")
        words = []
        for word in shlex.split(line.lstrip("-")):
            words += shlex.split(self.options) if word == "$OPTIONS" else [word.replace("%f", self.path).replace("%i", self.instance)]
        return words, ignore

    def lines(self, key):
        return [value for k, value in self.entries if k == key]

    def run_all(self, key):
        for line in self.lines(key):
            words, ignore = self.command(line)
            res = run(words, timeout=30)
            assert ignore or res.returncode == 0, f"{key}={line}: exit {res.returncode}, {res.stderr}"

    def start(self) -> bool:
        """ExecStartPre, ExecStart, then ExecStartPost, which returns once
        the mount is live; as systemd does for Type=exec, the start fails
        (and ExecStartPost is stopped) if the main process exits meanwhile."""
        assert dict(self.entries)["Type"] == "exec"
        self.run_all("ExecStartPre")
        [start] = self.lines("ExecStart")
        words, _ = self.command(start)
        self.daemon = subprocess.Popen(words, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        [post] = self.lines("ExecStartPost")
        words, _ = self.command(post)
        waiter = subprocess.Popen(words, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + float(dict(self.entries)["TimeoutStartSec"])
        while waiter.poll() is None:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                waiter.kill()
                waiter.wait()
                return False
            time.sleep(0.02)
        return waiter.returncode == 0

    def stop(self):
        self.daemon.send_signal(signal.SIGTERM)  # systemd's KillSignal
        code = self.daemon.wait(timeout=10)
        self.run_all("ExecStopPost")
        return code


@pytest.mark.timeout(1800)
def test_template_service_commands(prefix, workdir_base):
    mount_point = os.path.join(workdir_base, "svc", "bus one")  # made by ExecStartPre; a space to escape
    service = ServiceRun(prefix / "lib/systemd/system/mcastfs@.service", mount_point, "-o capacity=12")
    assert service.start()
    try:
        assert mounts_at(mount_point) == ["fuse.mcastfs"], "ExecStartPost returned before the mount was live"
        g = Group(mount_point, "g")
        os.mkdir(g.path)
        g.member("m")
        g.send(b"via the unit")
        assert g.take("m") == [b"via the unit"] and g.status().group["capacity"] == 12
    finally:
        code = service.stop()
    assert code == 0, service.daemon.stderr.read()
    assert mounts_at(mount_point) == []


@pytest.mark.timeout(1800)
def test_template_service_after_a_crash(prefix, workdir_base):
    """Killed (a crash), the daemon leaves a dead mount; ExecStopPost takes
    it away, so that Restart=on-failure can mount again."""
    mount_point = os.path.join(workdir_base, "svc-crash")
    unit = prefix / "lib/systemd/system/mcastfs@.service"
    assert ("Restart", "on-failure") in unit_entries(unit, "Service")
    service = ServiceRun(unit, mount_point)
    assert service.start()
    service.daemon.kill()
    service.daemon.wait(timeout=10)
    assert mounts_at(mount_point) == ["fuse.mcastfs"]
    try:
        os.listdir(mount_point)
        raise AssertionError("a dead mount answered")
    except OSError as e:
        assert e.errno == 107  # ENOTCONN
    service.run_all("ExecStopPost")
    assert mounts_at(mount_point) == []
    assert service.start()
    try:
        os.mkdir(os.path.join(mount_point, "again"))
    finally:
        assert service.stop() == 0


@pytest.mark.timeout(1800)
def test_template_service_fails_when_mcastfs_cannot_mount(prefix, workdir_base):
    """mcastfs exits 1 with its one line (in the journal, under systemd),
    and the start fails."""
    service = ServiceRun(prefix / "lib/systemd/system/mcastfs@.service", os.path.join(workdir_base, "svc-bad"), "-o capacity=0")
    assert not service.start()
    assert service.daemon.wait(timeout=10) == 1
    assert b"bad option capacity=0" in service.daemon.stderr.read()
    service.run_all("ExecStopPost")


@pytest.mark.timeout(1800)
def test_example_mount_unit_as_systemd_mounts_it(prefix, helper_path, mount_point):
    """systemd runs `mount WHAT WHERE -t TYPE -o OPTIONS` for a .mount unit."""
    mount = dict(unit_entries(prefix / "share/doc/mcastfs/examples/mnt-mcastfs.mount", "Mount"))
    assert mount["Where"] == "/mnt/mcastfs"
    res = run(["mount", mount["What"], mount_point, "-t", mount["Type"], "-o", mount["Options"]])
    assert res.returncode == 0, res.stderr
    assert findmnt(mount_point)["fstype"] == "fuse.mcastfs"
    g = Group(mount_point, "g")
    os.mkdir(g.path)
    assert g.status().group["capacity"] == 256
    pids = daemons_at(mount_point)
    assert run(["umount", mount_point]).returncode == 0 and wait_gone(pids)
