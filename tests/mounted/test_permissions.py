"""Owners and modes, enforced against another user (docs/contract.md,
"Mounting", "The root directory", "A group directory").

Permission checks are done by the kernel from the owners and modes
(default_permissions is always on). `-o allow_other` lets other users in;
without it they are kept out. The tests run as root and act as `nobody`
(uid/gid 65534) through `setpriv --reuid=65534 --regid=65534 --clear-groups`
and the fsop helper.
"""

import errno
import os

import pytest

from helpers import NOBODY, Group

EACCES = errno.EACCES


@pytest.fixture(scope="module")
def shared(module_mount_factory):
    """A mount with -o allow_other."""
    return module_mount_factory(options="allow_other")


@pytest.fixture
def root_mode(shared):
    """Set the root's mode for one test; 0755 again afterwards."""

    def set_mode(mode):
        os.chmod(shared.path, mode)

    yield set_mode
    os.chmod(shared.path, 0o755)


_serial = iter(range(1, 1_000_000))


@pytest.fixture
def rgroup(shared, request):
    """A group made by root (mode 0755) in the shared mount."""

    def make(mode=0o755):
        name = f"{request.node.name[:60]}-{next(_serial)}".replace("[", "-").replace("]", "")
        old = os.umask(0)
        try:
            os.mkdir(os.path.join(shared.path, name), mode)
        finally:
            os.umask(old)
        return Group(shared.path, name)

    return make


def ok(res):
    assert res.ok, f"expected success, got {res}"
    return res


def denied(res, codes=(EACCES,)):
    assert not res.ok, f"expected {codes}, got success: {res.out}"
    assert res.errno in codes, f"expected {[errno.errorcode[c] for c in codes]}, got {res}"


# --- without allow_other --------------------------------------------------------


def test_other_users_kept_out_without_allow_other(mount, as_nobody):
    os.chmod(mount.path, 0o777)
    try:
        denied(as_nobody("stat", mount.path))
        denied(as_nobody("ls", mount.path))
        denied(as_nobody("mkdir", os.path.join(mount.path, "intruder"), "755"))
    finally:
        os.chmod(mount.path, 0o755)
    assert "intruder" not in os.listdir(mount.path)


def test_allow_other_lets_them_look(shared, as_nobody):
    res = ok(as_nobody("stat", shared.path))
    assert "mode=755" in res.out and "uid=0" in res.out
    ok(as_nobody("ls", shared.path))


# --- the root -------------------------------------------------------------------


def test_root_0755_keeps_others_from_making_groups(shared, as_nobody, root_mode):
    root_mode(0o755)
    denied(as_nobody("mkdir", os.path.join(shared.path, "by-nobody"), "755"))
    assert "by-nobody" not in os.listdir(shared.path)


def test_root_1777_lets_everyone_make_groups_and_remove_only_their_own(shared, as_nobody, root_mode, rgroup):
    root_mode(0o1777)
    mine = os.path.join(shared.path, "nobodys-group")
    ok(as_nobody("mkdir", mine, "755", umask="022"))
    res = ok(as_nobody("stat", mine))
    assert f"uid={NOBODY}" in res.out and f"gid={NOBODY}" in res.out and "mode=755" in res.out
    for f in ("send", "ctl", "status"):
        st = os.stat(os.path.join(mine, f))
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), f"{f} belongs to the group's owner"
    roots = rgroup()
    denied(as_nobody("rmdir", roots.path), (errno.EPERM,))  # sticky root: not theirs
    assert os.path.isdir(roots.path)
    ok(as_nobody("rmdir", mine))
    assert not os.path.exists(mine)


def test_root_may_remove_a_group_of_another_user(shared, as_nobody, root_mode):
    root_mode(0o1777)
    path = os.path.join(shared.path, "removed-by-root")
    ok(as_nobody("mkdir", path, "700"))
    os.rmdir(path)


def test_group_made_by_nobody_honours_umask(shared, as_nobody, root_mode):
    root_mode(0o1777)
    path = os.path.join(shared.path, "umask-077")
    ok(as_nobody("mkdir", path, "777", umask="077"))
    try:
        assert os.stat(path).st_mode & 0o7777 == 0o700
        assert os.stat(os.path.join(path, "status")).st_mode & 0o777 == 0o400
    finally:
        os.rmdir(path)


# --- members ------------------------------------------------------------------


def test_member_0600_of_root_cannot_be_read_or_written(rgroup, as_nobody):
    g = rgroup(0o755)
    g.member("private", mode=0o600)
    g.send(b"secret")
    denied(as_nobody("read", g.p("private")))
    denied(as_nobody("write", g.p("private"), "x"))
    assert g.take("private") == [b"secret"], "the denied reader took nothing"


def test_member_0644_readable_not_writable(rgroup, as_nobody):
    g = rgroup(0o755)
    g.member("public", mode=0o644)
    g.send(b"news")
    res = ok(as_nobody("read", g.p("public")))
    assert bytes.fromhex(res.out) == b"news"
    denied(as_nobody("write", g.p("public"), "x"))


def test_member_0666_writable_sends_as_that_member(rgroup, as_nobody):
    g = rgroup(0o755)
    g.member("open", mode=0o666)
    g.member("listener")
    ok(as_nobody("write", g.p("open"), "from nobody"))
    assert g.take("listener") == [b"from nobody"]
    assert g.take("open") == []


def test_chmod_opens_a_member_to_others(rgroup, as_nobody):
    g = rgroup(0o755)
    g.member("m", mode=0o600)
    denied(as_nobody("open", g.p("m"), "r"))
    os.chmod(g.p("m"), 0o604)
    ok(as_nobody("open", g.p("m"), "r"))
    os.chmod(g.p("m"), 0o600)
    denied(as_nobody("open", g.p("m"), "r"))


def test_chown_gives_a_member_away(rgroup, as_nobody):
    g = rgroup(0o755)
    g.member("m", mode=0o600)
    denied(as_nobody("chmod", g.p("m"), "644"), (errno.EPERM,))
    os.chown(g.p("m"), NOBODY, NOBODY)
    ok(as_nobody("open", g.p("m"), "rw"))
    ok(as_nobody("chmod", g.p("m"), "640"))
    assert os.stat(g.p("m")).st_mode & 0o777 == 0o640
    denied(as_nobody("chown", g.p("m"), "0", "0"), (errno.EPERM,))


def test_nobody_cannot_join_a_0755_group_of_root(rgroup, as_nobody):
    g = rgroup(0o755)
    denied(as_nobody("create", g.p("joiner"), "644"))
    assert g.status().members == {}


def test_nobody_joins_a_0777_group_and_owns_the_member(rgroup, as_nobody):
    g = rgroup(0o777)
    ok(as_nobody("create", g.p("joiner"), "640", umask="022"))
    st = os.stat(g.p("joiner"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (NOBODY, NOBODY, 0o640)
    assert "joiner" in g.status().members
    g.send(b"welcome")
    res = ok(as_nobody("read", g.p("joiner")))
    assert bytes.fromhex(res.out) == b"welcome"


def test_member_mode_umask_of_the_caller(rgroup, as_nobody):
    g = rgroup(0o777)
    ok(as_nobody("create", g.p("m"), "666", umask="027"))
    assert os.stat(g.p("m")).st_mode & 0o777 == 0o640


def test_leaving_needs_write_permission_on_the_group(rgroup, as_nobody):
    g = rgroup(0o755)
    g.member("m", mode=0o666)
    denied(as_nobody("unlink", g.p("m")))
    assert "m" in g.status().members


def test_anyone_may_remove_members_of_a_0777_group(rgroup, as_nobody):
    g = rgroup(0o777)
    g.member("m")
    ok(as_nobody("unlink", g.p("m")))
    assert g.status().members == {}


def test_sticky_group_protects_members_of_others(rgroup, as_nobody):
    g = rgroup(0o1777)
    g.member("roots")
    denied(as_nobody("unlink", g.p("roots")), (errno.EPERM,))
    assert "roots" in g.status().members
    ok(as_nobody("create", g.p("own"), "644"))
    ok(as_nobody("unlink", g.p("own")))


def test_a_0700_group_is_closed(rgroup, as_nobody):
    g = rgroup(0o700)
    g.member("m", mode=0o666)
    denied(as_nobody("ls", g.path))
    denied(as_nobody("stat", g.p("m")))
    denied(as_nobody("write", g.p("send"), "x"))


# --- send, ctl, status ---------------------------------------------------------


def test_send_of_a_0755_group_is_0200(rgroup, as_nobody):
    g = rgroup(0o755)
    g.member("m")
    denied(as_nobody("write", g.p("send"), "x"))
    os.chmod(g.p("send"), 0o222)
    ok(as_nobody("write", g.p("send"), "now allowed"))
    assert g.take("m") == [b"now allowed"]


def test_send_of_a_0777_group_is_open(rgroup, as_nobody):
    g = rgroup(0o777)
    g.member("m")
    ok(as_nobody("write", g.p("send"), "hello"))
    assert g.take("m") == [b"hello"]
    denied(as_nobody("read", g.p("send")))


def test_status_follows_the_group_mode(rgroup, as_nobody):
    g = rgroup(0o755)
    res = ok(as_nobody("read", g.p("status")))
    assert bytes.fromhex(res.out).decode().startswith(f"group {g.name} ")
    closed = rgroup(0o711)  # others may enter, status = 0400
    denied(as_nobody("read", closed.p("status")))
    denied(as_nobody("write", g.p("status"), "x"))


def test_ctl_is_for_the_owner_only(rgroup, as_nobody):
    g = rgroup(0o777)
    denied(as_nobody("write", g.p("ctl"), "set capacity=5"))
    assert g.status().group["capacity"] != 5
    os.chown(g.p("ctl"), NOBODY, NOBODY)
    ok(as_nobody("write", g.p("ctl"), "set capacity=5"))
    assert g.status().group["capacity"] == 5


def test_chmod_of_send_ctl_status_by_non_owner_denied(rgroup, as_nobody):
    g = rgroup(0o777)
    for f in ("send", "ctl", "status"):
        denied(as_nobody("chmod", g.p(f), "666"), (errno.EPERM,))


def test_group_of_nobody_gives_nobody_ctl(shared, as_nobody, root_mode):
    root_mode(0o1777)
    path = os.path.join(shared.path, "nobody-ctl")
    ok(as_nobody("mkdir", path, "755"))
    try:
        ok(as_nobody("write", os.path.join(path, "ctl"), "set max_message=77"))
        assert Group(shared.path, "nobody-ctl").status().group["max_message"] == 77
    finally:
        os.rmdir(path)
