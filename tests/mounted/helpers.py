"""Helpers shared by the mounted tests.

Everything here talks to a real mount through real syscalls. Nothing may wait
without a bound: a call that can block runs in a `Call` (a thread the test
waits for with a timeout) or in a subprocess with a timeout, and every polling
loop has a deadline.

The contract these helpers serve is docs/contract.md.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_LIB = str(Path(__file__).resolve().parents[1] / "lib")  # tests/lib: what the suites and the benchmarks share
if _LIB not in sys.path:
    sys.path.insert(0, _LIB)

from mounttable import is_fuse_mount, mounts_at, unmount_lazily  # noqa: E402,F401  (mounts_at: for the tests)


# --- numbers from the contract ------------------------------------------------

MAX_MESSAGE = 1_044_480  # default and upper bound of max_message
DEFAULT_CAPACITY = 256
DEFAULT_QUEUE_BYTES = 4 * 1024 * 1024
MAX_CAPACITY = 1_000_000
MAX_QUEUE_BYTES = 1 << 30
# What every group directory holds (docs/contract.md, "A group directory"):
# its files, frames/ (the framed view) and peers/ (connected groups).
FIXED_FILES = ("send", "ctl", "status")
RESERVED = FIXED_FILES + ("frames", "peers")

GROUP_KEYS = ("send", "capacity", "queue_bytes", "max_message", "members", "sent", "blocked_writers")
MEMBER_KEYS = (
    "queued",
    "queued_bytes",
    "capacity",
    "queue_bytes",
    "loopback",
    "drop_when_full",
    "full",
    "delivered",
    "dropped",
)

# One read with this buffer returns one whole small message. Tests that move
# big messages pass BIG_READ (larger than max_message) explicitly; a 2 MiB
# buffer for every read would make the kernel pin 256 pages per call.
READ_SIZE = 65536
BIG_READ = 2 * 1024 * 1024

NOBODY = 65534

# --- errno assertions ---------------------------------------------------------


def errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def expect_errno(expected, fn, *args, **kwargs):
    """Call fn and assert that it fails with one of the expected errno values."""
    if isinstance(expected, int):
        expected = (expected,)
    try:
        value = fn(*args, **kwargs)
    except OSError as e:
        assert e.errno in expected, (
            f"{getattr(fn, '__name__', fn)}{args!r} failed with {errno_name(e.errno)}, "
            f"expected {'/'.join(errno_name(x) for x in expected)}"
        )
        return e
    raise AssertionError(
        f"{getattr(fn, '__name__', fn)}{args!r} returned {value!r}, "
        f"expected {'/'.join(errno_name(x) for x in expected)}"
    )


# --- bounded waiting ----------------------------------------------------------


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01, what: str = "condition"):
    """Poll predicate until it returns a true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Call:
    """Run fn(*args) in a daemon thread, so that a test can wait for it with a
    timeout. A call that never returns fails the test instead of hanging it;
    the thread is released when the mount goes away at the end of the module."""

    def __init__(self, fn, *args, name: str | None = None, **kwargs):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.value = None
        self.error: BaseException | None = None
        self.tid: int | None = None
        self.started = time.monotonic()
        self.ended: float | None = None
        self._done = threading.Event()
        self._have_tid = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name or f"call-{getattr(fn, '__name__', fn)}", daemon=True)
        self.thread.start()
        self._have_tid.wait(5.0)

    def _run(self):
        self.tid = threading.get_native_id()
        self._have_tid.set()
        try:
            self.value = self.fn(*self.args, **self.kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting test
            self.error = e
        finally:
            self.ended = time.monotonic()
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def result(self, timeout: float = 5.0):
        """The call's return value; re-raises its exception; fails if it is still blocked."""
        if not self._done.wait(timeout):
            raise AssertionError(f"{self.thread.name} still blocked after {timeout}s")
        if self.error is not None:
            raise self.error
        return self.value

    def errno(self, timeout: float = 5.0) -> int:
        """errno of the call's OSError, or 0 when it succeeded."""
        if not self._done.wait(timeout):
            raise AssertionError(f"{self.thread.name} still blocked after {timeout}s")
        if self.error is None:
            return 0
        if isinstance(self.error, OSError):
            return self.error.errno
        raise self.error

    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def wait_blocked(self, timeout: float = 5.0, path: str | None = None):
        """Wait until this call's thread sleeps in read(2) or write(2)."""
        wait_blocked(os.getpid(), tid=self.tid, path=path, timeout=timeout)


# --- /proc inspection ---------------------------------------------------------

_SYSCALLS = {
    "x86_64": {"read": 0, "write": 1},
    "aarch64": {"read": 63, "write": 64},
    "riscv64": {"read": 63, "write": 64},
}


def syscall_numbers(names) -> set[int]:
    table = _SYSCALLS.get(platform.machine(), {})
    return {table[n] for n in names if n in table}


def syscall_of(pid: int, tid: int | None = None):
    """(number, [args]) of the syscall the task sleeps in, or None when it runs
    or /proc cannot tell."""
    where = f"/proc/{pid}/task/{tid}/syscall" if tid else f"/proc/{pid}/syscall"
    try:
        text = Path(where).read_text().split()
    except OSError:
        return None
    if not text or text[0] == "running" or text[0] == "-1":
        return None
    try:
        return int(text[0]), [int(x, 16) for x in text[1:7]]
    except ValueError:
        return None


def task_state(pid: int, tid: int | None = None) -> str | None:
    where = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    try:
        text = Path(where).read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()[0]



def blocked_tasks(pid: int, call: str) -> int:
    """How many threads of `pid` sleep in the syscall `call` (e.g. "read")."""
    numbers = syscall_numbers([call])
    count = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        info = syscall_of(pid, int(tid))
        if info and info[0] in numbers and task_state(pid, int(tid)) in ("S", "D"):
            count += 1
    return count

def fd_path(pid: int, fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def same_file_path(link: str | None, want: str) -> bool:
    """/proc/PID/fd/N names `want`; the kernel appends " (deleted)" once the
    dentry is gone: after rm, or when a later lookup invalidated it."""
    return link is not None and (link == want or link == want + " (deleted)")


def wait_blocked(
    pid: int,
    tid: int | None = None,
    path: str | None = None,
    calls=("read", "write"),
    timeout: float = 5.0,
):
    """Wait until a process (or one of its threads) sleeps in read(2)/write(2),
    on `path` if given. Falls back to a fixed pause where /proc/PID/syscall is
    not available (it needs ptrace access to the task)."""
    numbers = syscall_numbers(calls)
    if not numbers or not os.path.exists(f"/proc/{pid}/syscall"):
        time.sleep(0.5)
        return
    want = os.path.realpath(path) if path else None
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        info = syscall_of(pid, tid)
        if info and info[0] in numbers and task_state(pid, tid) in ("S", "D"):
            if want is None or same_file_path(fd_path(pid, info[1][0]), want):
                seen += 1
                if seen >= 3:  # stable across a few looks, not a passing moment
                    return
        else:
            seen = 0
        if time.monotonic() >= deadline:
            info = syscall_of(pid, tid)
            raise AssertionError(
                f"task {pid}/{tid} not blocked in {calls} on {path} after {timeout}s "
                f"(syscall={info}, fd={fd_path(pid, info[1][0]) if info else None}, state={task_state(pid, tid)})"
            )
        time.sleep(0.005)


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def process_gone(pid: int) -> bool:
    """True when pid no longer runs (exited, or a zombie waiting to be reaped)."""
    state = task_state(pid)
    return state is None or state in ("Z", "X")


# --- non-blocking I/O ---------------------------------------------------------


def set_nonblock(fd: int, on: bool = True):
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, (flags | os.O_NONBLOCK) if on else (flags & ~os.O_NONBLOCK))


def try_read(fd: int, size: int = READ_SIZE) -> bytes | None:
    """One read on a non-blocking fd: the data (b"" at end of file), or None on EAGAIN."""
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None


def try_write(fd: int, data: bytes) -> int | None:
    """One write on a non-blocking fd: the count written, or None on EAGAIN."""
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return None


def drain(fd: int, size: int = READ_SIZE, limit: int = 1_000_000) -> list[bytes]:
    """Read a non-blocking fd until EAGAIN or end of file; the messages read."""
    out = []
    for _ in range(limit):
        data = try_read(fd, size)
        if not data:  # None (EAGAIN) or b"" (end of file)
            return out
        out.append(data)
    raise AssertionError(f"more than {limit} messages")


def read_timeout(fd: int, size: int = READ_SIZE, timeout: float = 5.0) -> bytes:
    """A blocking read, run in a thread and bounded by timeout."""
    return Call(os.read, fd, size, name="read_timeout").result(timeout)


def read_file(path: str, timeout: float = 5.0) -> bytes:
    """The whole content of a file that ends (status), read in a bounded thread."""

    def whole():
        fd = os.open(path, os.O_RDONLY)
        try:
            chunks = []
            while True:
                chunk = os.read(fd, READ_SIZE)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        finally:
            os.close(fd)

    return Call(whole, name="read_file").result(timeout)


# --- status -------------------------------------------------------------------

STATUS_LINE = re.compile(r"^(group|member|user) (\S+)((?: [A-Za-z0-9_]+=\S*)+)$")


@dataclass
class Status:
    """G/status parsed: `group NAME KEY=VALUE ...` then `member NAME KEY=VALUE ...`."""

    text: str
    group_name: str = ""
    group: dict = field(default_factory=dict)
    group_order: list = field(default_factory=list)
    members: dict = field(default_factory=dict)
    member_order: dict = field(default_factory=dict)
    # Limits per user: `user UID KEY=VALUE ...` after the members, by uid.
    users: dict = field(default_factory=dict)
    lines: list = field(default_factory=list)

    def member(self, name: str) -> dict:
        assert name in self.members, f"no member {name!r} in status:\n{self.text}"
        return self.members[name]


def _value(text: str):
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def parse_status(text: str) -> Status:
    status = Status(text=text)
    assert text.endswith("\n"), f"status does not end with a newline: {text!r}"
    lines = text[:-1].split("\n")
    # The group's own lines; the user lines are in `users`.
    status.lines = [line for line in lines if not line.startswith("user ")]
    for i, line in enumerate(lines):
        m = STATUS_LINE.match(line)
        assert m, f"status line {i + 1} is not `KIND NAME KEY=VALUE ...`: {line!r}"
        kind, name, rest = m.groups()
        pairs = [p.split("=", 1) for p in rest.split()]
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"a key repeats in {line!r}"
        values = {k: _value(v) for k, v in pairs}
        if kind == "group":
            assert i == 0, f"the group line must come first: {text!r}"
            status.group_name, status.group, status.group_order = name, values, keys
        elif kind == "user":
            status.users[int(name)] = values
        else:
            assert not status.users, f"member lines come before the user lines: {text!r}"
            assert i > 0, f"status must start with the group line: {text!r}"
            assert name not in status.members, f"member {name!r} listed twice"
            status.members[name] = values
            status.member_order[name] = keys
    assert status.group_name, f"no group line in status: {text!r}"
    return status


def read_status(group_path: str, timeout: float = 5.0) -> Status:
    return parse_status(read_file(os.path.join(group_path, "status"), timeout).decode())


# --- groups and members -------------------------------------------------------


def settings_text(settings: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())


class Group:
    """One group directory under a mount, with the operations tests repeat."""

    def __init__(self, root: str, name: str):
        self.root = root
        self.name = name
        self.path = os.path.join(root, name)

    def __repr__(self):
        return f"Group({self.path!r})"

    def p(self, name: str = "") -> str:
        return os.path.join(self.path, name) if name else self.path

    # settings
    def ctl(self, command) -> None:
        data = command.encode() if isinstance(command, str) else command
        fd = os.open(self.p("ctl"), os.O_WRONLY)
        try:
            n = os.write(fd, data)
        finally:
            os.close(fd)
        assert n == len(data), f"ctl write of {len(data)} bytes returned {n}"

    def set(self, **settings) -> None:
        self.ctl(f"set {settings_text(settings)}")

    def configure(self, member: str, **settings) -> None:
        self.ctl(f"member {member} {settings_text(settings)}")

    def status(self) -> Status:
        return read_status(self.path)

    def member_status(self, name: str) -> dict:
        return self.status().member(name)

    # members
    def member(self, name: str, mode: int = 0o644, **settings) -> str:
        """Create member NAME (O_CREAT|O_EXCL) with exactly `mode` (chmod after
        the umask) and apply its settings; its path."""
        path = self.p(name)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDONLY, mode))
        if os.stat(path).st_mode & 0o7777 != mode:
            os.chmod(path, mode)
        if settings:
            self.configure(name, **settings)
        return path

    def open(self, name: str, flags: int = os.O_RDONLY) -> int:
        return os.open(self.p(name), flags)

    def open_nb(self, name: str, flags: int = os.O_RDONLY) -> int:
        return os.open(self.p(name), flags | os.O_NONBLOCK)

    # sending
    def write_to(self, name: str, data: bytes, nonblock: bool = True) -> int:
        """One write(2) on G/NAME (send or a member), from a fresh open file.
        Non-blocking by default: a full queue raises BlockingIOError."""
        fd = os.open(self.p(name), os.O_WRONLY | (os.O_NONBLOCK if nonblock else 0))
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)

    def send(self, data: bytes, nonblock: bool = True) -> int:
        n = self.write_to("send", data, nonblock)
        assert n == len(data), f"short write on send: {n} of {len(data)}"
        return n

    def send_as(self, member: str, data: bytes, nonblock: bool = True) -> int:
        n = self.write_to(member, data, nonblock)
        assert n == len(data), f"short write on {member}: {n} of {len(data)}"
        return n

    # receiving
    def take(self, name: str, size: int = READ_SIZE) -> list[bytes]:
        """Every message queued for member NAME now (read non-blocking until EAGAIN)."""
        fd = self.open_nb(name)
        try:
            return drain(fd, size)
        finally:
            os.close(fd)

    def take_one(self, name: str, size: int = READ_SIZE) -> bytes | None:
        fd = self.open_nb(name)
        try:
            return try_read(fd, size)
        finally:
            os.close(fd)

    def fill(self, name: str, capacity: int = 1) -> list[bytes]:
        """Make member NAME full and not drop-when-full: capacity messages sent
        as the group. Other members receive them too."""
        self.configure(name, capacity=capacity, drop_when_full=0)
        msgs = [f"fill-{name}-{i}".encode() for i in range(capacity)]
        for m in msgs:
            self.send(m)
        assert self.member_status(name)["full"] == 1
        return msgs


# --- mounts -------------------------------------------------------------------


class Mount:
    """One mcastfs daemon in the foreground (-f, unless foreground=False and
    the args imply it, like -d) on a fresh mount point."""

    def __init__(self, binary: str, base_dir: str, options: str | None = None, args=(), name: str = "mnt",
                 foreground: bool = True):
        self.binary = binary
        self.foreground = foreground
        self.base_dir = base_dir
        self.options = options
        self.args = list(args)
        self.path = os.path.join(base_dir, name)
        os.makedirs(self.path, mode=0o755, exist_ok=True)
        os.chmod(self.path, 0o755)
        self.stderr_path = os.path.join(base_dir, f"{name}.stderr")
        self.stdout_path = os.path.join(base_dir, f"{name}.stdout")
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._groups = 0

    def __repr__(self):
        return f"Mount({self.path!r}, options={self.options!r}, args={self.args!r})"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        cmd = [self.binary, self.path, *(["-f"] if self.foreground else []), *self.args]
        if self.options:
            cmd += ["-o", self.options]
        return cmd

    def start(self, timeout: float = 15.0) -> "Mount":
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # a Ctrl-C at the terminal reaches pytest, not the daemon
            )
        deadline = time.monotonic() + timeout
        while not is_fuse_mount(self.path):
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise AssertionError(
                    f"mcastfs exited with {self.proc.returncode} before mounting {self.path}\n"
                    f"command: {' '.join(self.command())}\nstderr:\n{self.stderr_tail()}"
                )
            if time.monotonic() >= deadline:
                self.kill()
                raise AssertionError(
                    f"{self.path} was not mounted {timeout}s after starting mcastfs\n"
                    f"command: {' '.join(self.command())}\nstderr:\n{self.stderr_tail()}"
                )
            time.sleep(0.02)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def mounted(self) -> bool:
        return is_fuse_mount(self.path)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send sig and wait for the daemon to exit; its exit code (None if it did not)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self):
        """SIGKILL: closing /dev/fuse aborts the connection, which releases every
        call still waiting on the daemon (they fail with ENOTCONN)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.force_unmount()

    def force_unmount(self):
        """Safety net: lazy unmount if the mount outlived its daemon."""
        unmount_lazily(self.path)

    def threads(self) -> int:
        return thread_count(self.pid)

    def stderr_text(self) -> str:
        try:
            return Path(self.stderr_path).read_text(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, limit: int = 4000) -> str:
        text = self.stderr_text()
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def group(self, name: str, mode: int = 0o755) -> Group:
        os.mkdir(os.path.join(self.path, name), mode)
        return Group(self.path, name)


# --- running commands ---------------------------------------------------------


def run(cmd, timeout: float = 10.0, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run with a timeout always, text output captured."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(cmd, timeout=timeout, check=check, **kwargs)


def sh(script: str, timeout: float = 10.0, **kwargs) -> subprocess.CompletedProcess:
    return run(["sh", "-c", script], timeout=timeout, **kwargs)


def read_line(stream, timeout: float = 5.0) -> str:
    """One line from a subprocess pipe, or fail after timeout."""
    call = Call(stream.readline, name="read_line")
    line = call.result(timeout)
    return line.decode() if isinstance(line, bytes) else line


def parse_kv(line: str) -> dict:
    """`a=1 b=x` -> {"a": 1, "b": "x"}"""
    out = {}
    for part in line.split():
        if "=" in part:
            k, v = part.split("=", 1)
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
    return out


class BlockOp:
    """The blockop C helper in a subprocess: one blocking read or write, with
    its result line parsed (ret, errno, late_ms, data)."""

    def __init__(self, blockop: str, op: str, path: str, data: str | None = None, timer_ms: int | None = None,
                 restart: bool = False, nonblock: bool = False, rdwr: bool = False, bufsize: int | None = None):
        cmd = [blockop]
        if timer_ms is not None:
            cmd += ["-t", str(timer_ms)]
        if restart:
            cmd.append("-r")
        if nonblock:
            cmd.append("-n")
        if rdwr:
            cmd.append("-R")
        if bufsize is not None:
            cmd += ["-b", str(bufsize)]
        cmd += [op, path] + ([data] if data is not None else [])
        self.path = path
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = read_line(self.proc.stdout, 10.0).strip()
        assert first == "opened", f"blockop could not open {path}: {first!r}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_blocked(self, timeout: float = 5.0):
        wait_blocked(self.pid, path=self.path, timeout=timeout)

    def result(self, timeout: float = 5.0) -> dict:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"blockop on {self.path} still blocked after {timeout}s") from None
        lines = out.decode().strip().splitlines()
        assert lines, f"blockop printed nothing (exit {self.proc.returncode}, stderr {err!r})"
        res = parse_kv(lines[-1])
        data = res.get("data", "")
        res["data"] = bytes.fromhex(data) if isinstance(data, str) else b""
        return res

    def kill(self, sig: int = signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class FsopResult:
    ok: bool
    errno: int
    call: str
    out: str

    def __str__(self):
        return self.out if self.ok else f"{self.call} -> {errno_name(self.errno)}"


def parse_fsop(stdout: str) -> FsopResult:
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    if line.startswith("ok"):
        return FsopResult(True, 0, "", line[3:])
    parts = line.split()
    if len(parts) == 3 and parts[0] == "err":
        return FsopResult(False, int(parts[2]), parts[1], line)
    raise AssertionError(f"fsop printed {stdout!r}")
