"""The daemon and its command line (docs/contract.md, "Mounting").

    mcastfs MOUNTPOINT [-f] [-d] [-s] [-o OPTION[,OPTION...]]

Returns once the mount is live and serves in the background; -f stays in the
foreground; -d prints every request (implies -f); -s serves with one thread.
-o allow_other, -o capacity=N,queue_bytes=N,max_message=N, -o max_threads=N.
SIGINT or SIGTERM always unmounts cleanly: clients blocked in read or write get
an error at once, and the daemon exits 0. fusermount3 -u and umount work as for any
filesystem (EBUSY while files are open). Errors (mount point missing, already
mounted, no /dev/fuse, bad option) print one clear line and exit non-zero.
"""

import errno
import os
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from helpers import (
    BlockOp,
    Call,
    Group,
    expect_errno,
    mounts_at,
    process_gone,
    wait_blocked,
    wait_for,
)

RELEASE_S = 2.0  # "at once", with slack for a loaded machine


@pytest.fixture
def spare_dir(workdir_base):
    path = tempfile.mkdtemp(prefix="spare-", dir=workdir_base)
    os.chmod(path, 0o755)
    yield path
    if not mounts_at(path):
        os.rmdir(path)


def run_expecting_error(cmd, timeout=15.0, env=None):
    """Run the daemon where it must refuse to start; never leave it running."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)
        pytest.fail(f"{cmd} kept running where it should have refused to start")
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def assert_one_line_error(code, out, err):
    assert code != 0, f"exit code 0; stderr {err!r}"
    lines = [line for line in err.split("\n") if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    assert len(lines[0]) > 10, f"not a clear message: {lines[0]!r}"
    assert out.strip() == "", f"nothing on stdout for an error, got {out!r}"
    print(f"exit {code}: {lines[0]}")


# --- command line errors ------------------------------------------------------


@pytest.mark.parametrize("fg", [True, False], ids=["foreground", "background"])
def test_missing_mount_point(mcastfs_bin, workdir_base, fg):
    missing = os.path.join(workdir_base, "does", "not", "exist")
    code, out, err = run_expecting_error([mcastfs_bin, missing] + (["-f"] if fg else []))
    assert_one_line_error(code, out, err)
    assert not os.path.exists(missing)


def test_already_mounted(mcastfs_bin, mount):
    code, out, err = run_expecting_error([mcastfs_bin, mount.path, "-f"])
    assert_one_line_error(code, out, err)
    assert len(mounts_at(mount.path)) == 1, "nothing stacked on the live mount"
    assert mount.running()
    g = mount.group(f"still-works-{os.getpid()}")
    g.member("m")
    g.send(b"ok")
    assert g.take("m") == [b"ok"]


@pytest.mark.parametrize(
    "option",
    [
        "bogus",
        "bogus=1",
        "capacity=0",
        "capacity=abc",
        "capacity=1000001",
        "queue_bytes=0",
        "queue_bytes=1073741825",
        "max_message=0",
        "max_message=1044481",
        "capacity=",
        "max_threads=0",
        "max_threads=257",
        "max_threads=two",
    ],
)
def test_bad_option(mcastfs_bin, spare_dir, option):
    code, out, err = run_expecting_error([mcastfs_bin, spare_dir, "-f", "-o", option])
    assert_one_line_error(code, out, err)
    assert mounts_at(spare_dir) == []


def test_no_dev_fuse(mcastfs_bin, spare_dir):
    """In a mount namespace where /dev is an empty tmpfs there is no /dev/fuse."""
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         "mount -t tmpfs tmpfs /dev && test ! -e /dev/fuse"],
        capture_output=True, timeout=10,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace without /dev/fuse here: {probe.stderr!r}")
    code, out, err = run_expecting_error(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs tmpfs /dev && exec "$0" "$@"', mcastfs_bin, spare_dir, "-f"]
    )
    assert_one_line_error(code, out, err)
    assert mounts_at(spare_dir) == []


# --- modes of running ---------------------------------------------------------


def _daemon_pids(binary, path):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if path.encode() in argv and any(os.path.basename(a.decode(errors="replace")) == os.path.basename(binary)
                                         for a in argv[:1]):
            found.append(int(entry))
    return found


def test_without_f_returns_once_mounted_and_serves_in_background(mcastfs_bin, spare_dir):
    # Output to files, not pipes: a daemon that keeps its inherited stdout open
    # would otherwise look like a command that never returns.
    with open(os.path.join(spare_dir + ".out"), "wb") as out:
        starter = subprocess.Popen([mcastfs_bin, spare_dir], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            code = starter.wait(timeout=20)
        except subprocess.TimeoutExpired:
            starter.kill()
            starter.wait(10)
            code = None
    pids = _daemon_pids(mcastfs_bin, spare_dir)
    try:
        assert code == 0, open(spare_dir + ".out", errors="replace").read()
        assert any(t.startswith("fuse") for t in mounts_at(spare_dir)), "the mount is live when the command returns"
        assert len(pids) == 1, f"one daemon serving in the background, found {pids}"
        os.mkdir(os.path.join(spare_dir, "g"))
        g = Group(spare_dir, "g")
        g.member("m")
        g.send(b"background")
        assert g.take("m") == [b"background"]
        os.unlink(g.p("m"))
        os.rmdir(g.path)
        os.kill(pids[0], signal.SIGTERM)
        wait_for(lambda: process_gone(pids[0]), timeout=10, what="the daemon to exit after SIGTERM")
        assert mounts_at(spare_dir) == []
    finally:
        for pid in _daemon_pids(mcastfs_bin, spare_dir):
            os.kill(pid, signal.SIGKILL)
        if mounts_at(spare_dir):
            subprocess.run(["fusermount3", "-u", "-z", spare_dir], capture_output=True, timeout=10)


def test_debug_prints_requests_and_stays_in_foreground(mount_factory):
    m = mount_factory(args=["-d"], foreground=False)
    time.sleep(1.0)
    assert m.running(), "-d implies -f"
    before = len(m.stderr_text())
    g = m.group("debugged")
    g.member("m")
    g.status()
    wait_for(lambda: len(m.stderr_text()) > before, what="debug output for the requests")


# -s serves on the main thread alone; -o max_threads=1 keeps libfuse's
# multi-threaded loop with a single worker. Either way blocked reads and writes
# are stored replies, so one thread goes on serving everyone else.
ONE_THREAD = [
    pytest.param({"args": ["-s"]}, id="-s"),
    pytest.param({"options": "max_threads=1"}, id="max_threads=1"),
]
# Beside the workers: the main thread (which waits for the loop to end in
# multi-threaded mode) and the signal relay.
NON_WORKER_THREADS = 2


@pytest.mark.parametrize("how", ONE_THREAD)
def test_one_thread_still_serves_while_reads_block(mount_factory, how):
    m = mount_factory(**how)
    g = m.group("single")
    names = [f"r{i}" for i in range(10)]
    for n in names:
        g.member(n)
    fds = [g.open(n) for n in names]
    try:
        calls = [Call(os.read, fd, 100) for fd in fds]
        for c, n in zip(calls, names):
            c.wait_blocked(path=g.p(n))
        g.member("late")  # other requests are served meanwhile
        assert "late" in g.status().members
        assert m.threads() <= 1 + NON_WORKER_THREADS
        g.send(b"to all ten")
        for c in calls:
            assert c.result(2.0) == b"to all ten"
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("how", ONE_THREAD)
def test_one_thread_blocked_writer_and_reader(mount_factory, how):
    m = mount_factory(**how)
    g = m.group("single-w")
    g.member("a")
    g.fill("a")
    writer = Call(g.send, b"blocked", nonblock=False)
    wait_for(lambda: g.status().group["blocked_writers"] == 1, what="a blocked writer")
    fd = g.open("a")
    try:
        assert Call(os.read, fd, 100).result(2.0) == b"fill-a-0"
        assert writer.result(2.0) == 7
        assert Call(os.read, fd, 100).result(2.0) == b"blocked"
    finally:
        os.close(fd)


def test_max_threads_bounds_the_workers_under_load(mount_factory):
    """Sixteen reader threads and a writer on one group, every read blocking
    in turn: the daemon never has more than max_threads workers, and every
    reader gets every message."""
    m = mount_factory(options="max_threads=1")
    g = m.group("load")
    count, names = 300, [f"r{i}" for i in range(16)]
    for n in names:
        g.member(n)
    fds = [g.open(n) for n in names]
    got = {n: [] for n in names}

    def read_all(name, fd):
        for _ in range(count):
            got[name].append(os.read(fd, 100))

    readers = [threading.Thread(target=read_all, args=(n, fd)) for n, fd in zip(names, fds)]
    for t in readers:
        t.start()
    most = 0
    try:
        send_fd = os.open(g.p("send"), os.O_WRONLY)
        try:
            for i in range(count):
                os.write(send_fd, b"m%d" % i)
                if i % 10 == 0:
                    most = max(most, m.threads())
        finally:
            os.close(send_fd)
        for t in readers:
            t.join(30)
            most = max(most, m.threads())
    finally:
        for fd in fds:
            os.close(fd)
    want = [b"m%d" % i for i in range(count)]
    assert all(got[n] == want for n in names)
    assert most <= 1 + NON_WORKER_THREADS


def test_defaults_for_new_groups_from_options(mount_factory):
    m = mount_factory(options="capacity=3,queue_bytes=1000,max_message=500")
    g = m.group("defaults")
    st = g.status().group
    assert (st["capacity"], st["queue_bytes"], st["max_message"]) == (3, 1000, 500)
    g.member("m")
    ms = g.member_status("m")
    assert (ms["capacity"], ms["queue_bytes"]) == (3, 1000)
    expect_errno(errno.EMSGSIZE, g.send, b"x" * 501)
    for i in range(3):
        g.send(b"x" * 10)
    expect_errno(errno.EAGAIN, g.send, b"fourth")


def test_options_combine(mount_factory):
    m = mount_factory(options="allow_other,max_message=64")
    g = m.group("combined")
    assert g.status().group["max_message"] == 64


# --- signals to the daemon ----------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_unmounts_and_exits_0(mount_factory, sig):
    m = mount_factory()
    m.group("g")
    assert m.stop(sig, timeout=10) == 0
    assert not m.mounted()
    assert os.listdir(m.path) == [], "the mount point is an empty directory again"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_releases_blocked_readers_and_writers(mount_factory, cbin, sig):
    m = mount_factory()
    g = m.group("busy")
    g.member("r")
    g.member("full")
    g.fill("full")
    g.take("r")
    reader = BlockOp(cbin["blockop"], "read", g.p("r"))
    writer = BlockOp(cbin["blockop"], "write", g.p("send"), data="never")
    cat = subprocess.Popen(["cat", g.p("r")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    idle = os.open(g.p("r"), os.O_RDONLY | os.O_NONBLOCK)  # an open file that is not in a call
    try:
        reader.wait_blocked()
        wait_blocked(cat.pid, path=g.p("r"))
        wait_for(lambda: g.status().group["blocked_writers"] == 1, what="the writer to block")
        t0 = time.monotonic()
        m.proc.send_signal(sig)
        r = reader.result(timeout=RELEASE_S + 3)
        w = writer.result(timeout=RELEASE_S + 3)
        cat.wait(timeout=RELEASE_S + 3)
        released = time.monotonic() - t0
        print(f"clients released {1000 * released:.1f} ms after {sig.name}: "
              f"read errno {errno.errorcode.get(r['errno'])}, write errno {errno.errorcode.get(w['errno'])}, "
              f"cat exit {cat.returncode}")
        assert r["ret"] == -1 and r["errno"] != 0, f"blocked read returned {r}"
        assert w["ret"] == -1 and w["errno"] != 0, f"blocked write returned {w}"
        assert cat.returncode != 0, "cat got an error, not end of file"
        assert released < RELEASE_S
        code = m.proc.wait(timeout=10)
        assert code == 0
        assert not m.mounted()
    finally:
        try:
            os.close(idle)
        except OSError:  # ENOTCONN: the connection is gone, as it should be
            pass
        reader.close()
        writer.close()
        if cat.poll() is None:
            cat.kill()
        cat.communicate(timeout=5)


@pytest.mark.parametrize("tool", [["fusermount3", "-u"], ["umount"]], ids=["fusermount3", "umount"])
def test_unmount_is_busy_while_a_file_is_open(mount_factory, tool):
    m = mount_factory()
    g = m.group("open-file")
    g.member("m")
    fd = g.open("m", os.O_RDONLY | os.O_NONBLOCK)
    try:
        res = subprocess.run(tool + [m.path], capture_output=True, text=True, timeout=10)
        assert res.returncode != 0
        assert "busy" in (res.stderr + res.stdout).lower(), res.stderr
        assert m.mounted() and m.running()
        g.send(b"still serving")
        assert os.read(fd, 100) == b"still serving"
    finally:
        os.close(fd)
    res = subprocess.run(tool + [m.path], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert not m.mounted()
    code = m.proc.wait(timeout=10)
    assert code == 0, "the daemon exits 0 when unmounted from outside"


def test_unmount_is_busy_with_a_blocked_reader(mount_factory):
    m = mount_factory()
    g = m.group("blocked")
    g.member("m")
    fd = g.open("m")
    try:
        call = Call(os.read, fd, 100)
        call.wait_blocked(path=g.p("m"))
        res = subprocess.run(["fusermount3", "-u", m.path], capture_output=True, text=True, timeout=10)
        assert res.returncode != 0
        assert m.mounted()
        g.send(b"bye")
        assert call.result(2.0) == b"bye"
    finally:
        os.close(fd)
