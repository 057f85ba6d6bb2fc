"""The Debian package, the way the README's "Install" section uses it:
`make deb`, `dpkg -i`, a line in /etc/fstab, `mount /mnt/...`, a message
through with echo and cat, `umount`, `dpkg --purge`, nothing left. With
/opt/swift hidden from the moment the package is built: the machine that
installs it has no Swift.

/etc/fstab is the machine's: the test adds one line and puts the file back
as it was, whatever happens. The mount itself lives in the tests' private
mount namespace (conftest).
"""

import os
import subprocess
from pathlib import Path

import pytest

from helpers import Group, run
from installutil import daemons_at, default_path_lookup, findmnt, release, wait_gone
from mounttable import mounts_at

REPO = Path(__file__).resolve().parents[2]
FSTAB = Path("/etc/fstab")
FILES = {
    "/usr/bin/mcastfs",
    "/usr/share/man/man8/mcastfs.8.gz",
    "/usr/share/man/man5/mcastfs.5.gz",
    "/lib/systemd/system/mcastfs@.service",
    "/usr/share/doc/mcastfs/copyright",
    "/usr/share/doc/mcastfs/changelog.gz",
    "/usr/share/doc/mcastfs/examples/mnt-mcastfs.mount",
}


def installed() -> bool:
    res = run(["dpkg-query", "-W", "-f", "${Status}", "mcastfs"])
    return res.returncode == 0 and "installed" in res.stdout.split()


@pytest.fixture(scope="module")
def deb(release_build):
    res = run(["make", "--no-print-directory", "-C", str(REPO), "deb"], timeout=1800)
    assert res.returncode == 0, f"make deb:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    path = REPO / res.stdout.strip().splitlines()[-1]
    assert path.is_file() and path.suffix == ".deb", res.stdout
    return path


@pytest.fixture(scope="module")
def no_swift(deb):
    """/opt/swift (Swift and its runtime) hidden for the rest of the module."""
    assert run(["mount", "-t", "tmpfs", "-o", "ro", "none", "/opt/swift"]).returncode == 0
    try:
        yield
    finally:
        run(["umount", "/opt/swift"])


@pytest.fixture(scope="module")
def clean_machine():
    """The package must not be there before, and is purged after, whatever happens."""
    if installed():
        pytest.fail("mcastfs is installed already (dpkg -l mcastfs): purge it before the package test", pytrace=False)
    assert not os.path.exists("/usr/bin/mcastfs"), "/usr/bin/mcastfs exists and is not the package's"
    yield
    if installed():
        run(["dpkg", "--purge", "mcastfs"], timeout=120)


def test_package_fields(deb):
    info = run(["dpkg-deb", "--field", str(deb), "Package", "Version", "Architecture", "Depends"]).stdout
    fields = dict(line.split(": ", 1) for line in info.strip().splitlines())
    assert fields["Package"] == "mcastfs"
    assert fields["Version"] == run([str(REPO / ".build/release/mcastfs"), "--version"]).stdout.strip()
    depends = [d.strip().split()[0] for d in fields["Depends"].split(",")]
    assert depends[0] == "fuse3" and "libfuse3-3" in depends and "libc6" in depends
    assert not any("swift" in d for d in depends), depends
    listed = {line.split()[-1].lstrip(".") for line in run(["dpkg-deb", "-c", str(deb)]).stdout.splitlines()
              if not line.startswith("d")}
    assert listed == FILES
    # No maintainer scripts: the package only adds files.
    control = run(["sh", "-c", f"dpkg-deb --ctrl-tarfile '{deb}' | tar -t"]).stdout.split()
    assert sorted(control) == ["./", "./control", "./md5sums"], control


@pytest.mark.timeout(1800)
def test_install_mount_through_fstab_and_purge(deb, no_swift, clean_machine, workdir_base):
    assert run(["ls", "/opt/swift"]).stdout == "", "Swift is hidden"

    res = run(["dpkg", "-i", str(deb)], timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    owned = set(run(["dpkg", "-L", "mcastfs"]).stdout.split())
    assert FILES <= owned
    assert default_path_lookup("mcastfs") == "/usr/bin/mcastfs", "mount.fuse3's shell finds the package's mcastfs"
    version = run(["mcastfs", "--version"])
    assert version.returncode == 0, version.stderr
    assert "swift" not in run(["ldd", "/usr/bin/mcastfs"]).stdout.lower()
    assert run(["man", "-w", "8", "mcastfs"]).stdout.strip() == "/usr/share/man/man8/mcastfs.8.gz"
    page = run(["man", "5", "mcastfs"], env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
    assert page.returncode == 0 and "multicast message groups" in page.stdout
    res = run(["systemd-analyze", "verify", "/lib/systemd/system/mcastfs@.service"], timeout=60, cwd="/")
    assert res.returncode == 0 and res.stderr == "", res.stderr

    mount_point = f"/mnt/mcastfs-pkgtest-{os.getpid()}"
    line = f"mcastfs  {mount_point}  fuse.mcastfs  defaults,capacity=64  0  0\n"
    original = FSTAB.read_bytes() if FSTAB.exists() else None
    os.makedirs(mount_point, exist_ok=True)
    try:
        FSTAB.write_bytes((original or b"") + (b"" if not original or original.endswith(b"\n") else b"\n") + line.encode())
        res = run(["mount", mount_point], timeout=30)
        assert res.returncode == 0, res.stderr
        info = findmnt(mount_point)
        assert info["fstype"] == "fuse.mcastfs" and info["source"] == "mcastfs"
        [pid] = daemons_at(mount_point)
        assert os.readlink(f"/proc/{pid}/exe") == "/usr/bin/mcastfs"

        res = run(["sh", "-c", f"mkdir {mount_point}/chat && touch {mount_point}/chat/alice"])
        assert res.returncode == 0, res.stderr
        cat = subprocess.Popen(["cat", f"{mount_point}/chat/alice"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            assert run(["sh", "-c", f"echo 'hello from the package' > {mount_point}/chat/send"]).returncode == 0
            assert cat.stdout.readline() == b"hello from the package\n"
        finally:
            cat.kill()
            cat.wait(timeout=10)
        assert Group(mount_point, "chat").status().group["capacity"] == 64

        res = run(["umount", mount_point])
        assert res.returncode == 0, res.stderr
        assert mounts_at(mount_point) == [] and wait_gone([pid])
    finally:
        release(mount_point)
        if original is None:
            FSTAB.unlink(missing_ok=True)
        else:
            FSTAB.write_bytes(original)
        if not mounts_at(mount_point):
            os.rmdir(mount_point)
    assert FSTAB.read_bytes() == original if original is not None else not FSTAB.exists()

    res = run(["dpkg", "--purge", "mcastfs"], timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not installed()
    assert run(["dpkg-query", "-W", "mcastfs"]).returncode != 0, "purged: dpkg knows nothing of it"
    left = sorted(p for p in owned if os.path.lexists(p) and not os.path.isdir(p))
    assert left == [], left
    assert not os.path.exists("/usr/share/doc/mcastfs")
    assert default_path_lookup("mcastfs") == ""
