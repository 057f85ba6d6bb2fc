"""The security review (docs/security.md): who may do what to every file the
mount shows, tried as another user; credentials in frames; and what a
client can make the daemon hold.

1. The access matrix: every kind of entry (the root, `.metrics`, a group,
   `send`, `ctl`, `status`, a member, `frames/` and its twins, `peers/` and
   a peer file) x every operation (open for reading, writing or both, stat,
   readdir, chmod, chown, utimes, truncate, setxattr, unlink, rmdir,
   rename, and making every kind of entry in the directories), as uid 65534
   through `setpriv`, on groups of mode 0755, 0770, 0777 and 1777, with and
   without `allow_other`. The expected answers come from the owners and
   modes of the contract and the kernel's rules for them (`expected`
   below): with `default_permissions` the kernel decides, and where it lets
   a call through mcastfs answers as the contract says. The conformance
   matrix (tests/conformance/test_permissions_vs_tmpfs.py) compares the v1
   entries with tmpfs; this one covers the v2 entries and the operations
   that one leaves out.
2. Where the kernel does not decide: `ctl` commands on members of other
   users, private writes, the names a writer can take, and revocations.
3. Credentials: a payload that claims another uid, pid or a frame header
   changes nothing; root in a user namespace is its real uid; pid
   namespaces give the daemon's view of the writer (0 when it has none).
4. What a client can make the daemon hold, with VmRSS figures printed
   (`-s`): an endless line, ctl commands of megabytes, a million patterns,
   a member never read, thousands of opens of frames/ files, names at
   NAME_MAX, random bytes on every writable file; blocked writes, line
   tails and open snapshots charged to their user's user_bytes, and what
   .metrics and status show another user. The hole still open is
   `xfail(strict=True)` with its figure; docs/security.md lists it.

Run as root (FUSE mounts, setpriv, unshare), like the rest of tests/mounted.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import NOBODY, Call, Group, expect_errno, is_fuse_mount, read_status, unmount_lazily, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
import mcastfs  # noqa: E402

MiB = 1 << 20


# --- running operations as another user ----------------------------------------

# One process runs a list of operations and answers each with "ok" or the
# errno's name, so that a whole matrix costs one setpriv. It runs with umask
# 0, so that a mode given is the mode made.
RUNNER = r"""
import errno, json, os, sys
os.umask(0)

def opener(flags):
    return lambda path: os.close(os.open(path, flags | os.O_NONBLOCK))

def write(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)

OPS = {
    "stat": os.stat,
    "open r": opener(os.O_RDONLY),
    "open w": opener(os.O_WRONLY),
    "open rw": opener(os.O_RDWR),
    "readdir": os.listdir,
    "chmod": os.chmod,
    "chown": os.chown,
    "utime": os.utime,
    "truncate 0": lambda path: os.truncate(path, 0),
    "truncate 1": lambda path: os.truncate(path, 1),
    "setxattr": lambda path: os.setxattr(path, "user.mcastfs-test", b"1"),
    "unlink": os.unlink,
    "rmdir": os.rmdir,
    "rename": lambda path: os.rename(path, path + "-renamed"),
    "create": lambda path: os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NONBLOCK, 0o644)),
    "mknod": lambda path: os.mknod(path, 0o100644),
    "mkfifo": lambda path: os.mkfifo(path, 0o644),
    "symlink": lambda path: os.symlink("target", path),
    "link": lambda path, source: os.link(source, path),
    "mkdir": lambda path: os.mkdir(path, 0o755),
    "write": write,
}

out = []
for op, path, *args in json.load(sys.stdin):
    try:
        OPS[op](path, *args)
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(out))
"""


def as_nobody_cmd(python: str, *args: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", python, *args]


@pytest.fixture(scope="session")
def nobody_python() -> str:
    """A Python that uid 65534 may run (the test's own, or the system's)."""
    for python in (sys.executable, "/usr/bin/python3"):
        res = subprocess.run(as_nobody_cmd(python, "-c", "pass"), capture_output=True, timeout=20, cwd="/")
        if res.returncode == 0:
            return python
    pytest.fail("no Python interpreter that uid 65534 can run (for the security tests)", pytrace=False)


@pytest.fixture
def nobody_runs(nobody_python):
    """nobody_runs([(op, path, *args), ...]) -> ["ok" or "EACCES" ...], as uid 65534."""

    def run(steps, prefix=()):
        res = subprocess.run([*prefix, *as_nobody_cmd(nobody_python, "-c", RUNNER)], input=json.dumps(steps),
                             capture_output=True, text=True, timeout=60, cwd="/")
        assert res.returncode == 0, f"the runner as uid {NOBODY}: exit {res.returncode}: {res.stderr}"
        out = json.loads(res.stdout)
        assert len(out) == len(steps)
        return out

    return run


@pytest.fixture
def nobody_python_code(nobody_python):
    """nobody_python_code(code, *args) -> CompletedProcess: Python as uid 65534."""

    def run(code, *args, prefix=(), timeout=60):
        return subprocess.run([*prefix, *as_nobody_cmd(nobody_python, "-c", code, *map(str, args))],
                              capture_output=True, text=True, timeout=timeout, cwd="/")

    return run


@pytest.fixture(scope="module")
def shared(module_mount_factory):
    """A mount by root with allow_other, for uid 65534 to try."""
    return module_mount_factory(options="allow_other")


@pytest.fixture(scope="module")
def private(module_mount_factory):
    """A mount by root without allow_other: only root gets in."""
    return module_mount_factory()


def make_group(root: str, name: str, mode: int) -> Group:
    old = os.umask(0)
    try:
        os.mkdir(os.path.join(root, name), mode)
    finally:
        os.umask(old)
    return Group(root, name)


class OpenHole(Exception):
    """The one failure each xfail below expects (`raises=OpenHole`): what
    docs/security.md lists as open. Any other failure of those tests, in
    their set-up, is a failure."""


def check_bounded(held: int, bound: int, what: str):
    if held >= bound:
        raise OpenHole(f"{what}: the daemon holds {held} bytes more, the bound is {bound}")


def vmrss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def frames_of(path: str, size: int = 1 << 20) -> list:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return mcastfs.read_frames(fd, size)
    finally:
        os.close(fd)


def batch(*messages: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(m)) + m for m in messages)


# --- 1. the access matrix -----------------------------------------------------------

KINDS = ("root", ".metrics", "group", "send", "ctl", "status", "member",
         "frames", "frames/send", "frames/member", "peers", "peers/member")
DIRECTORIES = {"root", "group", "frames", "peers"}
# The directories each kind is reached through, outermost first.
PARENTS = {
    "root": (), ".metrics": ("root",), "group": ("root",),
    "send": ("root", "group"), "ctl": ("root", "group"), "status": ("root", "group"), "member": ("root", "group"),
    "frames": ("root", "group"), "peers": ("root", "group"),
    "frames/send": ("root", "group", "frames"), "frames/member": ("root", "group", "frames"),
    "peers/member": ("root", "group", "peers"),
}
GROUP_MODES = (0o755, 0o770, 0o777, 0o1777)
ENTRY_OPS = ("stat", "open r", "open w", "open rw", "readdir", "chmod", "chown", "utime",
             "truncate 0", "truncate 1", "setxattr")
REMOVING_OPS = ("rename", "rmdir", "unlink")
MAKING_OPS = ("create", "mknod", "mkfifo", "symlink", "link", "mkdir")


# fs.protected_hardlinks=1 (the default of most distributions) refuses a
# hard link to another user's file one may not write, before the directory's
# permission is checked.
PROTECTED_HARDLINKS = Path("/proc/sys/fs/protected_hardlinks").read_text().strip() == "1"


def mode_of(kind: str, mode: int, root_mode: int = 0o755) -> int:
    """Each entry's mode, as the contract makes it, in a group of `mode` made
    by root (members made by root 0644)."""
    return {
        "root": root_mode, ".metrics": 0o444, "group": mode,
        "send": mode & 0o222, "ctl": mode & 0o200, "status": mode & 0o444, "member": 0o644,
        "frames": mode, "frames/send": mode & 0o222, "frames/member": 0o644,
        "peers": mode & 0o700, "peers/member": mode & 0o600,
    }[kind]


def expected(kind: str, op: str, mode: int) -> str:
    """What uid 65534 (owner of nothing, in no group of the entries) gets,
    with allow_other, for `op` on `kind` in a group of `mode` owned by root:
    the kernel's checks of the contract's owners and modes (fs/namei.c,
    fs/attr.c, fs/xattr.c: path search, may_open, may_delete with the sticky
    rule, may_create, setattr_prepare, xattr_permission, protected hardlinks),
    then what mcastfs answers for the calls they let through."""
    other = {k: mode_of(k, mode) & 0o7 for k in KINDS}
    sticky = {k: bool(mode_of(k, mode) & 0o1000) for k in KINDS}
    if not all(other[p] & 1 for p in PARENTS[kind]):
        return "EACCES"  # a directory on the way may not be searched
    r, w = other[kind] & 4, other[kind] & 2
    is_dir = kind in DIRECTORIES
    if op == "stat":
        return "ok"
    if op == "open r":
        return "ok" if r else "EACCES"
    if op in ("open w", "open rw"):
        if is_dir:
            return "EISDIR"
        return "ok" if w and (r or op == "open w") else "EACCES"
    if op == "readdir":
        if not is_dir:
            return "ENOTDIR"
        return "ok" if r else "EACCES"
    if op in ("chmod", "chown"):
        return "EPERM"  # not the owner, no CAP_FOWNER or CAP_CHOWN
    if op == "utime":
        return "ok" if w else "EACCES"  # "now" needs the owner or write access
    if op in ("truncate 0", "truncate 1"):
        if is_dir:
            return "EISDIR"
        if not w:
            return "EACCES"
        return "ok" if op == "truncate 0" else "EINVAL"  # 0 is ignored, any other size EINVAL
    if op == "setxattr":
        if is_dir and sticky[kind]:
            return "EPERM"  # user.* on a sticky directory: its owner only
        return "ENOTSUP" if w else "EACCES"  # mcastfs has no xattrs
    if op in REMOVING_OPS:
        parent = PARENTS[kind][-1]
        if not other[parent] & 2:
            return "EACCES"
        if sticky[parent]:
            return "EPERM"  # neither the entry's owner nor the directory's
        if op == "unlink" and is_dir:
            return "EISDIR"
        if op == "rmdir" and not is_dir:
            return "ENOTDIR"
        if op == "unlink" and kind == "member":
            return "ok"  # NAME leaves
        return "EPERM"  # renames, and removing anything but a member, are refused
    if op in MAKING_OPS:
        assert is_dir
        if not other[kind] & 1:
            return "EACCES"  # the new entry's directory may not be searched
        if op == "link":
            if not all(other[p] & 1 for p in PARENTS["member"]):
                return "EACCES"  # the member linked may not be reached
            if PROTECTED_HARDLINKS:
                return "EPERM"  # a file of another user that it may not write
        if not other[kind] & 2:
            return "EACCES"
        if kind == "group" and op in ("create", "mknod"):
            return "ok"  # a regular file in a group joins it
        if kind == "root" and op == "mkdir":
            return "ok"
        return "EPERM"  # nothing else is made anywhere
    raise AssertionError(f"no rule for {op}")


def entry_path(kind: str, root: str, group: str, member: str = "owned") -> str:
    g = os.path.join(root, group)
    return {
        "root": root, ".metrics": os.path.join(root, ".metrics"), "group": g,
        "send": os.path.join(g, "send"), "ctl": os.path.join(g, "ctl"), "status": os.path.join(g, "status"),
        "member": os.path.join(g, member), "frames": os.path.join(g, "frames"),
        "frames/send": os.path.join(g, "frames", "send"), "frames/member": os.path.join(g, "frames", member),
        "peers": os.path.join(g, "peers"), "peers/member": os.path.join(g, "peers", member),
    }[kind]


def matrix_steps(root: str, group: str) -> list[tuple]:
    """(kind, op, step) in an order where nothing removed is needed later:
    the entries first, then renames and removals (of `victim`'s entries
    where a member's are meant, its own peer file and twin first), then
    new entries in every directory."""
    steps = []
    for kind in KINDS:
        path = entry_path(kind, root, group)
        for op in ENTRY_OPS:
            # chmod to the mode it has, chown to take it: only the answer matters.
            args = {"chmod": [os.stat(path).st_mode & 0o7777], "chown": [NOBODY, NOBODY]}.get(op, [])
            steps.append((kind, op, (op, path, *args)))
    order = ("frames/member", "frames/send", "peers/member", "frames", "peers", "send", "ctl", "status",
             ".metrics", "group", "member")
    for kind in order:
        for op in REMOVING_OPS:
            path = entry_path(kind, root, group, member="victim" if op != "rename" else "owned")
            steps.append((kind, op, (op, path)))
    for kind in ("root", "group", "frames", "peers"):
        directory = entry_path(kind, root, group)
        for op in MAKING_OPS:
            new = os.path.join(directory, f"new-{op}-in-{kind.replace('/', '-')}")
            args = [entry_path("member", root, group)] if op == "link" else []
            steps.append((kind, op, (op, new, *args)))
    return steps


def set_up_matrix_group(m, name: str, mode: int, root_mode: int = 0o755) -> Group:
    g = make_group(m.path, name, mode)
    for member in ("owned", "victim"):
        g.member(member, mode=0o644)
    # The harness tests what it says: the modes are the contract's.
    for kind in KINDS:
        st = os.stat(entry_path(kind, m.path, name))
        want = mode_of(kind, mode, root_mode)
        assert stat.S_IMODE(st.st_mode) == want, f"{kind}: mode {stat.S_IMODE(st.st_mode):o}, the contract says {want:o}"
        assert (st.st_uid, st.st_gid) == (0, 0), kind
    return g


def print_matrix(title: str, results: dict):
    print(f"\n{title}")
    print(f"  {'entry':14} {'operation':11} " + " ".join(f"{mode:>7o}" for mode in GROUP_MODES))
    for (kind, op) in sorted({(k, o) for (k, o, _) in results}, key=lambda ko: (KINDS.index(ko[0]), ko[1])):
        cells = []
        for mode in GROUP_MODES:
            got, want = results.get((kind, op, mode), ("", ""))
            cells.append(f"{got:>7}" if got == want else f"{got + '!' + want:>7}")
        print(f"  {kind:14} {op:11} " + " ".join(cells))


@pytest.mark.timeout(120)
def test_access_matrix_as_another_user_with_allow_other(shared, nobody_runs):
    results, wrong = {}, []
    for mode in GROUP_MODES:
        name = f"matrix-{mode:o}"
        set_up_matrix_group(shared, name, mode)
        steps = matrix_steps(shared.path, name)
        answers = nobody_runs([s for _, _, s in steps])
        for (kind, op, step), got in zip(steps, answers):
            want = expected(kind, op, mode)
            results[(kind, op, mode)] = (got, want)
            if got != want:
                wrong.append(f"mode {mode:04o} {kind} {op} ({step[1]}): got {got}, the contract says {want}")
    print_matrix(f"access matrix, uid {NOBODY}, allow_other ({len(results)} cases; got!expected where they differ)",
                 results)
    assert not wrong, "\n".join(wrong)
    # What the matrix let through changed what it should, and nothing else.
    for mode in GROUP_MODES:
        st = read_status(os.path.join(shared.path, f"matrix-{mode:o}"))
        joined = {n for n in st.members if n.startswith("new-")}
        assert ("victim" in st.members) == (expected("member", "unlink", mode) != "ok")
        assert "owned" in st.members
        assert joined == ({"new-create-in-group", "new-mknod-in-group"} if expected("group", "create", mode) == "ok"
                          else set())
        for new in joined:
            s = os.stat(os.path.join(shared.path, f"matrix-{mode:o}", new))
            assert (s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)) == (NOBODY, NOBODY, 0o644)


def test_without_allow_other_another_user_gets_nothing(private, nobody_runs):
    os.chmod(private.path, 0o777)
    try:
        results, wrong = {}, []
        for mode in GROUP_MODES:
            name = f"closed-{mode:o}"
            set_up_matrix_group(private, name, mode, root_mode=0o777)
            steps = matrix_steps(private.path, name)
            for (kind, op, step), got in zip(steps, nobody_runs([s for _, _, s in steps])):
                # The kernel refuses every call from another user before
                # mcastfs sees it (fuse_allow_current_process), but for the
                # root, which is reached without asking the filesystem:
                # opening a directory for writing (may_open) and truncating
                # one (vfs_truncate) are EISDIR before any permission check.
                want = "EISDIR" if kind == "root" and op in ("open w", "open rw", "truncate 0", "truncate 1") else "EACCES"
                results[(kind, op, mode)] = (got, want)
                if got != want:
                    wrong.append(f"mode {mode:04o} {kind} {op}: got {got}, want {want}")
        print_matrix(f"uid {NOBODY} without allow_other ({len(results)} cases)", results)
        assert not wrong, "\n".join(wrong)
        for mode in GROUP_MODES:
            st = read_status(os.path.join(private.path, f"closed-{mode:o}"))
            assert set(st.members) == {"owned", "victim"}
    finally:
        os.chmod(private.path, 0o755)


def test_a_member_of_its_own_is_its_own_in_every_view(shared, nobody_runs):
    """What uid 65534 made (a member in a 0777 group) is its own through
    every name: its twin in frames/ too; its peer file stays the group's."""
    g = make_group(shared.path, "own-member", 0o777)
    own, twin, peer = g.p("mine"), g.p("frames/mine"), g.p("peers/mine")
    steps = [("create", own), ("chmod", twin, 0o600), ("open rw", twin), ("open rw", own),
             ("chown", own, 0, 0), ("open r", peer), ("chmod", peer, 0o666), ("unlink", twin), ("unlink", own)]
    got = nobody_runs(steps)
    assert got == ["ok", "ok", "ok", "ok", "EPERM", "EACCES", "EACCES", "EPERM", "ok"], list(zip(steps, got))


# --- 2. where the kernel does not decide --------------------------------------------


def test_ctl_is_the_groups_whoever_owns_the_member(shared, nobody_runs):
    """`ctl` is the group owner's (mode & 0200): the owner of a member may
    not configure it through ctl, and whoever may write ctl configures
    every member, whoever owns it. mcastfs checks no member owner: giving
    ctl away gives away the group's settings and every member's."""
    g = make_group(shared.path, "ctl-authority", 0o777)
    g.member("roots", mode=0o644)
    assert nobody_runs([("create", g.p("mine"))]) == ["ok"]
    assert nobody_runs([("write", g.p("ctl"), "member mine subscribe=a.b")]) == ["EACCES"]
    g.configure("mine", subscribe="x.y", capacity=5)  # the group's owner configures nobody's member
    assert (g.member_status("mine")["subscribe"], g.member_status("mine")["capacity"]) == ("x.y", 5)
    os.chmod(g.p("ctl"), 0o222)
    got = nobody_runs([("write", g.p("ctl"), "member roots drop_when_full=1 subscribe=only.this"),
                       ("write", g.p("ctl"), "member mine subscribe="),
                       ("write", g.p("ctl"), "set send=members")])
    assert got == ["ok", "ok", "ok"]
    st = g.status()
    assert (st.member("roots")["drop_when_full"], st.member("roots")["subscribe"]) == (1, "only.this")
    assert st.member("mine")["subscribe"] == "" and st.group["send"] == "members"


def test_a_member_file_lends_its_name_never_its_writers_credentials(shared, nobody_python_code):
    """Whoever may write a member file sends as that member (its name in
    frames) but with their own uid, gid and pid: the name is as good as the
    file's mode, the credentials are the kernel's."""
    g = make_group(shared.path, "lent-name", 0o755)
    g.member("roots", mode=0o666)
    g.member("reader")
    code = ("import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY); os.write(fd, b'as roots'); "
            "print(os.getpid())")
    res = nobody_python_code(code, g.p("roots"))
    assert res.returncode == 0, res.stderr
    (frame,) = frames_of(g.p("frames/reader"))
    assert (bytes(frame.payload), frame.sender) == (b"as roots", "roots")
    assert (frame.uid, frame.gid, frame.pid) == (NOBODY, NOBODY, int(res.stdout))


def test_a_private_write_reaches_its_member_alone_with_its_writers_credentials(shared, nobody_python_code):
    """Private writes need write access to the peer file (0600 of the
    group's owner unless changed); given it, another user's answer is
    marked private, has no sender name and carries that user's uid."""
    g = make_group(shared.path, "private-writes", 0o755)
    g.member("client")
    g.member("bystander")
    code = ("import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK); os.write(fd, b'answer'); "
            "print(os.getpid())")
    denied = nobody_python_code(code, g.p("peers/client"))
    assert denied.returncode != 0 and "PermissionError" in denied.stderr
    os.chmod(g.p("peers"), 0o711)
    os.chmod(g.p("peers/client"), 0o602)
    res = nobody_python_code(code, g.p("peers/client"))
    assert res.returncode == 0, res.stderr
    (frame,) = frames_of(g.p("frames/client"))
    assert (bytes(frame.payload), frame.private, frame.sender) == (b"answer", True, None)
    assert (frame.uid, frame.gid, frame.pid) == (NOBODY, NOBODY, int(res.stdout))
    assert g.take("bystander") == []


def test_a_revocation_applies_at_once_through_every_name(shared, nobody_runs):
    """`send` and members get a kernel inode per lookup (their twins in
    frames/ and the peer files too), so a chmod is seen by the next open
    through any name, without waiting for the 1 s attribute cache; `ctl`,
    `status` and the directories are cached, and changed through this
    kernel, which updates its cache."""
    g = make_group(shared.path, "revoked", 0o755)
    g.member("m", mode=0o644)
    os.chmod(g.p("send"), 0o222)
    os.chmod(g.p("ctl"), 0o222)
    os.chmod(g.p("peers"), 0o755)
    os.chmod(g.p("peers/m"), 0o604)
    opens = [("open r", g.p("frames/m")), ("open r", g.p("m")), ("open w", g.p("frames/send")),
             ("open w", g.p("send")), ("open w", g.p("ctl")), ("open r", g.p("peers/m")),
             ("readdir", g.p("frames")), ("open r", g.p("status"))]
    assert nobody_runs(opens) == ["ok"] * len(opens)
    os.chmod(g.p("m"), 0o600)
    os.chmod(g.p("send"), 0o200)
    os.chmod(g.p("ctl"), 0o200)
    os.chmod(g.p("peers/m"), 0o600)
    os.chmod(g.p("frames"), 0o711)
    os.chmod(g.p("status"), 0o400)
    assert nobody_runs(opens) == ["EACCES"] * len(opens)
    # And a chown takes the file from its owner at once, in every view.
    os.chown(g.p("frames/m"), NOBODY, NOBODY)
    assert nobody_runs([("open rw", g.p("m")), ("chmod", g.p("frames/m"), 0o640)]) == ["ok", "ok"]
    assert stat.S_IMODE(os.stat(g.p("m")).st_mode) == 0o640


# --- 3. credentials ---------------------------------------------------------------------

# What a frame header of uid 0, gid 0, pid 1 would look like, as payload.
FAKE_HEADER = struct.pack("<IHBBQQIIII", 5, 40, 0, 0, 1, 0, 1, 0, 0, 0) + b"root!"


def test_a_payload_that_claims_other_credentials_changes_nothing(shared, nobody_python_code):
    """A framed writer whose records look like frames of uid 0 (or say so in
    words), and a record writer who writes a frame header: every frame
    carries the kernel's credentials of the writer, and the payload is
    delivered as written."""
    g = make_group(shared.path, "forged", 0o777)
    g.member("r")
    code = r"""
import os, struct, sys
frames, send, fake = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
fd = os.open(frames, os.O_WRONLY)
records = [fake, b"uid=0 gid=0 pid=1", fake + fake]
os.write(fd, b"".join(struct.pack("<I", len(m)) + m for m in records))
os.close(fd)
fd = os.open(send, os.O_WRONLY)
os.write(fd, fake)
os.close(fd)
print(os.getpid())
"""
    res = nobody_python_code(code, g.p("frames/send"), g.p("send"), FAKE_HEADER.hex())
    assert res.returncode == 0, res.stderr
    frames = frames_of(g.p("frames/r"))
    assert [bytes(f.payload) for f in frames] == [FAKE_HEADER, b"uid=0 gid=0 pid=1", FAKE_HEADER * 2, FAKE_HEADER]
    for f in frames:
        assert (f.uid, f.gid, f.pid, f.sender, f.private) == (NOBODY, NOBODY, int(res.stdout), None, False)


def test_root_in_a_user_namespace_is_its_real_user(shared, nobody_python_code):
    """uid 65534 that made itself root in a user namespace of its own
    (`unshare --user --map-root-user`) writes as 65534, and is 65534 to the
    permission checks: the kernel maps both to the mount's namespace."""
    g = make_group(shared.path, "userns", 0o755)
    g.member("r")
    os.chmod(g.p("send"), 0o222)
    code = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.write(fd, b"root, says I")
os.close(fd)
try:
    os.open(sys.argv[2], os.O_WRONLY)
    ctl = "ok"
except PermissionError:
    ctl = "EACCES"
print(os.getuid(), os.getpid(), ctl)
"""
    # setpriv drops to 65534 first, then unshare makes the namespace: the
    # order of the prefix is the order they run in.
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
              "unshare", "--user", "--map-root-user", "--"]
    for python in ("/usr/bin/python3", sys.executable):  # /root may not be searched from a user namespace
        res = subprocess.run([*prefix, python, "-c", code, g.p("send"), g.p("ctl")],
                             capture_output=True, text=True, timeout=30, cwd="/")
        if res.returncode != 126:
            break
    assert res.returncode == 0, res.stderr
    uid_inside, pid, ctl = res.stdout.split()
    assert uid_inside == "0", "the writer is root in its own namespace"
    assert ctl == "EACCES", "and nobody to mcastfs's ctl (0200 of root)"
    (frame,) = frames_of(g.p("frames/r"))
    assert (bytes(frame.payload), frame.uid, frame.gid, frame.pid) == (b"root, says I", NOBODY, NOBODY, int(pid))


def nspid(status_text: str) -> list[int]:
    for line in status_text.splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError("no NSpid in /proc/self/status")


WRITE_AND_SAY_PIDS = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.write(fd, sys.argv[2].encode())
os.close(fd)
print(os.getpid(), open("/proc/self/status").read().split("NSpid:")[1].split("\n")[0].strip())
"""


def test_a_writer_in_a_child_pid_namespace_has_the_pid_the_daemon_sees(shared):
    """The kernel gives the writer's pid in the pid namespace of whoever
    mounted (fs/fuse/dev.c: pid_nr_ns(task_pid(current), fc->pid_ns)): a
    writer in a child namespace of the daemon's is visible from it, with
    its outer pid; its own pid (1 here) is not what frames show."""
    g = make_group(shared.path, "child-pidns", 0o755)
    g.member("r")
    res = subprocess.run(["unshare", "--pid", "--fork", "--", sys.executable, "-c", WRITE_AND_SAY_PIDS, g.p("send"),
                          "from a child namespace"], capture_output=True, text=True, timeout=30, cwd="/")
    assert res.returncode == 0, res.stderr
    own, *ns = res.stdout.split()
    outer, inner = int(ns[0]), int(ns[-1])
    assert int(own) == inner == 1 and outer != 1, res.stdout
    (frame,) = frames_of(g.p("frames/r"))
    assert (bytes(frame.payload), frame.pid, frame.uid) == (b"from a child namespace", outer, 0)


@pytest.mark.timeout(60)
def test_writers_a_daemon_in_its_own_pid_namespace_cannot_see_have_pid_0(mcastfs_bin, workdir_base):
    """A daemon started in a pid namespace of its own (`unshare --pid
    --fork`), which mounts from there: every writer outside that namespace
    (the test, in the first namespace; a writer in a sibling namespace) has
    no pid in it, and frames say 0; uid and gid are still the writer's."""
    mnt = os.path.join(workdir_base, "pidns-daemon")
    os.makedirs(mnt, exist_ok=True)
    os.chmod(mnt, 0o755)
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child=SIGTERM", "--", mcastfs_bin, mnt, "-f",
                             "-o", "allow_other"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for(lambda: is_fuse_mount(mnt) or proc.poll() is not None, timeout=15, what="the mount")
        assert proc.poll() is None, proc.stderr.read().decode()
        daemon = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        assert nspid(Path(f"/proc/{daemon}/status").read_text())[-1] == 1, "the daemon is pid 1 of its namespace"
        g = make_group(mnt, "outside", 0o777)
        g.member("r")
        g.send(b"from the first namespace")
        sibling = subprocess.run(["unshare", "--pid", "--fork", "--", sys.executable, "-c", WRITE_AND_SAY_PIDS,
                                  g.p("send"), "from a sibling namespace"], capture_output=True, text=True, timeout=30)
        assert sibling.returncode == 0, sibling.stderr
        frames = frames_of(g.p("frames/r"))
        assert [bytes(f.payload) for f in frames] == [b"from the first namespace", b"from a sibling namespace"]
        assert [(f.pid, f.uid, f.gid) for f in frames] == [(0, 0, 0), (0, 0, 0)]
        os.unlink(g.p("r"))
        os.rmdir(g.path)
        os.kill(daemon, signal.SIGTERM)
        assert proc.wait(10) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        unmount_lazily(mnt)
        os.rmdir(mnt)


# --- 4. what a client can make the daemon hold ------------------------------------------------


def test_an_endless_line_is_cut_off_at_max_message(mount_factory):
    """A writer that never writes a newline on a line group: the tail waits
    in its open file until it would pass max_message, then every write is
    EMSGSIZE and the tail stays as it was; a newline sends it. What it costs
    is bounded by max_message per open file (and by user_bytes over many
    open files, see below), and each write copies the tail (time per 1-byte write
    printed)."""
    m = mount_factory()
    g = m.group("endless")
    g.set(message="line")
    g.member("r")
    fd = os.open(g.p("send"), os.O_WRONLY)
    try:
        t = time.perf_counter()
        for _ in range(200):
            os.write(fd, b"a")
        short_tail = (time.perf_counter() - t) / 200
        rss_before = vmrss_kib(m.pid)
        chunk = b"b" * 65536
        accepted, refused = 200, 0
        for _ in range(64):  # 4 MiB offered, max_message is 1,044,480
            try:
                accepted += os.write(fd, chunk)
            except OSError as e:
                assert e.errno == errno.EMSGSIZE
                refused += 1
        rss_after = vmrss_kib(m.pid)
        assert accepted == 200 + 15 * 65536 and refused == 64 - 15
        t = time.perf_counter()
        for _ in range(200):
            try:
                os.write(fd, b"c")
                accepted += 1
            except OSError as e:
                assert e.errno == errno.EMSGSIZE
        long_tail = (time.perf_counter() - t) / 200
        os.write(fd, b"\n")
    finally:
        os.close(fd)
    (line,) = g.take("r", size=2 * MiB)
    assert len(line) <= 1_044_480 and line.endswith(b"\n") and len(line) == accepted + 1
    print(f"\nendless line: {accepted} bytes taken of {200 + 64 * 65536 + 200}, {refused} writes EMSGSIZE; "
          f"VmRSS {rss_before} -> {rss_after} KiB; a 1-byte write {short_tail * 1e6:.0f} us at an empty tail, "
          f"{long_tail * 1e6:.0f} us at a {accepted - 200} byte one")
    assert (rss_after - rss_before) * 1024 < 4 * MiB


def test_ctl_commands_of_megabytes_are_refused_and_cost_nothing(mount_factory):
    """A ctl write longer than 4,096 bytes is EINVAL at once and applies
    nothing, however long (a writev of 8 MiB is cut by the kernel: its
    first part is refused, and the call with it)."""
    m = mount_factory()
    g = m.group("megactl")
    g.member("x")
    before = g.status().text
    rss_before = vmrss_kib(m.pid)
    big = b"member x subscribe=" + b"a." * (MiB // 2) + b"a"
    fd = os.open(g.p("ctl"), os.O_WRONLY)
    try:
        for _ in range(200):
            expect_errno(errno.EINVAL, os.write, fd, big[:1_044_480])
        for _ in range(20):
            expect_errno(errno.EINVAL, os.writev, fd, [big] * 8)
        expect_errno(errno.EINVAL, os.write, fd, b"set capacity=5 " + b" " * 4096)
    finally:
        os.close(fd)
    rss_after = vmrss_kib(m.pid)
    print(f"\n200 ctl writes of 1 MiB and 20 writevs of 8 MiB: VmRSS {rss_before} -> {rss_after} KiB")
    assert g.status().text == before
    assert (rss_after - rss_before) * 1024 < 8 * MiB


@pytest.mark.timeout(120)
def test_a_third_of_a_million_patterns_leave_nothing_behind(mount_factory):
    """A member's patterns set again and again, each time 64 new ones (the
    most a member may have), 320,000 patterns in all: the daemon's memory
    stays as it was after the first thousand commands (the token trie keeps
    nothing of patterns replaced); 65 patterns or 4,097 bytes are EINVAL."""
    m = mount_factory()
    g = m.group("patterns")
    g.member("filtered")
    g.member("open")
    fd = os.open(g.p("ctl"), os.O_WRONLY)
    try:
        def command(i):
            return f"member filtered subscribe={','.join(f't{i}.p{j}.*' for j in range(64))}".encode()
        for i in range(1000):
            os.write(fd, command(i))
        rss_warm = vmrss_kib(m.pid)
        t = time.perf_counter()
        for i in range(1000, 5000):
            os.write(fd, command(i))
        elapsed = time.perf_counter() - t
        expect_errno(errno.EINVAL, os.write, fd, command(0).replace(b"=", b"=x.y,", 1))  # 65 patterns
        expect_errno(errno.EINVAL, os.write, fd, b"member filtered subscribe=" + b"a" * 4096)
    finally:
        os.close(fd)
    rss_after = vmrss_kib(m.pid)
    assert g.member_status("filtered")["subscribe"].startswith("t4999.p0.*,")
    g.send(b"t4999.p5.x hello")
    g.send(b"t1.p5.x stale")
    assert g.take("filtered") == [b"t4999.p5.x hello"]
    assert g.take("open") == [b"t4999.p5.x hello", b"t1.p5.x stale"]
    print(f"\n4,000 subscribe commands of 64 patterns after 1,000 in {elapsed:.1f} s "
          f"({4000 / elapsed:.0f}/s): VmRSS {rss_warm} -> {rss_after} KiB")
    assert (rss_after - rss_warm) * 1024 < 8 * MiB


MEMBER_NEVER_READ = [
    pytest.param(65536, id="64KiB-messages"),
    pytest.param(1, id="1-byte-messages", marks=pytest.mark.xfail(strict=True, raises=OpenHole, reason=(
        "user_bytes counts payload bytes, not what a message costs the daemon: a 1-byte message "
        "takes about 100 bytes (its allocation and a queue slot), so a user's tiny messages hold "
        "about 100 times user_bytes (docs/security.md, 'Open')"))),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", MEMBER_NEVER_READ)
def test_a_member_never_read_is_bounded_by_its_owners_user_bytes(mount_factory, nobody_runs, size):
    """A member of uid 65534 that is never read, given the largest queue
    (capacity 1,000,000, queue_bytes 1 GiB): once its owner's user_bytes
    (4 MiB here) is reached, sends wait (EAGAIN); what the daemon holds
    stays within a small multiple of user_bytes (the bound of
    test_user_limits' flood, 3 x user_bytes + 32 MiB)."""
    limit = 4 * MiB
    m = mount_factory(options=f"allow_other,user_bytes={limit}")
    g = make_group(m.path, "hoard", 0o777)
    assert nobody_runs([("create", g.p("hoard"))]) == ["ok"]
    g.configure("hoard", capacity=1_000_000, queue_bytes=1 << 30)
    rss_before = vmrss_kib(m.pid)
    per_batch = max(1, min(1_044_480 // (size + 4), 1_044_480 // (size + 4)))
    one = batch(*[b"x" * size] * per_batch)
    fd = os.open(g.p("frames/send"), os.O_WRONLY | os.O_NONBLOCK)
    sent = 0
    try:
        while True:
            try:
                n = os.write(fd, one)
            except BlockingIOError:
                break
            sent += n // (size + 4)
            if sent >= 1_000_000:
                break
    finally:
        os.close(fd)
    rss_after = vmrss_kib(m.pid)
    st = g.status()
    charged = st.users[NOBODY]["queued_bytes"]
    print(f"\na member never read, {size}-byte messages: {sent} sent, {charged} bytes charged to its owner "
          f"(user_bytes {limit}); VmRSS {rss_before} -> {rss_after} KiB "
          f"({(rss_after - rss_before) * 1024 / max(charged, 1):.1f} bytes held per byte charged)")
    assert charged == st.member("hoard")["queued_bytes"] == sent * size
    check_bounded((rss_after - rss_before) * 1024, 3 * limit + 32 * MiB, f"a member never read, {size}-byte messages")


@pytest.mark.timeout(120)
def test_many_opens_of_frames_files_cost_little_and_leave_nothing(mount_factory):
    """20,000 opens and closes of frames/ twins (each open is a kernel inode
    of its own, an alias the daemon forgets when the kernel does), and 5,000
    held at once: the daemon's memory grows by little per open file and
    goes back when they are closed."""
    m = mount_factory()
    g = m.group("opens")
    g.member("m")
    rss_start = vmrss_kib(m.pid)
    t = time.perf_counter()
    for i in range(10000):
        os.close(os.open(g.p("frames/m"), os.O_RDONLY | os.O_NONBLOCK))
        os.close(os.open(g.p("frames/send"), os.O_WRONLY))
    churn = time.perf_counter() - t
    rss_churned = vmrss_kib(m.pid)
    held = [os.open(g.p("frames/m"), os.O_RDWR | os.O_NONBLOCK) for _ in range(5000)]
    rss_held = vmrss_kib(m.pid)
    for fd in held:
        os.close(fd)
    wait_for(lambda: "m" in g.status().members, what="the daemon to answer")
    time.sleep(0.5)  # releases are asynchronous
    rss_end = vmrss_kib(m.pid)
    g.send(b"still there")
    assert [bytes(f.payload) for f in frames_of(g.p("frames/m"))] == [b"still there"]
    per_open = (rss_held - rss_churned) * 1024 / 5000
    print(f"\n20,000 opens of frames/ files in {churn:.1f} s: VmRSS {rss_start} -> {rss_churned} KiB; "
          f"5,000 held: {rss_held} KiB ({per_open:.0f} bytes each); closed: {rss_end} KiB")
    assert (rss_churned - rss_start) * 1024 < 8 * MiB, "opening and closing leaves nothing behind"
    assert per_open < 4096


def test_names_at_name_max_everywhere(shared, nobody_runs):
    """A group and members of 255 bytes (multi-byte UTF-8 too), in frames
    (name_size 255, header_size 295), peers/, status and .metrics; 256
    bytes is ENAMETOOLONG, for another user as for root."""
    gname = "g" * 255
    name = "é" * 127 + "x"  # 255 bytes
    assert len(name.encode()) == 255
    g = make_group(shared.path, gname, 0o777)
    try:
        assert nobody_runs([("create", g.p(name)), ("create", g.p("n" * 256))]) == ["ok", "ENAMETOOLONG"]
        expect_errno(errno.ENAMETOOLONG, os.mkdir, os.path.join(shared.path, "d" * 256))
        g.member("r")
        fd = os.open(g.p(f"frames/{name}"), os.O_WRONLY)
        try:
            os.write(fd, batch(b"long name"))
        finally:
            os.close(fd)
        (frame,) = frames_of(g.p("frames/r"))
        assert (frame.sender, bytes(frame.payload)) == (name, b"long name")
        g.configure(name, send_to_peer=1)
        g.send_as(name, b"to my peer")
        fd = os.open(g.p(f"peers/{name}"), os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert os.read(fd, 100) == b"to my peer"
        finally:
            os.close(fd)
        assert name in g.status().members
        metrics = open(os.path.join(shared.path, ".metrics"), encoding="utf-8").read()
        assert f'mcastfs_member_queued_messages{{group="{gname}",member="{name}"}}' in metrics
    finally:
        for entry in os.listdir(g.path):
            if entry not in ("send", "ctl", "status", "frames", "peers"):
                os.unlink(g.p(entry))
        os.rmdir(g.path)


def test_a_frame_with_a_255_byte_name_has_header_size_295(shared):
    g = make_group(shared.path, "header-size", 0o755)
    name = "n" * 255
    g.member(name)
    g.member("r")
    g.send_as(name, b"abc")
    fd = os.open(g.p("frames/r"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    size, header_size, name_size = struct.unpack_from("<IHB", raw)
    assert (size, header_size, name_size) == (3, 295, 255)
    assert raw[40:295] == name.encode() and raw[295:298] == b"abc"


@pytest.mark.timeout(120)
def test_random_bytes_on_every_writable_file_neither_crash_nor_hang_it(mount_factory, nobody_python_code):
    """uid 65534 writes random bytes (random sizes, random newlines) for a
    few seconds on every file it may write: send, ctl (given), members,
    twins, peer files (given), in record and line groups; the daemon stays
    up, answers, and delivers a message sent afterwards."""
    m = mount_factory(options="allow_other")
    targets = []
    for mode in ("write", "line"):
        g = make_group(m.path, f"noise-{mode}", 0o777)
        g.set(message=mode)
        g.member("victim", mode=0o666, drop_when_full=1)
        os.chmod(g.p("ctl"), 0o222)
        os.chmod(g.p("peers"), 0o711)
        os.chmod(g.p("peers/victim"), 0o666)
        targets += [g.p(f) for f in ("send", "ctl", "victim", "frames/send", "frames/victim", "peers/victim")]
    code = r"""
import os, random, sys, time
paths = sys.argv[2:]
rng = random.Random(int(sys.argv[1]))
fds = [os.open(p, os.O_WRONLY | os.O_NONBLOCK) for p in paths]
counts = {}
end = time.time() + 4
while time.time() < end:
    fd = rng.choice(fds)
    size = rng.choice([1, 2, 7, 40, 100, 4096, 4097, 65536, 1044480, 1044481])
    data = bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)
    data = data[:size]
    if rng.random() < 0.3:
        data = data.replace(b"\x00", b"\n")
    try:
        os.write(fd, data)
        counts["ok"] = counts.get("ok", 0) + 1
    except OSError as e:
        counts[e.errno] = counts.get(e.errno, 0) + 1
print(counts)
"""
    seed = random.randrange(1 << 30)
    res = nobody_python_code(code, seed, *targets, timeout=60)
    assert res.returncode == 0, f"seed {seed}: {res.stderr}"
    assert m.running(), f"seed {seed}: the daemon died\n{m.stderr_tail()}"
    g = Group(m.path, "noise-write")
    g.set(message="write")
    g.configure("victim", drop_when_full=0, subscribe="")
    g.take("victim", size=2 * MiB)
    g.set(send="anyone")
    g.send(b"after the noise")
    assert g.take("victim", size=2 * MiB) == [b"after the noise"]
    print(f"\nrandom writes as uid {NOBODY} (seed {seed}): {res.stdout.strip()} (ok or errno: count)")


# --- what a user can make the daemon hold for it: charged to its user_bytes ---------------------


def fill_hog(g: Group):
    """Member `hog` full (256 messages), holding back every send."""
    for i in range(256):
        g.send(f"{i}".encode())
    assert g.member_status("hog")["full"] == 1


HOLD_BLOCKED_WRITES = r"""
import errno, os, sys, threading
path, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fds = [os.open(path, os.O_WRONLY) for _ in range(n)]
results = []
def write(fd):
    try:
        results.append(str(os.write(fd, b"w" * size)))
    except OSError as e:
        results.append(errno.errorcode[e.errno])
    print("done", flush=True)
threads = [threading.Thread(target=write, args=(fd,), daemon=True) for fd in fds]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(" ".join(sorted(results)), flush=True)
"""


@pytest.mark.timeout(120)
def test_blocked_writes_of_one_user_are_bounded_by_its_user_bytes(mount_factory, nobody_python):
    """A write waiting for room holds its message in the daemon, charged to
    the writer's user_bytes while it waits; one that would wait with its
    writer at or over the limit is EDQUOT at once. 96 writes of 1,000,000
    bytes with user_bytes 16 MiB: 17 wait (16,000,000 held is still below
    the limit), the rest are refused; all 17 go once room appears."""
    limit = 16 * MiB
    m = mount_factory(options=f"allow_other,user_bytes={limit}")
    g = make_group(m.path, "held-back", 0o777)
    subprocess.run(as_nobody_cmd(nobody_python, "-c", "import os,sys; os.close(os.open(sys.argv[1], os.O_CREAT|os.O_WRONLY, 0o600))",
                                 g.p("hog")), check=True, timeout=30, cwd="/")
    fill_hog(g)
    rss_before = vmrss_kib(m.pid)
    writers = subprocess.Popen(as_nobody_cmd(nobody_python, "-c", HOLD_BLOCKED_WRITES, g.p("send"), "96", "1000000"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        # The refused writes answer at once; the held ones stay (a moment
        # more, so that too many would show).
        wait_for(lambda: g.status().group["blocked_writers"] >= 17, timeout=30, what="17 blocked writers")
        time.sleep(1)
        st = g.status()
        blocked, held = st.group["blocked_writers"], st.users[NOBODY]["held_bytes"]
        rss_held = vmrss_kib(m.pid)
    finally:
        os.unlink(g.p("hog"))  # releases them: they deliver to nobody
        out, err = writers.communicate(timeout=30)
    results = out.splitlines()[-1].split()
    print(f"\n96 blocked writes of 1,000,000 bytes by uid {NOBODY} (user_bytes {limit}): {blocked} held, "
          f"{results.count('EDQUOT')} EDQUOT; VmRSS {rss_before} -> {rss_held} KiB")
    assert sorted(set(results)) == ["1000000", "EDQUOT"], out + err
    assert results.count("1000000") == 17 and results.count("EDQUOT") == 79, results
    # status shows the writer what holds it at the limit, and that it is given back
    assert held == 17 * 1_000_000, held
    assert wait_for(lambda: g.status().users.get(NOBODY, {}).get("held_bytes", 0) == 0, timeout=10, what="held bytes given back")
    check_bounded((rss_held - rss_before) * 1024, 2 * limit + 16 * MiB, "blocked writes")


HOLD_LINE_TAILS = r"""
import errno, os, sys
path, n = sys.argv[1], int(sys.argv[2])
fds = [os.open(path, os.O_WRONLY) for _ in range(n)]
results = []
for fd in fds:
    try:
        results.append(str(os.write(fd, b"t" * 1_000_000)))
    except OSError as e:
        results.append(errno.errorcode[e.errno])
print("held " + " ".join(results), flush=True)
sys.stdin.readline()
"""


@pytest.mark.timeout(120)
def test_line_tails_of_one_user_are_bounded_by_its_user_bytes(mount_factory, nobody_python):
    """A line tail waits in its open file, charged to its writer's
    user_bytes; a write that would leave a longer one with its writer at or
    over the limit is EDQUOT. 96 open files, 1,000,000 bytes each, user_bytes
    16 MiB: 17 tails held, 79 writes refused; closing sends the 17 tails
    (to nobody: the group has no member) and gives the bytes back."""
    limit = 16 * MiB
    m = mount_factory(options=f"allow_other,user_bytes={limit}")
    g = make_group(m.path, "tails", 0o777)
    g.set(message="line")
    rss_before = vmrss_kib(m.pid)
    holder = subprocess.Popen(as_nobody_cmd(nobody_python, "-c", HOLD_LINE_TAILS, g.p("send"), "96"),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        line = Call(holder.stdout.readline).result(60)
        assert line.startswith("held "), holder.stderr.read()
        rss_held = vmrss_kib(m.pid)
        held = g.status().users[NOBODY]["held_bytes"]
    finally:
        holder.communicate("\n", timeout=30)
    results = line.split()[1:]
    assert held == 17 * 1_000_000, held   # status shows it
    assert wait_for(lambda: g.status().users.get(NOBODY, {}).get("held_bytes", 0) == 0, timeout=10, what="tails given back")
    print(f"\n96 line tails of 1,000,000 bytes by uid {NOBODY} (user_bytes {limit}): {results.count('1000000')} held, "
          f"{results.count('EDQUOT')} EDQUOT; VmRSS {rss_before} -> {rss_held} KiB")
    assert results.count("1000000") == 17 and results.count("EDQUOT") == 79, results
    check_bounded((rss_held - rss_before) * 1024, 2 * limit + 16 * MiB, "line tails")


HOLD_OPEN = r"""
import errno, os, sys
path, n = sys.argv[1], int(sys.argv[2])
fds, refused = [], []
for _ in range(n):
    try:
        fds.append(os.open(path, os.O_RDONLY))
    except OSError as e:
        refused.append(errno.errorcode[e.errno])
print("held", len(fds), " ".join(sorted(set(refused))), flush=True)
sys.stdin.readline()
"""


@pytest.mark.timeout(120)
def test_snapshots_held_open_by_one_user_are_bounded(mount_factory, nobody_python):
    """Every open of .metrics or status keeps its own snapshot, charged to
    the opener's user_bytes while open: past the limit an open is EDQUOT.
    100 opens of a 1.8 MB .metrics with user_bytes 16 MiB: 10 open (9 held
    are still below the limit), 90 refused; closing gives the bytes back."""
    limit = 16 * MiB
    m = mount_factory(options=f"allow_other,user_bytes={limit}")
    g = make_group(m.path, "wide", 0o755)
    for i in range(1000):
        os.close(os.open(g.p(f"{'m' * 200}{i}"), os.O_CREAT | os.O_RDONLY, 0o644))
    size = len(open(os.path.join(m.path, ".metrics"), "rb").read())
    rss_before = vmrss_kib(m.pid)
    holder = subprocess.Popen(as_nobody_cmd(nobody_python, "-c", HOLD_OPEN, os.path.join(m.path, ".metrics"), "100"),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        line = Call(holder.stdout.readline).result(60)
        assert line.startswith("held "), holder.stderr.read()
        rss_held = vmrss_kib(m.pid)
    finally:
        holder.communicate("\n", timeout=30)
    opened, refused = int(line.split()[1]), line.split()[2:]
    print(f"\n100 opens of a {size}-byte .metrics by uid {NOBODY} (user_bytes {limit}): {opened} open, "
          f"{100 - opened} {refused}; VmRSS {rss_before} -> {rss_held} KiB")
    assert opened == -(-limit // size) and refused == ["EDQUOT"], line
    check_bounded((rss_held - rss_before) * 1024, 64 * MiB, "snapshots held open")
    # Closed: nothing is held for it any more, and it opens again.
    res = subprocess.run(as_nobody_cmd(nobody_python, "-c", HOLD_OPEN, os.path.join(m.path, ".metrics"), "1"),
                         input="\n", capture_output=True, text=True, timeout=30, cwd="/")
    assert res.stdout.startswith("held 1 "), res.stdout + res.stderr


def test_metrics_does_not_show_another_user_what_its_modes_hide(shared, nobody_runs, nobody_python_code):
    """.metrics shows an opener only the groups whose directory it may
    search (root: all); status and .metrics show another user's `user`
    lines only to root and the mounting user."""
    g = make_group(shared.path, "hidden-from-others", 0o700)
    g.member("secret-member")
    seen = make_group(shared.path, "seen-by-others", 0o711)
    seen.member("open-member")
    assert nobody_runs([("readdir", g.path), ("open r", g.p("status"))]) == ["EACCES", "EACCES"]
    metrics = os.path.join(shared.path, ".metrics")
    res = nobody_python_code("import sys; print(open(sys.argv[1]).read())", metrics)
    assert res.returncode == 0, res.stderr
    assert "mcastfs_group_members" in res.stdout
    shown = [line for line in res.stdout.splitlines() if "hidden-from-others" in line or "secret-member" in line]
    assert not shown, f"uid {NOBODY} reads {len(shown)} lines of the 0700 group in .metrics, e.g. {shown[0]}"
    # x alone is enough, as for reaching the group's files.
    assert 'group="seen-by-others"' in res.stdout and 'member="open-member"' in res.stdout
    # Root's usage (the groups above are root's) is root's to see.
    assert 'uid="0"' not in res.stdout
    readable = make_group(shared.path, "readable-by-others", 0o755)
    res = nobody_python_code("import sys; print(open(sys.argv[1]).read())", readable.p("status"))
    assert res.returncode == 0, res.stderr
    # Its own line (it owns members elsewhere on this mount), none of root's.
    assert {line.split()[1] for line in res.stdout.splitlines() if line.startswith("user ")} <= {str(NOBODY)}, res.stdout
    assert any(line.startswith("user 0 ") for line in open(readable.p("status")).read().splitlines())
    mine = open(metrics).read()
    assert 'group="hidden-from-others"' in mine and 'uid="0"' in mine


# --- background requests: async direct I/O --------------------------------------------------------


@pytest.fixture(scope="module")
def nobody_aiowrite(cbin, workdir_base) -> str:
    dest = os.path.join(workdir_base, "aiowrite")
    subprocess.run(["cp", cbin["aiowrite"], dest], check=True)
    os.chmod(dest, 0o755)
    return dest


@pytest.mark.timeout(90)
def test_async_direct_writes_held_back_do_not_stop_other_users_closes(mount_factory, nobody_aiowrite):
    """Asynchronous direct-I/O writes (io_submit on an O_DIRECT open) held
    back by a full member, 16 of them from uid 65534: had the kernel sent
    them as background requests (FUSE_CAP_ASYNC_DIO), they would take its
    max_background slots (12) for as long as they wait, and every release
    on the mount (also background requests) would queue behind them, so
    that nobody's close reached the daemon: a line tail of another user's,
    in another group, would never be sent. mcastfs turns that capability
    off: the writes are ordinary requests, and closes go on."""
    m = mount_factory(options="allow_other")
    held = make_group(m.path, "aio-held", 0o777)
    held.member("hog", mode=0o644)
    fill_hog(held)
    other = m.group("aio-other")
    other.set(message="line")
    other.member("r")
    aio = subprocess.Popen(as_nobody_cmd(nobody_aiowrite, held.p("send"), "16", "4096"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        wait_for(lambda: held.status().group["blocked_writers"] >= 12, timeout=20, what="12 blocked aio writes")
        time.sleep(0.3)
        blocked = held.status().group["blocked_writers"]
        fd = os.open(other.p("send"), os.O_WRONLY)
        os.write(fd, b"a tail sent at close")
        os.close(fd)
        got = []
        deadline = time.monotonic() + 3
        while not got and time.monotonic() < deadline:
            got = other.take("r")
            time.sleep(0.05)
    finally:
        os.unlink(held.p("hog"))  # releases the writes, whichever kind they are
        out, err = aio.communicate(timeout=30)
    print(f"\n16 aio writes held back: {blocked} reached the daemon; another user's close "
          f"{'went through' if got else 'did not reach the daemon within 3 s'}")
    assert got == [b"a tail sent at close"]
    assert blocked == 16, "every write reaches the daemon, none waits in the kernel's background queue"
    assert out.count("done 4096") == 16, out + err
