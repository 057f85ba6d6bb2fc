"""The daemon's log (docs/contract.md, "Mounting": `-o log_level=`).

mcastfs logs through swift-log to stderr: one line per event, at a level;
`-o log_level=trace|debug|info|notice|warning|error|critical` chooses what is
written (default info, debug with -d). Mount, unmount and signals are logged
once each; nothing is logged per message or request unless -d. When stderr is
the journal's stream (JOURNAL_STREAM names its device and inode, as systemd
sets it) lines carry sd-daemon(3)'s `<N>` priority prefixes instead of a time
and the program name. A bad level is a one-line start-up error, exit 1.
"""

import os
import re
import signal
import subprocess
import tempfile

import pytest

from helpers import Group, is_fuse_mount, unmount_lazily, wait_for

PLAIN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z mcastfs\[(\d+)\] "
                   r"(trace|debug|info|notice|warning|error|critical): (.+)$")
JOURNAL = re.compile(r"^<([0-7])>(.+)$")
LEVELS = ("trace", "debug", "info", "notice", "warning", "error", "critical")


class Daemon:
    """One mcastfs, with stderr to a file (and an environment of the test's
    choosing), stopped at the end of the test."""

    def __init__(self, binary: str, base: str, args=(), journal: bool = False, foreground: bool = True,
                 journal_stream: str | None = None):
        self.path = tempfile.mkdtemp(prefix="log-", dir=base)
        self.stderr_path = self.path + ".stderr"
        self.binary = binary
        self.args = [*(["-f"] if foreground else []), *args]
        self.journal = journal
        self.journal_stream = journal_stream
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        if self.journal_stream is not None:
            env["JOURNAL_STREAM"] = self.journal_stream
        with open(self.stderr_path, "wb") as err:
            if self.journal:
                st = os.fstat(err.fileno())
                env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            self.proc = subprocess.Popen([self.binary, self.path, *self.args], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True)
        wait_for(lambda: is_fuse_mount(self.path) or self.proc.poll() not in (None, 0), timeout=15,
                 what=f"the mount at {self.path}")
        assert is_fuse_mount(self.path), f"exit {self.proc.returncode}: {self.stderr()}"
        return self

    def stderr(self) -> str:
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def lines(self) -> list[str]:
        return [line for line in self.stderr().split("\n") if line]

    def wait_line(self, pattern: str, timeout: float = 10.0) -> str:
        return wait_for(lambda: next((l for l in self.lines() if re.search(pattern, l)), None), timeout=timeout,
                        what=f"a line matching {pattern!r}; stderr: {self.stderr()!r}")

    def stop(self, sig=signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(10)

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        unmount_lazily(self.path)
        os.rmdir(self.path)


@pytest.fixture
def daemon(mcastfs_bin, workdir_base):
    made = []

    def make(*args, journal=False, foreground=True, journal_stream=None):
        d = Daemon(mcastfs_bin, workdir_base, args, journal=journal, foreground=foreground,
                   journal_stream=journal_stream)
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.cleanup()


def traffic(root: str, rounds: int = 100):
    """Groups, members, messages, status and .metrics reads: what must not be logged."""
    os.mkdir(os.path.join(root, "chat"))
    g = Group(root, "chat")
    g.member("alice")
    for i in range(rounds):
        g.send(f"message {i}".encode())
    assert len(g.take("alice")) == rounds
    g.status()
    with open(os.path.join(root, ".metrics")) as f:
        f.read()
    os.unlink(g.p("alice"))
    os.rmdir(g.path)


def parsed(line: str):
    m = PLAIN.match(line)
    assert m, f"not a log line of the documented form: {line!r}"
    return int(m.group(1)), m.group(2), m.group(3)


def test_info_logs_mount_and_unmount_and_nothing_per_message(daemon):
    d = daemon()
    mounted = d.wait_line(r" info: mounted ")
    pid, level, text = parsed(mounted)
    assert pid == d.proc.pid
    assert f"mountpoint={d.path}" in text and "version=" in text
    before = d.lines()
    assert before == [mounted], "at info, start-up says one line"
    traffic(d.path)
    assert d.lines() == before, "nothing per message, request or open at info"
    assert d.stop(signal.SIGTERM) == 0
    lines = d.lines()
    assert [parsed(l)[1:] for l in lines[1:]] == [
        ("notice", "received SIGTERM: unmounting"),
        ("info", f"unmounted mountpoint={d.path} signal=SIGTERM"),
    ], lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_each_signal_is_logged_once(daemon, sig):
    d = daemon()
    d.wait_line(" mounted ")
    assert d.stop(sig) == 0
    name = signal.Signals(sig).name
    received = [l for l in d.lines() if "received" in l]
    assert len(received) == 1 and received[0].endswith(f" notice: received {name}: unmounting"), d.lines()
    assert d.lines()[-1].endswith(f" info: unmounted mountpoint={d.path} signal={name}")


def test_an_unmount_from_outside_is_logged(daemon):
    d = daemon()
    d.wait_line(" mounted ")
    assert subprocess.run(["fusermount3", "-u", d.path], capture_output=True, timeout=10).returncode == 0
    assert d.proc.wait(10) == 0
    assert d.lines()[-1].endswith(f" info: unmounted from outside (umount or fusermount3 -u) mountpoint={d.path}")


@pytest.mark.parametrize("level", ["warning", "error", "critical"])
def test_above_notice_a_clean_run_says_nothing(daemon, level):
    d = daemon("-o", f"log_level={level}")
    traffic(d.path)
    assert d.stop() == 0
    assert d.stderr() == ""


def test_notice_says_the_signal_only(daemon):
    d = daemon("-o", "log_level=notice")
    traffic(d.path)
    assert d.stop() == 0
    assert [parsed(l)[1:] for l in d.lines()] == [("notice", "received SIGTERM: unmounting")]


@pytest.mark.parametrize("level", ["debug", "trace"])
def test_debug_and_trace_add_start_up_details_but_nothing_per_message(daemon, level):
    d = daemon("-o", f"log_level={level}")
    d.wait_line(" mounted ")
    lines = d.lines()
    levels = [parsed(l)[1] for l in lines]
    assert set(levels) == {"debug", "info"}, lines
    starting = next(parsed(l)[2] for l in lines if " debug: starting " in l)
    assert "capacity=256" in starting and "default_permissions" in starting
    traffic(d.path)
    assert d.lines() == lines, "without -d nothing per message, whatever the level"
    assert d.stop() == 0


def test_dash_d_logs_every_request_through_the_log(mcastfs_bin, workdir_base):
    d = Daemon(mcastfs_bin, workdir_base, ["-d"], foreground=False)
    try:
        d.start()
        d.wait_line(" mounted ")
        traffic(d.path, rounds=3)
        d.wait_line(r"opcode: RMDIR")
        assert d.stop() == 0
        lines = d.lines()
        for line in lines:
            parsed(line)  # libfuse's lines too, in the daemon's format
        assert any(" debug: FUSE library version: " in l for l in lines), "libfuse's own lines come through the log"
        requests = [l for l in lines if " debug: unique: " in l and "opcode: " in l]
        assert len(requests) > 20, lines
        assert any("opcode: MKDIR" in l for l in requests) and any("opcode: WRITE" in l for l in requests)
    finally:
        d.cleanup()


def run_refused(cmd, timeout=15.0):
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail(f"{cmd} kept running where it should have refused to start")
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("value", ["verbose", "INFO", "warn", "", "5"])
def test_a_bad_log_level_is_one_line_and_exit_1(mcastfs_bin, workdir_base, value):
    mnt = tempfile.mkdtemp(prefix="badlevel-", dir=workdir_base)
    try:
        code, out, err = run_refused([mcastfs_bin, mnt, "-f", "-o", f"log_level={value}"])
        assert code == 1, (code, err)
        assert out == ""
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"mcastfs: bad option log_level={value}:"), err
        assert "trace, debug, info, notice, warning, error, critical" in lines[0]
        assert not is_fuse_mount(mnt)
    finally:
        os.rmdir(mnt)


# --- the journal -----------------------------------------------------------------


def test_journal_stream_gets_priorities_and_no_time(daemon):
    d = daemon(journal=True)
    d.wait_line(r"^<6>mounted ")
    traffic(d.path)
    assert d.stop() == 0
    lines = d.lines()
    assert all(JOURNAL.match(l) for l in lines), lines
    assert len(lines) == 3, lines
    assert lines[0].startswith("<6>mounted ") and f" mountpoint={d.path} " in lines[0]
    assert lines[1:] == ["<5>received SIGTERM: unmounting", f"<6>unmounted mountpoint={d.path} signal=SIGTERM"]


def test_a_journal_stream_of_another_file_is_ignored(daemon):
    """A child whose stderr was redirected inherits JOURNAL_STREAM: the
    device and inode must be those of its own stderr."""
    st = os.stat("/dev/null")
    d = daemon(journal_stream=f"{st.st_dev}:{st.st_ino}")
    d.wait_line(" mounted ")
    assert d.stop() == 0
    for line in d.lines():
        parsed(line)


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "file"])
def test_in_the_background_the_journal_or_a_file_still_hears_the_unmount(daemon, journal):
    """Without -f (as mount(8) and fstab run it) libfuse points stderr at
    /dev/null; the log keeps the journal's stream or a file, so that the
    unmount is still heard."""
    d = daemon(journal=journal, foreground=False)
    assert d.proc.wait(10) == 0, "the command returns once the mount is live"
    d.wait_line("mounted ")
    traffic(d.path, rounds=3)
    assert subprocess.run(["fusermount3", "-u", d.path], capture_output=True, timeout=10).returncode == 0
    d.wait_line(r"unmounted from outside")
    if journal:
        assert all(JOURNAL.match(l) for l in d.lines()), d.lines()
    else:
        pids = {parsed(l)[0] for l in d.lines()}
        assert len(pids) == 1 and pids != {d.proc.pid}, "the lines name the process that serves, not the one that returned"


def test_in_the_background_a_pipe_is_let_go(mcastfs_bin, workdir_base):
    """A pipe or a terminal on stderr is released, as by every libfuse
    filesystem: `mcastfs MNT 2>&1 | tee` ends when the command returns."""
    mnt = tempfile.mkdtemp(prefix="pipe-", dir=workdir_base)
    try:
        res = subprocess.run([mcastfs_bin, mnt], stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
        assert res.returncode == 0, res.stderr
        assert is_fuse_mount(mnt)
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True, timeout=10)
        wait_for(lambda: not is_fuse_mount(mnt), timeout=10, what="the unmount")
        os.rmdir(mnt)
