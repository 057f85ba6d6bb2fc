"""The topic filters of docs/contract.md ("Topic filters"), written again in
Python from the contract alone: the reference that the model
(tests/conformance/model.py), the grammar fuzzer
(tests/conformance/test_filter_fuzz.py) and the filtered stress run
(tests/reliability/test_filter_stress.py) judge the daemon by.

A subscription is the value of `member NAME subscribe=...`: patterns
separated by `,`, or the empty string for every message.
"""

from __future__ import annotations

import unicodedata

MAX_PATTERNS = 64
MAX_BYTES = 4096
TOPIC_ENDS = b" \t\n\x00"
# Unicode White_Space (PropList.txt). A pattern may not hold it, nor a control
# character (as names may not), nor the separator of patterns.
WHITE_SPACE = frozenset(
    [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)


def forbidden(ch: str) -> bool:
    return ch == "," or ord(ch) in WHITE_SPACE or unicodedata.category(ch) == "Cc"


class Invalid(ValueError):
    """A subscription the contract refuses (EINVAL)."""


def parse(text: str) -> tuple:
    """The patterns of a `subscribe=` value, each a tuple of byte tokens;
    () for every message. Raises Invalid."""
    if text == "":
        return ()
    raw = text.encode()
    if len(raw) > MAX_BYTES:
        raise Invalid(f"{len(raw)} bytes, more than {MAX_BYTES}")
    parts = raw.split(b",")
    if len(parts) > MAX_PATTERNS:
        raise Invalid(f"{len(parts)} patterns, more than {MAX_PATTERNS}")
    return tuple(parse_pattern(p) for p in parts)


def parse_pattern(raw: bytes) -> tuple:
    if any(forbidden(ch) for ch in raw.decode()):
        raise Invalid(f"whitespace, a control character or ',' in {raw!r}")
    tokens = raw.split(b".")
    for i, token in enumerate(tokens):
        if token == b"":
            raise Invalid(f"an empty token in {raw!r}")
        if token == b">" and i != len(tokens) - 1:
            raise Invalid(f"'>' not last in {raw!r}")
        if token not in (b"*", b">") and (b"*" in token or b">" in token):
            raise Invalid(f"a wildcard inside a token in {raw!r}")
    return tuple(tokens)


def topic(payload: bytes) -> bytes:
    """The payload up to the first space, tab, newline or NUL, or all of it."""
    ends = [i for i in (payload.find(bytes([b])) for b in TOPIC_ENDS) if i >= 0]
    return payload[: min(ends)] if ends else payload


def topic_tokens(payload: bytes) -> list | None:
    """The topic's tokens; None when it matches no pattern (empty, or an
    empty token)."""
    tokens = topic(payload).split(b".")
    return None if b"" in tokens else tokens


def pattern_matches(pattern: tuple, tokens: list) -> bool:
    for i, token in enumerate(pattern):
        if token == b">":
            return len(tokens) > i
        if i >= len(tokens) or (token != b"*" and token != tokens[i]):
            return False
    return len(pattern) == len(tokens)


def matches(patterns: tuple, payload: bytes) -> bool:
    """Whether a member with these parsed patterns receives this payload."""
    if not patterns:
        return True
    tokens = topic_tokens(payload)
    return tokens is not None and any(pattern_matches(p, tokens) for p in patterns)
