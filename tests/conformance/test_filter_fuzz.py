"""The topic pattern grammar, fuzzed through the mount (docs/contract.md,
"Topic filters") and judged by the reference parser and matcher of
tests/lib/topicfilter.py, which is written from the contract alone.

Hypothesis draws `subscribe=` values from the characters that matter to the
grammar (`.`, `*`, `>`, `,`, tabs, NUL, spaces, non-ASCII, tokens that are
byte prefixes of each other) and from the limits' edges (64 patterns, 4 KiB,
the 4 KiB command). mcastfs must answer EINVAL exactly when the reference
says the command is invalid, and change nothing then; otherwise show the
value in `status` as written, and deliver to the member exactly the
messages the reference matcher says it matches.

    python3 -m pytest tests/conformance/test_filter_fuzz.py -s
    CONFORMANCE_SCALE=long python3 -m pytest tests/conformance/test_filter_fuzz.py -s
"""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import topicfilter
from helpers import drain, parse_status

from .model import ctl_verdict

LONG = os.environ.get("CONFORMANCE_SCALE") == "long"
STATS = {"valid": 0, "invalid": 0, "ambiguous": 0, "deliveries": 0, "skipped": 0}

PIECES = ["a", "b", "tx", "tx_trytes", "é", "x", ".", ".", ".", "*", "*", ">", ">", ",", ",", "\t", "\x00", " ",
          "a*", ">b", "\r", "-"]
TOKENS = ["a", "b", "tx", "tx_trytes", "é", "x", "-", "\r"]

PATTERN_TEXT = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=14).map("".join),
    # around the limits: 64 patterns, 4 KiB of patterns, a 4 KiB command
    st.integers(60, 68).map(lambda n: ",".join(f"p{i}" for i in range(n))),
    st.integers(4060, 4100).map(lambda n: "x" * n),
    st.integers(2020, 2060).map(lambda n: "y" * n + "," + "z" * n),
)
PAYLOADS = st.lists(
    st.tuples(st.lists(st.sampled_from(TOKENS + [""]), min_size=0, max_size=4).map(".".join),
              st.sampled_from(["", " body", "\n", "\t1", "\x00z", "."])).map(lambda p: (p[0] + p[1]).encode()),
    min_size=1, max_size=6,
).map(lambda xs: [x for x in xs if x])  # a zero-length write is no message


@pytest.fixture(scope="module")
def fuzz_group(mount):
    g = mount.group("fuzz")
    g.member("m")
    return g


def raw_subscribe(g) -> str:
    line = next(x for x in parse_status(open(g.p("status"), "rb").read().decode()).lines if x.startswith("member m "))
    return line.rpartition(" subscribe=")[2]


def ctl_write(g, data: bytes) -> int:
    fd = os.open(g.p("ctl"), os.O_WRONLY)
    try:
        os.write(fd, data)
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


@pytest.mark.timeout(1800 if LONG else 300)
def test_subscribe_grammar_and_matching_follow_the_reference(fuzz_group):
    g = fuzz_group

    @settings(max_examples=2000 if LONG else 300, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    @given(text=PATTERN_TEXT, payloads=PAYLOADS, newline=st.booleans(), draw=st.data())
    def one(text, payloads, newline, draw):
        before = raw_subscribe(g)
        data = f"member m subscribe={text}".encode() + (b"\n" if newline else b"")
        verdict = ctl_verdict(data, {"m": None})
        err = ctl_write(g, data)
        STATS[verdict.kind] += 1
        if verdict.kind == "invalid":
            assert err == errno.EINVAL, f"{data[:80]!r}... is invalid ({verdict.reason}), mcastfs gave {err}"
            assert raw_subscribe(g) == before, "an invalid command changed the member"
            return
        if verdict.kind == "ambiguous":  # the contract is silent (a run of spaces, ...): either answer
            assert err in (0, errno.EINVAL), f"{data[:80]!r}: {err}"
            if err:
                return
        else:
            assert err == 0, f"{data[:80]!r}... is valid, mcastfs gave {errno.errorcode.get(err, err)}"
        value = verdict.command.changes["subscribe"]
        assert raw_subscribe(g) == value
        parsed = topicfilter.parse(value)
        payloads = list(payloads)
        # Topics made from the patterns themselves, so that many match (or
        # nearly: a token cut, one more token, a byte prefix).
        for pattern in draw.draw(st.lists(st.sampled_from(parsed), max_size=3)) if parsed else []:
            tokens = []
            for token in pattern:
                if token == b"*":
                    tokens.append(draw.draw(st.sampled_from(TOKENS)).encode())
                elif token == b">":
                    tokens += [t.encode() for t in draw.draw(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=2))]
                else:
                    tokens.append(token)
            cut = draw.draw(st.sampled_from(["", "", "drop", "extra", "prefix"]))
            if cut == "drop":
                tokens = tokens[:-1]
            elif cut == "extra":
                tokens.append(b"x")
            elif cut == "prefix" and len(tokens[-1]) > 1:
                tokens[-1] = tokens[-1][:-1]
            payload = b".".join(tokens) + draw.draw(st.sampled_from([b"", b" rest", b"\n"]))
            if payload:
                payloads.append(payload)
        for payload in payloads:
            g.send(payload)
        got = drain(fd := g.open_nb("m"))
        os.close(fd)
        want = [p for p in payloads if topicfilter.matches(parsed, p)]
        STATS["deliveries"] += len(want)
        STATS["skipped"] += len(payloads) - len(want)
        assert got == want, f"subscribe={value!r}: sent {payloads!r}, got {got!r}, the reference says {want!r}"

    one()
    print(f"\nfilter grammar fuzz: {STATS}")
    assert STATS["valid"] > 20 and STATS["invalid"] > 20, STATS
