"""Bad input, part (b): odd system calls on every kind of entry (the root, a
group directory, `send`, `ctl`, `status`, a member).

Every call must get a clear answer (success or an errno), leave the namespace
and the group's counters as they were when it is refused, and the daemon must
keep serving (a sanity send and receive after each call). The observed errno
of every cell is printed as a table and written to results/odd-calls.md
(results/ is git-ignored); cells the contract or the README decide are also
asserted (EXPECTED).

fd-based calls use an fd opened as a client would: directories O_RDONLY |
O_DIRECTORY, `send` and `ctl` O_WRONLY, `status` O_RDONLY, a member O_RDWR
(all O_NONBLOCK).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import termios

import pytest

from helpers import Group, read_status

from .conftest import RESULTS

KINDS = ("root", "group", "send", "ctl", "status", "member")
TWO_MIB = 2 * 1024 * 1024

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.read.restype = ctypes.c_ssize_t
libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.write.restype = ctypes.c_ssize_t
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
MAP_FAILED = ctypes.c_void_p(-1).value
PROT_READ, MAP_SHARED, MAP_PRIVATE = 1, 1, 2


def ename(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def outcome(fn, *args) -> str:
    """'ok' (or 'ok: detail') or the errno's name."""
    try:
        value = fn(*args)
    except OSError as e:
        return ename(e.errno)
    return "ok" if value is None or value is True else f"ok: {value}"


def c_call(ret: int) -> None:
    if ret == -1:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


# --- the cells the contract (docs/contract.md) decides ---------------------------

REFUSED = {"EPERM", "EINVAL"}  # "an error (EPERM or EINVAL), nothing changes"
XATTR = {"ENOTSUP", "ENODATA"}  # ENOTSUP == EOPNOTSUPP on Linux
EXPECTED: dict[tuple[str, str], set] = {}
for k in ("group", "send", "ctl", "status", "member"):
    EXPECTED[("rename to a new name", k)] = REFUSED
    EXPECTED[("link to a new name", k)] = REFUSED
for k in ("root", "group"):
    EXPECTED[("symlink inside", k)] = REFUSED
    EXPECTED[("mknod FIFO inside", k)] = {"EPERM"}
    EXPECTED[("mknod char device inside", k)] = {"EPERM"}
EXPECTED[("create a regular file inside", "root")] = REFUSED
EXPECTED[("mknod regular file inside", "root")] = REFUSED
EXPECTED[("mknod regular file inside", "group")] = {"ok (joins)"}  # joins like create
EXPECTED[("mkdir inside", "group")] = REFUSED
for k in KINDS:
    for call in ("setxattr user.x", "getxattr user.x", "listxattr", "removexattr user.x"):
        EXPECTED[(call, k)] = XATTR | ({"ok: []"} if call == "listxattr" else set())
    EXPECTED[("readlink", k)] = {"EINVAL"}
    EXPECTED[("utimes", k)] = {"ok"}
    EXPECTED[("chmod (same mode)", k)] = {"ok"}
    EXPECTED[("chown (same owner)", k)] = {"ok"}
for k in ("send", "ctl", "member"):
    EXPECTED[("lseek", k)] = {"ESPIPE"}
    EXPECTED[("write 0 bytes", k)] = {"ok: 0"}
for k in ("send", "ctl", "status", "member"):
    EXPECTED[("truncate to 5", k)] = {"EINVAL"}
    EXPECTED[("truncate to 0", k)] = {"ok"}  # contract: accepted and ignored
for k in ("send", "member"):
    EXPECTED[("write 2 MiB", k)] = {"EMSGSIZE"}
EXPECTED[("write 2 MiB", "ctl")] = {"EINVAL"}
EXPECTED[("read into NULL", "member")] = {"EFAULT"}
for k in ("send", "member"):
    EXPECTED[("write with O_APPEND", k)] = {"ok: 3"}  # one message, as any write
    EXPECTED[("pwrite at 0", k)] = {"ESPIPE"}
EXPECTED[("pread at 0", "member")] = {"ESPIPE"}
EXPECTED[("read into NULL", "status")] = {"EFAULT"}
EXPECTED[("write from NULL", "send")] = {"EFAULT"}
EXPECTED[("write from NULL", "member")] = {"EFAULT"}


@pytest.fixture(scope="module")
def odd(mount):
    g = mount.group("odd", 0o755)
    g.member("m", 0o644)
    g.member("peer", 0o644)
    g.ctl("member peer capacity=1000 queue_bytes=100000000")
    sanity = mount.group("sanity", 0o755)
    sanity.member("r", 0o644)
    return mount, g, sanity


def paths(mount, g: Group) -> dict:
    return {"root": mount.path, "group": g.path, "send": g.p("send"), "ctl": g.p("ctl"),
            "status": g.p("status"), "member": g.p("m")}


OPEN_FLAGS = {
    "root": os.O_RDONLY | os.O_DIRECTORY,
    "group": os.O_RDONLY | os.O_DIRECTORY,
    "send": os.O_WRONLY | os.O_NONBLOCK,
    "ctl": os.O_WRONLY | os.O_NONBLOCK,
    "status": os.O_RDONLY | os.O_NONBLOCK,
    "member": os.O_RDWR | os.O_NONBLOCK,
}


def snapshot(mount, g: Group):
    """What a refused call must not change."""
    st = read_status(g.path)
    modes = {n: os.stat(g.p(n)).st_mode for n in os.listdir(g.path)}
    return sorted(os.listdir(mount.path)), modes, st.group, st.members


def run_call(call: str, kind: str, mount, g: Group) -> str:
    p = paths(mount, g)[kind]
    here = p if kind in ("root", "group") else g.path  # where `... inside` creates
    sibling = os.path.join(os.path.dirname(p), "renamed")

    def with_fd(fn):
        fd = os.open(p, OPEN_FLAGS[kind])
        try:
            return fn(fd)
        finally:
            os.close(fd)

    if call == "rename to a new name":
        return outcome(os.rename, p, sibling)
    if call == "link to a new name":
        return outcome(os.link, p, sibling)
    if call == "symlink inside":
        return outcome(os.symlink, "target", os.path.join(here, "sym"))
    if call == "mknod FIFO inside":
        return outcome(os.mknod, os.path.join(here, "fifo"), stat.S_IFIFO | 0o644)
    if call == "mknod regular file inside":
        target = os.path.join(here, "regular")
        result = outcome(os.mknod, target, stat.S_IFREG | 0o644)
        if result == "ok" and kind == "group":
            joined = "regular" in read_status(g.path).members
            os.unlink(target)
            return "ok (joins)" if joined else "ok (but did not join)"
        return result
    if call == "mknod char device inside":
        return outcome(os.mknod, os.path.join(here, "null"), stat.S_IFCHR | 0o600, os.makedev(1, 3))
    if call == "create a regular file inside":
        return outcome(lambda: os.close(os.open(os.path.join(here, "file"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)))
    if call == "mkdir inside":
        return outcome(os.mkdir, os.path.join(here, "sub"))
    if call == "setxattr user.x":
        return outcome(os.setxattr, p, "user.x", b"1")
    if call == "getxattr user.x":
        return outcome(os.getxattr, p, "user.x")
    if call == "listxattr":
        return outcome(os.listxattr, p)
    if call == "removexattr user.x":
        return outcome(os.removexattr, p, "user.x")
    if call == "readlink":
        return outcome(os.readlink, p)
    if call == "utimes":
        return outcome(os.utime, p, (1_000_000_000, 1_000_000_000))
    if call == "chmod (same mode)":
        return outcome(os.chmod, p, os.stat(p).st_mode & 0o7777)
    if call == "chown (same owner)":
        s = os.stat(p)
        return outcome(os.chown, p, s.st_uid, s.st_gid)
    if call == "truncate to 5":
        return outcome(os.truncate, p, 5)
    if call == "truncate to 0":
        return outcome(os.truncate, p, 0)
    if call == "open O_DIRECT":
        def direct():
            fd = os.open(p, OPEN_FLAGS[kind] | os.O_DIRECT)
            os.close(fd)
        return outcome(direct)
    if call == "open O_TRUNC":
        if kind in ("root", "group"):
            return outcome(lambda: os.close(os.open(p, os.O_WRONLY | os.O_TRUNC)))
        return outcome(lambda: os.close(os.open(p, OPEN_FLAGS[kind] | os.O_TRUNC)))
    if call == "lseek":
        return outcome(with_fd, lambda fd: os.lseek(fd, 0, os.SEEK_SET) and None)
    if call == "fallocate":
        return outcome(with_fd, lambda fd: c_call(libc.fallocate(fd, 0, 0, 4096)))
    if call in ("mmap shared", "mmap private"):
        def mm(fd):
            addr = libc.mmap(None, 4096, PROT_READ, MAP_SHARED if call == "mmap shared" else MAP_PRIVATE, fd, 0)
            if addr in (None, MAP_FAILED):
                c_call(-1)
            libc.munmap(addr, 4096)
        return outcome(with_fd, mm)
    if call == "write 0 bytes":
        return outcome(with_fd, lambda fd: os.write(fd, b""))
    if call == "write 2 MiB":
        return outcome(with_fd, lambda fd: os.write(fd, b"x" * TWO_MIB))
    if call == "read 0 bytes":
        return outcome(with_fd, lambda fd: len(os.read(fd, 0)))
    if call == "read into NULL":
        return outcome(with_fd, lambda fd: c_call(libc.read(fd, None, 64)))
    if call == "write from NULL":
        return outcome(with_fd, lambda fd: c_call(libc.write(fd, None, 64)))
    if call == "fsync":
        return outcome(with_fd, os.fsync)
    if call == "pread at 0":
        return outcome(with_fd, lambda fd: len(os.pread(fd, 16, 0)))
    if call == "pwrite at 0":
        return outcome(with_fd, lambda fd: os.pwrite(fd, b"pw", 0))
    if call == "ioctl FIONREAD":
        return outcome(with_fd, lambda fd: int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4), "little"))
    if call == "flock exclusive, non-blocking":
        return outcome(with_fd, lambda fd: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
    if call == "lockf shared (F_SETLK)":
        return outcome(with_fd, lambda fd: fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB))
    if call == "write with O_APPEND":
        def append():
            fd = os.open(p, OPEN_FLAGS[kind] | os.O_APPEND)
            try:
                return os.write(fd, b"app")
            finally:
                os.close(fd)
        return outcome(append)
    raise AssertionError(call)


CALLS = [
    "rename to a new name", "link to a new name", "symlink inside", "mknod FIFO inside", "mknod char device inside",
    "mknod regular file inside",
    "create a regular file inside", "mkdir inside",
    "setxattr user.x", "getxattr user.x", "listxattr", "removexattr user.x",
    "fallocate", "lseek", "mmap shared", "mmap private", "truncate to 5", "truncate to 0", "open O_TRUNC",
    "open O_DIRECT", "write 2 MiB", "write 0 bytes", "read 0 bytes", "read into NULL", "write from NULL",
    "pread at 0", "pwrite at 0", "write with O_APPEND", "ioctl FIONREAD", "flock exclusive, non-blocking", "lockf shared (F_SETLK)",
    "readlink", "utimes", "chmod (same mode)", "chown (same owner)", "fsync",
]
# Calls that only make sense on some kinds ("inside" needs a directory).
ONLY = {
    "symlink inside": ("root", "group"), "mknod FIFO inside": ("root", "group"),
    "mknod char device inside": ("root", "group"), "create a regular file inside": ("root",),
    "mknod regular file inside": ("root", "group"),
    "mkdir inside": ("group",),
}
# Calls that change something on purpose (and are undone or checked otherwise).
CHANGES = {"mknod regular file inside", "utimes", "chmod (same mode)", "chown (same owner)", "write 2 MiB", "write 0 bytes", "read into NULL",
           "write from NULL", "open O_DIRECT", "open O_TRUNC", "truncate to 0", "fsync", "read 0 bytes", "lseek",
           "fallocate", "mmap shared", "mmap private", "pwrite at 0", "write with O_APPEND", "pread at 0",
           "flock exclusive, non-blocking", "lockf shared (F_SETLK)"}


def alive(sanity: Group, tag: str):
    sanity.send(tag.encode())
    got = sanity.take("r")
    assert got == [tag.encode()], f"after {tag}: the daemon does not serve (got {got})"


def test_odd_calls_on_every_kind_of_entry(odd):
    mount, g, sanity = odd
    table: dict[tuple[str, str], str] = {}
    problems = []
    checked = 0
    for call in CALLS:
        for kind in KINDS:
            if kind not in ONLY.get(call, KINDS):
                continue
            g.take("m"), g.take("peer")
            if call in ("read into NULL", "ioctl FIONREAD") and kind == "member":
                g.send(b"kept")  # a queued message (must survive a read that faults)
            before = snapshot(mount, g)
            result = run_call(call, kind, mount, g)
            table[(call, kind)] = result
            checked += 1
            after = snapshot(mount, g)
            if call not in CHANGES or result.startswith("E"):
                if before != after:
                    problems.append(f"{call} on {kind} -> {result}, but something changed:\n  {before}\n  {after}")
            if call in ("read into NULL", "ioctl FIONREAD") and kind == "member":
                rest = g.take("m")
                if rest != [b"kept"]:
                    problems.append(f"{call} on {kind}: the queued message was lost or changed ({rest})")
                    result = table[(call, kind)] = result + " (message LOST)"
                g.take("peer")
            want = EXPECTED.get((call, kind))
            if want is not None and result not in want:
                problems.append(f"{call} on {kind}: expected {'/'.join(sorted(want))}, got {result}")
            if not mount.running():
                pytest.fail(f"the daemon died after {call} on {kind}")
            alive(sanity, f"{call} on {kind}")
        g.take("peer")

    # anything a refused call might have left behind
    leftovers = sorted(set(os.listdir(g.path)) - {"send", "ctl", "status", "frames", "peers", "m", "peer"})
    root_left = sorted(set(os.listdir(mount.path)) - {"odd", "sanity", ".metrics"})
    assert not leftovers and not root_left, f"left behind: {leftovers} {root_left}"

    lines = render(table, checked)
    print("\n" + "\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "odd-calls.md").write_text("\n".join(lines) + "\n")
    assert not problems, "\n".join(problems)


def render(table, checked) -> list[str]:
    lines = [
        f"# Odd calls on mcastfs: the errno of each ({checked} calls, each followed by a sanity send/receive)",
        "",
        "fd-based calls use an fd opened as a client would: directories O_RDONLY|O_DIRECTORY, `send` and `ctl` "
        "O_WRONLY, `status` O_RDONLY, a member O_RDWR (all O_NONBLOCK). \"inside\" makes a new entry in the "
        "directory. Run as root.",
        "",
        "| call | " + " | ".join(KINDS) + " |",
        "|---|" + "---|" * len(KINDS),
    ]
    for call in CALLS:
        cells = [table.get((call, k), "—") for k in KINDS]
        lines.append(f"| {call} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Notes:",
        "- `read into NULL` on a member with a message queued: EFAULT, and the message stays queued (checked).",
        "- `ioctl FIONREAD` is answered by the kernel from the file size (0), even with a message queued.",
        "- `write 0 bytes` never reaches the daemon (the kernel returns 0): no message is sent, not even an empty one.",
        "- `write 2 MiB` on `ctl` is EINVAL: a command is at most 4 KiB, so the first part of a split write is "
        "refused and nothing is applied.",
        "- rename/link on the root: EBUSY/EXDEV come from the kernel (the root is a mount point).",
        "- `mmap private` of a member or `status` succeeds (size 0: there is nothing to map); shared mappings are ENODEV.",
    ]
    return lines
