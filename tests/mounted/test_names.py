"""Names (docs/contract.md, "Names").

Group and member names: 1 to 255 bytes of UTF-8 with no `/`, no NUL, no
whitespace or control characters, and not starting with `.`. A longer name is
ENAMETOOLONG; anything else that breaks these rules is EINVAL. In a group
directory the names `send`, `ctl` and `status` are taken.

Two rules cannot be reached through the VFS and are not tested here: a `/`
always separates path components before the filesystem sees a name, and a NUL
ends the C string (Python refuses it with ValueError before any syscall).
"""

import errno
import os
import subprocess

import pytest

from helpers import RESERVED, expect_errno

VALID = [
    "a",
    "Z",
    "0",
    "with-dash_and.dot",
    "trailing.",
    "a..b",
    "colon:semi;comma,",
    "[brackets]{braces}(parens)",
    "quote'double\"",
    "grüße",
    "日本語",
    "emoji-😀",
    "x" * 255,
    "é" * 127 + "a",  # 255 bytes of UTF-8 in 128 characters
]

INVALID = [
    ("space", "a b"),
    ("leading space", " ab"),
    ("trailing space", "ab "),
    ("tab", "a\tb"),
    ("newline", "a\nb"),
    ("carriage return", "a\rb"),
    ("vertical tab", "a\vb"),
    ("form feed", "a\fb"),
    ("control 0x01", "a\x01b"),
    ("escape", "\x1b[0m"),
    ("delete 0x7f", "a\x7fb"),
    ("leading dot", ".hidden"),
    ("leading dots", "..x"),
    ("only dot-dash", ".-"),
]

INVALID_BYTES = [
    ("invalid utf-8 0xff", b"a\xffb"),
    ("truncated utf-8", b"ab\xc3"),
    ("overlong utf-8", b"\xc0\xafx"),
    ("utf-16 surrogate", b"\xed\xa0\x80x"),
]


def ids(cases):
    return [c[0] for c in cases]


# --- groups -------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID, ids=range(len(VALID)))
def test_valid_group_name_accepted(mount, name):
    path = os.path.join(mount.path, name)
    os.mkdir(path)
    try:
        assert name in os.listdir(mount.path)
        assert os.path.isdir(path)
    finally:
        os.rmdir(path)


@pytest.mark.parametrize("label,name", INVALID, ids=ids(INVALID))
def test_invalid_group_name_einval(mount, label, name):
    before = sorted(os.listdir(mount.path))
    expect_errno(errno.EINVAL, os.mkdir, os.path.join(mount.path, name))
    assert sorted(os.listdir(mount.path)) == before


@pytest.mark.parametrize("label,name", INVALID_BYTES, ids=ids(INVALID_BYTES))
def test_group_name_not_utf8_einval(mount, label, name):
    before = sorted(os.listdir(mount.path))
    expect_errno(errno.EINVAL, os.mkdir, os.path.join(mount.path.encode(), name))
    assert sorted(os.listdir(mount.path)) == before


@pytest.mark.parametrize("name", ["y" * 256, "é" * 128, "z" * 1000], ids=["256-ascii", "256-utf8", "1000"])
def test_group_name_too_long(mount, name):
    before = sorted(os.listdir(mount.path))
    expect_errno(errno.ENAMETOOLONG, os.mkdir, os.path.join(mount.path, name))
    assert sorted(os.listdir(mount.path)) == before


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_names_are_fine_as_group_names(mount, name):
    """send/ctl/status are taken only inside a group directory, not in the root."""
    path = os.path.join(mount.path, name)
    os.mkdir(path)
    try:
        assert sorted(n for n in os.listdir(path)) == sorted(RESERVED)
    finally:
        os.rmdir(path)


# --- members ------------------------------------------------------------------


def create(path, flags=os.O_CREAT | os.O_EXCL | os.O_WRONLY):
    os.close(os.open(path, flags, 0o644))


@pytest.mark.parametrize("name", VALID, ids=range(len(VALID)))
def test_valid_member_name_accepted(group, name):
    create(group.p(name))
    assert name in os.listdir(group.path)
    assert name in group.status().members


@pytest.mark.parametrize("label,name", INVALID, ids=ids(INVALID))
def test_invalid_member_name_einval(group, label, name):
    expect_errno(errno.EINVAL, create, group.p(name))
    assert sorted(os.listdir(group.path)) == sorted(RESERVED)
    assert group.status().members == {}


@pytest.mark.parametrize("label,name", INVALID_BYTES, ids=ids(INVALID_BYTES))
def test_member_name_not_utf8_einval(group, label, name):
    expect_errno(errno.EINVAL, create, os.path.join(group.path.encode(), name))
    assert group.status().members == {}


@pytest.mark.parametrize("name", ["y" * 256, "é" * 128], ids=["256-ascii", "256-utf8"])
def test_member_name_too_long(group, name):
    expect_errno(errno.ENAMETOOLONG, create, group.p(name))
    assert group.status().members == {}


@pytest.mark.parametrize("label,name", INVALID, ids=ids(INVALID))
def test_invalid_member_name_via_touch(group, label, name):
    """`touch` goes through the same create: a bad name is refused."""
    res = subprocess.run(["touch", "--", group.p(name)], capture_output=True, timeout=10)
    assert res.returncode != 0
    assert group.status().members == {}


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_names_cannot_be_created_as_members(group, name):
    expect_errno(errno.EEXIST, create, group.p(name))
    st = group.status()
    assert name not in st.members
    assert st.group["members"] == 0
    assert sorted(os.listdir(group.path)) == sorted(RESERVED)


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_names_refused_in_ctl(group, name):
    """`member send ...` names no member: EINVAL."""
    expect_errno(errno.EINVAL, group.ctl, f"member {name} loopback=1")
