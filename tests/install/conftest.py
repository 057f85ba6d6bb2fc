"""The install tests: mcastfs as mount(8), fstab, systemd, `make install`,
the Debian package and the man pages use it (tests/install/README.md).

They mount through the real mount(8) and mount.fuse3, which run helpers
without PATH (util-linux drops it), so mount.fuse3 finds `mcastfs` only in
the shell's default path. To run the build under test that way without
installing anything on the machine, they run in a private mount namespace
(tests/install/run does `unshare --mount --propagation private`), where the
`helper_path` fixture binds a directory holding `mcastfs` over
/usr/local/sbin, the first directory of that path. Mounts made here vanish
with the namespace.

Fixtures besides the shared plugin's (tests/lib/mcastfs_pytest.py):
- `helper_path` (module): mount(8) runs $MCASTFS_BIN.
- `mount_point` (function): a fresh directory; whatever is mounted there at
  the end is unmounted and its daemon must be gone.
- `release_build` (session): `make build` (the static release build); its path.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_LIB = str(Path(__file__).resolve().parents[1] / "lib")
if _LIB not in sys.path:
    sys.path.insert(0, _LIB)

import mcastfs_pytest  # noqa: E402
from helpers import run  # noqa: E402
from installutil import HELPER_DIR, daemons_at, default_path_lookup, release  # noqa: E402
from mounttable import mounts_at  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PRIVATE = "MCASTFS_PRIVATE_MOUNTS"


def pytest_configure(config):
    mcastfs_pytest.register(config)


@pytest.fixture(scope="session", autouse=True)
def private_mount_namespace():
    if os.environ.get(PRIVATE) != "1":
        pytest.fail(
            "tests/install bind-mount over /usr/local/sbin and mount through mount(8): run them in a private "
            "mount namespace, with tests/install/run (scripts/test does)",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail("tests/install mount with mount(8) and install packages: run them as root", pytrace=False)


@pytest.fixture(scope="module")
def helper_path(mcastfs_bin):
    shadow = tempfile.mkdtemp(prefix="mcastfs-sbin-")
    os.chmod(shadow, 0o755)
    os.symlink(mcastfs_bin, os.path.join(shadow, "mcastfs"))
    res = run(["mount", "--bind", shadow, HELPER_DIR])
    assert res.returncode == 0, f"mount --bind {shadow} {HELPER_DIR}: {res.stderr}"
    try:
        assert default_path_lookup("mcastfs") == f"{HELPER_DIR}/mcastfs"
        yield mcastfs_bin
    finally:
        run(["umount", HELPER_DIR])
        shutil.rmtree(shadow, ignore_errors=True)


@pytest.fixture
def mount_point(workdir_base):
    path = tempfile.mkdtemp(prefix="mp-", dir=workdir_base)
    os.chmod(path, 0o755)
    yield path
    release(path)
    assert not mounts_at(path) and not daemons_at(path), f"{path} could not be released"
    os.rmdir(path)


@pytest.fixture(scope="session")
def release_build():
    """The build `make install` and `make deb` install: release, static Swift runtime."""
    res = run(["make", "--no-print-directory", "-C", str(REPO), "build"], timeout=1800)
    assert res.returncode == 0, f"make build failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    path = REPO / ".build" / "release" / "mcastfs"
    assert path.is_file()
    return str(path)
