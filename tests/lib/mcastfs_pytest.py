"""The pytest plugin of the suites that mount mcastfs: tests/mounted,
tests/reliability and tests/conformance.

Each of their conftests calls `register(config)` from its pytest_configure.
The plugin is registered once per session, however many of the suites run in
it: one table of live mounts, one watchdog, and fixtures every suite sees.

Fixture contract
----------------
- `mcastfs_bin` (session): path of the daemon, from $MCASTFS_BIN or
  <repo>/.build/debug/mcastfs. The session FAILS (never skips) when it does not
  exist or /dev/fuse is missing: CI must not pass by running nothing.
- `cbin` (session): the C helpers of tests/mounted/c/, every *.c there,
  compiled once with `cc -O2 -pthread -Wall` into tests/mounted/bin/
  (git-ignored); cbin["blockop"] is a path. `c_helpers(NAME, DIR)` makes
  the same fixture for another directory (tests/reliability: `rbin`,
  tests/conformance: `conf_bin`).
- `mount` (module): one daemon per test module, started as
  `$MCASTFS_BIN MOUNTPOINT -f` with stderr captured to a file, ready once
  /proc/self/mountinfo shows a fuse mount there. At the end of the module it
  gets SIGTERM, must exit 0 within 10 s, and the mount must be gone; a lazy
  `fusermount3 -u -z` / `umount -l` is the safety net either way.
- `group` / `new_group` (function): a uniquely named group in `mount`, so that
  tests in one module do not see each other's traffic.
- `mount_factory` (function) / `module_mount_factory` (module):
  make(options="capacity=3,...", args=["-s"]) starts another daemon with
  custom `-o` options or flags (foreground=False leaves out -f, for -d);
  each is stopped the same way at the end.
- `workdir_base` (session): a 0755 directory in /tmp for mount points.
- `as_nobody` (function): run the fsop helper as uid/gid 65534 (setpriv).

Every test has a time limit (pytest-timeout when installed, else a SIGALRM
fallback; 60 s unless marked `@pytest.mark.timeout(N)`), and a watchdog
thread kills the daemons if a test outlives its limit by 30 s: a dead daemon
aborts the FUSE connection, which releases any call still stuck in the kernel.
The daemon's stderr is attached to the report of every failing test.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MOUNTED = REPO / "tests" / "mounted"
DEFAULT_BIN = REPO / ".build" / "debug" / "mcastfs"

if str(MOUNTED) not in sys.path:
    sys.path.insert(0, str(MOUNTED))  # helpers.py, which the suites' tests import too

from helpers import Group, Mount, parse_fsop, run  # noqa: E402
from mounttable import mounts_under  # noqa: E402

DEFAULT_TIMEOUT = 60
WATCHDOG_GRACE = 30

_live_mounts: list[Mount] = []
_live_lock = threading.Lock()
_current = {"nodeid": None, "deadline": None, "fired": False}
_have_pytest_timeout = False


# --- registration, time limits, watchdog --------------------------------------


def register(config):
    """Registers this module as a plugin, once per session (called from the
    pytest_configure of each suite's conftest)."""
    plugin = sys.modules[__name__]
    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "mcastfs")


def pytest_configure(config):
    global _have_pytest_timeout
    _have_pytest_timeout = config.pluginmanager.hasplugin("timeout")
    if not _have_pytest_timeout:
        config.addinivalue_line("markers", "timeout(seconds): time limit of one test")
        signal.signal(signal.SIGALRM, _on_alarm)
    config.addinivalue_line("markers", "slow: a scale test that takes tens of seconds")
    # A shell that starts pytest in the background hands it SIGINT ignored, and
    # an ignored signal stays ignored across exec: the daemon and the `cat`s
    # under test would then not see the Ctrl-C the tests send.
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    threading.Thread(target=_watchdog, name="mcastfs-watchdog", daemon=True).start()


def _on_alarm(signum, frame):
    raise TimeoutError("test exceeded its time limit (mcastfs tests' SIGALRM fallback)")


def _limit(item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker and marker.args:
        return float(marker.args[0])
    return float(DEFAULT_TIMEOUT)


def pytest_collection_modifyitems(config, items):
    if _have_pytest_timeout:
        for item in items:
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    limit = _limit(item)
    _current.update(nodeid=item.nodeid, deadline=time.monotonic() + limit + WATCHDOG_GRACE, fired=False)
    if not _have_pytest_timeout:
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        if not _have_pytest_timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)
        _current.update(nodeid=None, deadline=None)


def _watchdog():
    while True:
        time.sleep(1.0)
        deadline = _current["deadline"]
        if deadline is None or _current["fired"] or time.monotonic() < deadline:
            continue
        _current["fired"] = True
        sys.stderr.write(
            f"\nmcastfs watchdog: {_current['nodeid']} is stuck past its time limit; "
            "killing the daemons to release blocked calls\n"
        )
        with _live_lock:
            mounts = list(_live_mounts)
        for m in mounts:
            try:
                m.kill()
            except Exception as e:  # noqa: BLE001 - best effort, keep going
                sys.stderr.write(f"mcastfs watchdog: {m}: {e}\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        with _live_lock:
            mounts = list(_live_mounts)
        for m in mounts:
            report.sections.append((f"mcastfs stderr ({m.path})", m.stderr_tail()))


# --- the daemon ---------------------------------------------------------------


@pytest.fixture(scope="session")
def mcastfs_bin() -> str:
    path = os.environ.get("MCASTFS_BIN") or str(DEFAULT_BIN)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            f"mcastfs binary not found at {path}: build it (swift build) or set MCASTFS_BIN. "
            "The mounted tests never skip.",
            pytrace=False,
        )
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse does not exist: the mounted tests need FUSE (modprobe fuse)", pytrace=False)
    if shutil.which("fusermount3") is None:
        pytest.fail("fusermount3 is not installed (apt-get install fuse3)", pytrace=False)
    return os.path.abspath(path)


def compile_c_helpers(c_dir: Path) -> dict[str, str]:
    """Compiles every DIR/*.c into DIR/../bin/ (when the executable is older
    than its source or than any DIR/*.h); name -> executable path."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail(f"no C compiler (cc) for the test helpers in {c_dir}", pytrace=False)
    bin_dir = c_dir.parent / "bin"
    bin_dir.mkdir(mode=0o755, exist_ok=True)
    newest_header = max((h.stat().st_mtime for h in c_dir.glob("*.h")), default=0)
    out = {}
    for src in sorted(c_dir.glob("*.c")):
        exe = bin_dir / src.stem
        if not exe.exists() or exe.stat().st_mtime < max(src.stat().st_mtime, newest_header):
            res = run([cc, "-O2", "-pthread", "-Wall", "-o", str(exe), str(src)], timeout=120)
            if res.returncode != 0:
                pytest.fail(f"compiling {src} failed:\n{res.stderr}", pytrace=False)
        out[src.stem] = str(exe)
    return out


def c_helpers(name: str, c_dir: Path):
    """A session fixture NAME: the C helpers of c_dir, compiled once; a
    conftest binds it to a module-level name for pytest to find."""

    @pytest.fixture(scope="session", name=name)
    def fixture() -> dict[str, str]:
        return compile_c_helpers(c_dir)

    return fixture


cbin = c_helpers("cbin", MOUNTED / "c")


@pytest.fixture(scope="session")
def workdir_base():
    """A 0755 directory in /tmp for mount points, reachable by other users."""
    base = tempfile.mkdtemp(prefix="mcastfs-tests-", dir="/tmp")
    os.chmod(base, 0o755)
    yield base
    # Never rmtree through a live mount: that would walk into the filesystem.
    if mounts_under(base):
        return
    shutil.rmtree(base, ignore_errors=True)


_mount_names = itertools.count(1)


def start_mount(binary: str, base: str, options: str | None = None, args=(), foreground: bool = True) -> Mount:
    m = Mount(binary, base, options=options, args=args, name=f"mnt{next(_mount_names)}", foreground=foreground)
    with _live_lock:
        _live_mounts.append(m)
    try:
        m.start()
    except BaseException:
        finish_mount(m, check=False)
        raise
    return m


def finish_mount(m: Mount, check: bool = True):
    """SIGTERM; the daemon must exit 0 and leave nothing mounted."""
    problems = []
    try:
        if m.running():
            code = m.stop(signal.SIGTERM, timeout=10.0)
            if code is None:
                problems.append("did not exit within 10 s of SIGTERM")
                m.kill()
            elif code != 0:
                problems.append(f"exited with {code} after SIGTERM (expected 0)")
            elif m.mounted():
                problems.append("exited 0 but left the mount behind")
        elif m.proc is not None and m.proc.returncode not in (0, None):
            problems.append(f"had already died with exit code {m.proc.returncode} (crash, or killed by the watchdog)")
    finally:
        m.force_unmount()
        with _live_lock:
            if m in _live_mounts:
                _live_mounts.remove(m)
        try:
            os.rmdir(m.path)
        except OSError:
            pass
    if problems and check:
        pytest.fail(f"mcastfs on {m.path}: {'; '.join(problems)}\nstderr:\n{m.stderr_tail()}", pytrace=False)


@pytest.fixture(scope="module")
def mount(mcastfs_bin, workdir_base) -> Mount:
    m = start_mount(mcastfs_bin, workdir_base)
    yield m
    finish_mount(m)


def _factory(mcastfs_bin, workdir_base):
    made: list[Mount] = []

    def make(options: str | None = None, args=(), foreground: bool = True) -> Mount:
        m = start_mount(mcastfs_bin, workdir_base, options=options, args=args, foreground=foreground)
        made.append(m)
        return m

    return made, make


@pytest.fixture
def mount_factory(mcastfs_bin, workdir_base):
    made, make = _factory(mcastfs_bin, workdir_base)
    yield make
    for m in made:
        finish_mount(m, check=m.running())


@pytest.fixture(scope="module")
def module_mount_factory(mcastfs_bin, workdir_base):
    made, make = _factory(mcastfs_bin, workdir_base)
    yield make
    for m in made:
        finish_mount(m, check=m.running())


# --- groups -------------------------------------------------------------------

_group_serial = itertools.count(1)


def unique_name(request, prefix: str = "") -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", prefix or request.node.name).strip("-")[:80] or "g"
    return f"{base}-{next(_group_serial)}"


@pytest.fixture
def group(mount, request) -> Group:
    """A new group (mode 0755) in the module's mount, named after the test."""
    return mount.group(unique_name(request))


@pytest.fixture
def new_group(mount, request):
    """Factory for more groups in the module's mount: new_group(mode=0o755, mount=None)."""

    def make(mode: int = 0o755, where: Mount | None = None, prefix: str = "") -> Group:
        return (where or mount).group(unique_name(request, prefix), mode)

    return make


# --- other users --------------------------------------------------------------


@pytest.fixture(scope="session")
def nobody_fsop(cbin, workdir_base) -> str:
    """fsop copied where uid 65534 can run it (the repo may not be reachable)."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed for the permission tests", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("the permission tests switch users with setpriv and must run as root", pytrace=False)
    dest = os.path.join(workdir_base, "fsop")
    shutil.copy(cbin["fsop"], dest)
    os.chmod(dest, 0o755)
    return dest


@pytest.fixture
def as_nobody(nobody_fsop):
    """as_nobody("mkdir", path, "755", umask="022") -> FsopResult, run as uid/gid 65534."""

    def call(op: str, *args: str, umask: str | None = None):
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", nobody_fsop]
        if umask is not None:
            cmd += ["-u", umask]
        res = subprocess.run(
            cmd + [op, *map(str, args)], cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10
        )
        assert res.returncode in (0, 1), f"fsop {op} {args} as nobody: exit {res.returncode}, {res.stderr}"
        return parse_fsop(res.stdout)

    return call

