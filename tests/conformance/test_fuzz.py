"""Bad input, part (a): the ctl grammar and names, fuzzed with a seeded
generator and judged by the reference parser of model.py.

Every ctl input must give what the reference says: success and exactly the
settings the command names (valid), EINVAL and no change at all (invalid), or
either of those where the contract is silent (extra spaces, repeated keys,
leading zeros: mcastfs's choice is printed). Settings are compared through
`status` after every input. Names go through mkdir (groups) and create
(members): the contract's EINVAL / ENAMETOOLONG, or success and the exact
name in the listing. The daemon must stay up and keep serving.

    python3 -m pytest tests/conformance/test_fuzz.py -s            # CI
    CONFORMANCE_SCALE=long CONFORMANCE_SEED=7 python3 -m pytest tests/conformance/test_fuzz.py -s
"""

from __future__ import annotations

import errno
import os
import random
import time
import unicodedata

import pytest

from .model import RESERVED, ctl_verdict, name_errors, name_faults

LONG = os.environ.get("CONFORMANCE_SCALE") == "long"
SEED = int(os.environ.get("CONFORMANCE_SEED", "20261122"))
CTL_INPUTS = 60_000 if LONG else 3_000
NAME_INPUTS = 20_000 if LONG else 1_500

MEMBERS = ["a", "b", "café", "a=b", "x" * 255]
GROUP_NUMERIC = {"capacity": (1, 1_000_000), "queue_bytes": (1, 1 << 30), "max_message": (1, 1_044_480)}
MEMBER_NUMERIC = {"capacity": (1, 1_000_000), "queue_bytes": (1, 1 << 30)}

ODD_CHARS = [
    "\t", "\r", "\v", "\f", "\x00", "\x1b", "\x7f", "\x85", "\xa0", "\u1680", "\u2000", "\u2028", "\u200b",
    "\ufeff", "\u3000", "é", "ß", "\u0301", "１", "٣", "💥", "=", "\\", "\"", "'", "#", ";", "-", "+", ".", "_",
]
BAD_UTF8 = [b"\xff", b"\xfe", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80"]


def ename(code):
    return errno.errorcode.get(code, str(code))


# --- the ctl generator ------------------------------------------------------------


def boundary(rng: random.Random, lo: int, hi: int) -> int:
    return rng.choice([lo, lo + 1, hi - 1, hi, rng.randint(lo, hi), rng.randint(lo, min(hi, 100))])


def valid_command(rng: random.Random) -> str:
    if rng.random() < 0.5:
        keys = rng.sample(["capacity", "queue_bytes", "max_message", "send"], rng.randint(1, 4))
        pairs = [f"{k}={rng.choice(['anyone', 'members']) if k == 'send' else boundary(rng, *GROUP_NUMERIC[k])}" for k in keys]
        words = ["set", *pairs]
    else:
        keys = rng.sample(["capacity", "queue_bytes", "loopback", "drop_when_full"], rng.randint(1, 4))
        pairs = [f"{k}={rng.randint(0, 1) if k in ('loopback', 'drop_when_full') else boundary(rng, *MEMBER_NUMERIC[k])}" for k in keys]
        words = ["member", rng.choice(MEMBERS), *pairs]
    return " ".join(words) + rng.choice(["", "\n"])


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(13)
        i = rng.randint(0, len(b))
        if op == 0 and b:  # flip a bit
            j = rng.randrange(len(b))
            b[j] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert a random byte
            b[i:i] = bytes([rng.randrange(256)])
        elif op == 2 and b:  # delete a run
            del b[i:i + rng.randint(1, 4)]
        elif op == 3:  # an odd character
            b[i:i] = rng.choice(ODD_CHARS).encode()
        elif op == 4:  # invalid UTF-8
            b[i:i] = rng.choice(BAD_UTF8)
        elif op == 5:  # a NUL
            b[i:i] = b"\0"
        elif op == 6:  # duplicate a slice
            j = rng.randint(0, len(b))
            b[i:i] = b[min(i, j):max(i, j)]
        elif op == 7:  # case
            b = bytearray(bytes(b).upper() if rng.random() < 0.5 else bytes(b).swapcase())
        elif op == 8:  # swap two words
            words = bytes(b).split(b" ")
            if len(words) > 1:
                x, y = rng.sample(range(len(words)), 2)
                words[x], words[y] = words[y], words[x]
                b = bytearray(b" ".join(words))
        elif op == 9:  # line endings and spaces
            b += rng.choice([b"\n", b"\r\n", b"\n\n", b" ", b"  \n", b"\t"])
        elif op == 10:  # change a number
            s = bytes(b)
            k = s.rfind(b"=")
            if k >= 0:
                end = s.find(b" ", k)
                end = len(s) if end < 0 else end
                b = bytearray(s[:k + 1] + rng.choice([b"0", b"-1", b"+1", b"0x10", b"1e3", b"1_0", b"", b"00001",
                                                      b"1000001", b"1073741825", b"1044481", b"18446744073709551617",
                                                      b"9" * 40, b"\xd9\xa3"]) + s[end:])
        elif op == 11:  # a second command
            b += b"\n" + valid_command(rng).encode()
        elif op == 12:  # a key from the other verb
            b += rng.choice([b" loopback=1", b" max_message=10", b" send=members", b" drop_when_full=1", b" colour=red"])
    return bytes(b)


def random_unicode(rng: random.Random, n: int) -> bytes:
    chars = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            chars.append(chr(rng.randint(0x20, 0x7E)))
        elif r < 0.7:
            chars.append(rng.choice(ODD_CHARS))
        else:
            cp = rng.randint(0x80, 0x10FFFF)
            if 0xD800 <= cp <= 0xDFFF:
                cp = 0xFFFD
            chars.append(chr(cp))
    return "".join(chars).encode()


def long_line(rng: random.Random) -> bytes:
    n = rng.choice([4096, 65536, 200_000, 1_044_480 - 32])
    kind = rng.randrange(6)
    if kind == 0:
        return (b"set capacity=3" + b" " * n)[:n]  # trailing spaces
    if kind == 1:
        return b"set capacity=" + b"0" * n + b"3"  # leading zeros
    if kind == 2:
        return b"member " + b"a" * n + b" loopback=1"  # no such member
    if kind == 3:
        return b"set " + b" ".join([b"capacity=5"] * (n // 11))  # one key repeated
    if kind == 4:
        return bytes(rng.randrange(256) for _ in range(min(n, 65536)))
    return b"set send=members " + b"x" * n + b"=1"  # unknown key


def ctl_input(rng: random.Random) -> tuple[str, bytes]:
    r = rng.random()
    if r < 0.25:
        return "valid", valid_command(rng).encode()
    if r < 0.75:
        return "mutated", mutate(rng, valid_command(rng).encode())
    if r < 0.87:
        return "random bytes", bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    if r < 0.98:
        return "unicode", random_unicode(rng, rng.randint(0, 40))
    return "long line", long_line(rng)


# --- expected settings --------------------------------------------------------------


class Settings:
    def __init__(self, members):
        self.group = {"capacity": 256, "queue_bytes": 4 * 1024 * 1024, "max_message": 1_044_480, "send": "anyone"}
        self.members = {m: {"capacity": 256, "queue_bytes": 4 * 1024 * 1024, "loopback": 0, "drop_when_full": 0}
                        for m in members}

    def apply(self, command):
        target = self.group if command.target is None else self.members[command.target]
        for k, v in command.changes.items():
            target[k] = int(v) if isinstance(v, bool) else v

    def check(self, status, context):
        for k, v in self.group.items():
            assert status.group[k] == v, f"{context}: group {k}: expected {v}, status says {status.group[k]}"
        for m, values in self.members.items():
            for k, v in values.items():
                got = status.members[m][k]
                assert got == v, f"{context}: member {m} {k}: expected {v}, status says {got}"


@pytest.mark.timeout(3600 if LONG else 120)
def test_ctl_fuzz_matches_the_reference_parser(mount, new_group):
    g = new_group(prefix="ctlfuzz")
    for m in MEMBERS:
        g.member(m)
    expected = Settings(MEMBERS)
    rng = random.Random(SEED)
    kinds, verdicts, silent = {}, {}, {}
    fd = os.open(g.p("ctl"), os.O_WRONLY)
    started = time.monotonic()
    try:
        for i in range(CTL_INPUTS):
            kind, data = ctl_input(rng)
            kinds[kind] = kinds.get(kind, 0) + 1
            try:
                got = os.write(fd, data)
                err = None
            except OSError as e:
                got, err = None, e.errno
            context = f"input #{i} (seed {SEED}, {kind}) {data[:120]!r}{'...' if len(data) > 120 else ''} ({len(data)} bytes)"
            if not data:
                assert err is None and got == 0, f"{context}: empty write gave {ename(err) if err else got}"
                verdicts["empty"] = verdicts.get("empty", 0) + 1
                continue
            verdict = ctl_verdict(data, MEMBERS)
            verdicts[verdict.kind] = verdicts.get(verdict.kind, 0) + 1
            if verdict.kind == "valid":
                assert err is None and got == len(data), f"{context}: valid, mcastfs gave {ename(err) if err else got}"
            elif verdict.kind == "invalid":
                assert err == errno.EINVAL, (
                    f"{context}: invalid ({verdict.reason}), mcastfs gave {ename(err) if err else f'success {got}'}")
            else:
                assert err == errno.EINVAL or got == len(data), f"{context}: mcastfs gave {ename(err) if err else got}"
                key = f"{verdict.reason}: {'accepted' if err is None else 'EINVAL'}"
                silent[key] = silent.get(key, 0) + 1
            if err is None:
                expected.apply(verdict.command)
            expected.check(g.status(), context)
    finally:
        os.close(fd)
    elapsed = time.monotonic() - started
    print(f"\nctl fuzz: {CTL_INPUTS} inputs (seed {SEED}) in {elapsed:.1f} s; kinds {kinds}; verdicts {verdicts}")
    for key, n in sorted(silent.items()):
        print(f"  contract silent, mcastfs chose: {key} ({n}x)")
    assert mount.running()
    sanity(g)


def sanity(g):
    """The daemon still serves: a member receives a message sent now."""
    name = f"sanity{time.monotonic_ns()}"
    g.member(name)
    g.ctl(f"member {name} capacity=8 queue_bytes=4096")
    g.ctl("set send=anyone max_message=1000")
    g.send(b"still alive")
    assert g.take(name)[-1] == b"still alive"
    os.unlink(g.p(name))


def test_ctl_commands_are_whole_writes_even_beyond_one_fuse_request(mount, new_group):
    """A ctl write is one command however long: the kernel splits a write(2)
    larger than one FUSE request (about 1 MiB) into several, and each part
    must not be taken as a command of its own."""
    g = new_group(prefix="ctlhuge")
    g.member("a")
    # Invalid as a whole (a bad value at the end): EINVAL, nothing changes.
    data = b"set capacity=7" + b" " * (2 * 1024 * 1024) + b"capacity=oops"
    assert ctl_verdict(data, ["a"]).kind == "invalid"
    fd = os.open(g.p("ctl"), os.O_WRONLY)
    try:
        try:
            got = os.write(fd, data)
            outcome = f"write returned {got} of {len(data)} bytes"
        except OSError as e:
            outcome = ename(e.errno)
    finally:
        os.close(fd)
    capacity = g.status().group["capacity"]
    assert (outcome, capacity) == ("EINVAL", 256), f"2 MiB invalid ctl write: {outcome}, group capacity now {capacity}"


# --- names ----------------------------------------------------------------------------


def random_name(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.25:
        name = bytes(rng.randrange(1, 256) for _ in range(rng.randint(1, 24)))
    elif r < 0.5:
        name = random_unicode(rng, rng.randint(1, 16))
    elif r < 0.7:
        base = bytearray(rng.choice([b"alice", b"g", b"chat-room_1", b"caf\xc3\xa9"]))
        i = rng.randint(0, len(base))
        base[i:i] = rng.choice([c.encode() for c in ODD_CHARS] + BAD_UTF8 + [b"."])
        name = bytes(base)
    elif r < 0.85:
        # around the 255-byte limit, with multi-byte characters across it
        unit = rng.choice([b"a", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x92\xa5"])
        target = rng.choice([254, 255, 256, 257, 1024, 1025, 4000])
        name = (unit * (target // len(unit) + 1))[:target]
    elif r < 0.88:
        # a dot, then a character that extends its grapheme cluster
        mark = rng.choice(["\u0301", "\u0308", "\u20dd", "\u200d", "\ufe0f", "\U0001f3fb", "\u093f"])
        name = ("." + mark + rng.choice(["", "x", "hidden"])).encode()
    else:
        name = rng.choice([b"send", b"ctl", b"status", b".x", b"..x", b"x.", b"-", b"=", b"a=b", b"\xc2\xa0",
                           b"\xe2\x80\x8b", b"\xef\xbb\xbf", b"\xcc\x81", b"~", b"*", b"?"])
    # The kernel never passes '/' or NUL; "." and ".." are its own.
    name = name.replace(b"/", b"_").replace(b"\0", b"_")
    if name in (b".", b".."):
        name = b"_"
    return name


@pytest.mark.timeout(3600 if LONG else 120)
def test_name_fuzz(mount, new_group):
    g = new_group(prefix="namefuzz")
    root = mount.path.encode()
    gp = g.path.encode()
    rng = random.Random(SEED + 1)
    seen = {}
    started = time.monotonic()
    for i in range(NAME_INPUTS):
        name = random_name(rng)
        want = name_errors(name)
        for where, path, make, remove in (
            ("mkdir", root, lambda p: os.mkdir(p, 0o755), os.rmdir),
            ("create", gp, lambda p: os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NONBLOCK, 0o644)), os.unlink),
        ):
            full = path + b"/" + name
            expect = {0} if want == {0} else want
            if where == "create" and name.decode("utf-8", "replace") in RESERVED:
                expect = {errno.EEXIST}
            try:
                make(full)
                err = 0
            except OSError as e:
                err = e.errno
            seen[(where, ename(err) if err else "ok")] = seen.get((where, ename(err) if err else "ok"), 0) + 1
            assert err in expect, (
                f"#{i} (seed {SEED + 1}) {where} {name[:80]!r} ({len(name)} bytes): "
                f"expected {'/'.join(ename(e) if e else 'success' for e in expect)}, got {ename(err) if err else 'success'}")
            if not err:
                assert name in os.listdir(path), f"{where} {name!r}: made, but not listed as such"
                remove(full)
    print(f"\nname fuzz: {NAME_INPUTS} names x (mkdir, create) (seed {SEED + 1}) in {time.monotonic() - started:.1f} s: "
          + ", ".join(f"{w} {r}: {n}" for (w, r), n in sorted(seen.items())))
    assert mount.running()
    sanity(g)


def test_a_name_too_long_is_enametoolong_whatever_else_is_wrong_with_it(mount, new_group):
    """"A longer name is ENAMETOOLONG": also when it starts with '.' or holds
    a space (the other rules are checked after the length)."""
    g = new_group(prefix="longname")
    for name in (b"." + b"a" * 255, b"a b" + b"c" * 253, b"\t" * 256):
        for path in (os.path.join(mount.path.encode(), name), os.path.join(g.path.encode(), name)):
            with pytest.raises(OSError) as e:
                if path.startswith(g.path.encode()):
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                else:
                    os.mkdir(path)
            assert e.value.errno == errno.ENAMETOOLONG, f"{name[:20]!r}... ({len(name)} bytes): {ename(e.value.errno)}"


def test_a_name_too_long_and_not_utf8_is_enametoolong(mount, new_group):
    g = new_group(prefix="longutf8")
    name = "€".encode() * 85 + b"\xe2"  # 256 bytes, the last character cut
    assert len(name) == 256
    got = {}
    for where, path, make in (
        ("mkdir", os.path.join(mount.path.encode(), name), lambda p: os.mkdir(p)),
        ("create", os.path.join(g.path.encode(), name), lambda p: os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))),
    ):
        try:
            make(path)
            got[where] = "success"
        except OSError as e:
            got[where] = ename(e.errno)
    assert got == {"mkdir": "ENAMETOOLONG", "create": "ENAMETOOLONG"}
