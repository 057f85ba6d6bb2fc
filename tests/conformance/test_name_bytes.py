"""Names are bytes, as on every Linux filesystem: "1 to 255 bytes of UTF-8".
Every character class the rules name is checked exhaustively, and two names
that differ in their bytes are two names, even when Unicode calls them
canonically equivalent (tmpfs, the reference, keeps both)."""

from __future__ import annotations

import errno
import os
import unicodedata

import pytest

from .model import WHITE_SPACE, name_error

NFC = "café".encode()  # U+00E9
NFD = "cafe\u0301".encode()  # e + COMBINING ACUTE ACCENT
ANGSTROM_SIGN = "\u212b".encode()  # canonically equivalent to U+00C5
A_RING = "\u00c5".encode()


def ename(code):
    return errno.errorcode.get(code, str(code))


def test_every_whitespace_and_control_character_is_refused_and_others_are_not(mount, new_group):
    g = new_group(prefix="charclass")
    refused = sorted(WHITE_SPACE | {c for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"} - {0, 0x2F})
    # Not whitespace, not control: format characters, a soft hyphen, marks, symbols.
    accepted = [0x00AD, 0x180E, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x0301, 0xE000, 0xFFFD, 0x1F4A5, 0x10FFFD]
    wrong = []
    for cp in refused + accepted:
        name = ("x" + chr(cp) + "y").encode()
        want = name_error(name)
        assert want == (errno.EINVAL if cp in refused else 0)
        for path, make, remove in (
            (os.path.join(mount.path.encode(), name), os.mkdir, os.rmdir),
            (os.path.join(g.path.encode(), name),
             lambda p: os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)), os.unlink),
        ):
            try:
                make(path)
                got = 0
                remove(path)
            except OSError as e:
                got = e.errno
            if got != want:
                wrong.append(f"U+{cp:04X}: expected {ename(want) if want else 'success'}, got {ename(got) if got else 'success'}")
    print(f"\n{len(refused)} refused and {len(accepted)} accepted characters checked (x2: group, member)")
    assert not wrong, "\n".join(wrong)


def test_tmpfs_keeps_canonically_equivalent_names_apart(tmp_path):
    """The reference: a Linux filesystem compares names byte by byte."""
    os.mkdir(os.path.join(bytes(tmp_path), NFC))
    os.mkdir(os.path.join(bytes(tmp_path), NFD))
    assert sorted(os.listdir(bytes(tmp_path))) == sorted([NFC, NFD])


def test_canonically_equivalent_group_names_are_two_groups(mount):
    root = mount.path.encode()
    os.mkdir(os.path.join(root, NFC))
    try:
        assert not os.path.exists(os.path.join(root, NFD)), "the NFD path resolves to the NFC group"
        os.mkdir(os.path.join(root, NFD))  # EEXIST in mcastfs
        assert {NFC, NFD} <= set(os.listdir(root))
        os.rmdir(os.path.join(root, NFD))
    finally:
        os.rmdir(os.path.join(root, NFC))


def test_canonically_equivalent_member_names_are_two_members(group):
    gp = group.path.encode()
    os.close(os.open(os.path.join(gp, A_RING), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    problems = []
    for other in (ANGSTROM_SIGN, "A\u030a".encode()):
        if os.path.exists(os.path.join(gp, other)):
            problems.append(f"{other!r} resolves to {A_RING!r}")
        try:
            os.close(os.open(os.path.join(gp, other), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            os.unlink(os.path.join(gp, other))
        except OSError as e:
            problems.append(f"create {other!r}: {ename(e.errno)}")
    fd = os.open(os.path.join(gp, b"ctl"), os.O_WRONLY)
    try:
        os.write(fd, "member A\u030a loopback=1".encode())
        problems.append("ctl `member A\\u030a loopback=1` succeeded (no such member by those bytes)")
    except OSError as e:
        assert e.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert not problems, "\n".join(problems)


def test_a_name_starting_with_a_dot_and_a_combining_mark_is_refused(mount, new_group):
    g = new_group(prefix="dotmark")
    got = {}
    for text in (".\u0301x", ".\u20dd", ".\u0308hidden"):
        name = text.encode()
        assert name[:1] == b"." and name_error(name) == errno.EINVAL
        for where, path, make, remove in (
            ("mkdir", os.path.join(mount.path.encode(), name), os.mkdir, os.rmdir),
            ("create", os.path.join(g.path.encode(), name),
             lambda p: os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)), os.unlink),
        ):
            try:
                make(path)
                got[(where, text)] = "success"
                remove(path)
            except OSError as e:
                got[(where, text)] = ename(e.errno)
    wrong = {k: v for k, v in got.items() if v != "EINVAL"}
    assert not wrong, f"names starting with '.' accepted: {wrong}"
