"""Ordering (docs/contract.md, "Ordering").

Two members that both receive m1 and m2 receive them in the same order.
Messages written one after another by one writer arrive at every recipient in
that order. The tests below make that hard: several writers at once, on send
and on member files, with small queues so that writers block and wake while
readers drain.
"""

import os
import threading

from helpers import Call


def common_order_agrees(x: list, y: list) -> bool:
    common = set(x) & set(y)
    return [m for m in x if m in common] == [m for m in y if m in common]


def writer_order_kept(received: list, writer: str) -> bool:
    seqs = [int(m.split(b":")[1]) for m in received if m.split(b":")[0] == writer.encode()]
    return seqs == sorted(seqs) and len(seqs) == len(set(seqs))


def read_until(group, name, count, stop, out):
    fd = group.open(name)
    try:
        while len(out) < count and not stop.is_set():
            data = os.read(fd, 4096)
            if not data:
                return
            out.append(data)
    finally:
        os.close(fd)


def test_concurrent_writers_same_order_everywhere(group):
    readers = {"r1": 4, "r2": 64, "r3": 256}  # different capacities: different wake-up patterns
    for name, cap in readers.items():
        group.member(name, capacity=cap)
    member_writers = ["w1", "w2"]
    for w in member_writers:
        group.member(w, capacity=1, drop_when_full=1)  # also recipients; never hold writers back
    send_writers = ["s1", "s2", "s3"]
    per_writer = 150
    total = per_writer * (len(member_writers) + len(send_writers))

    def write_as(file_name, tag):
        fd = group.open(file_name, os.O_WRONLY)
        try:
            for k in range(per_writer):
                os.write(fd, f"{tag}:{k}".encode())
        finally:
            os.close(fd)

    stop = threading.Event()
    got = {name: [] for name in readers}
    reader_calls = [Call(read_until, group, name, total, stop, got[name], name=name) for name in readers]
    writer_calls = [Call(write_as, w, w, name=w) for w in member_writers]
    writer_calls += [Call(write_as, "send", s, name=s) for s in send_writers]
    try:
        for c in writer_calls:
            c.result(30.0)
        for c in reader_calls:
            c.result(10.0)
    finally:
        stop.set()
        for name in readers:  # release any reader still blocked: end of file after rm
            try:
                os.unlink(group.p(name))
            except FileNotFoundError:
                pass
    lists = list(got.values())
    for name, msgs in got.items():
        assert len(msgs) == total, f"{name} got {len(msgs)} of {total}"
    assert lists[0] == lists[1] == lists[2], "members that receive the same messages receive them in one order"
    for w in member_writers + send_writers:
        for name, msgs in got.items():
            assert writer_order_kept(msgs, w), f"{w}'s messages out of order at {name}"


def test_members_with_different_recipient_sets_agree_on_common_order(group):
    """Writers are members (no loopback): each receives everyone's messages but
    its own; every pair of members agrees on the order of what both received."""
    writers = ["a", "b", "c"]
    for w in writers:
        group.member(w, capacity=1024)
    group.member("all", capacity=1024)
    per_writer = 200

    def write_as(name):
        fd = group.open(name, os.O_WRONLY)
        try:
            for k in range(per_writer):
                os.write(fd, f"{name}:{k}".encode())
        finally:
            os.close(fd)

    calls = [Call(write_as, w, name=w) for w in writers]
    for c in calls:
        c.result(30.0)
    got = {name: group.take(name) for name in writers + ["all"]}
    assert len(got["all"]) == per_writer * 3
    for w in writers:
        assert len(got[w]) == per_writer * 2
        assert not any(m.startswith(w.encode() + b":") for m in got[w]), "no loopback"
    names = list(got)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            assert common_order_agrees(got[x], got[y]), f"{x} and {y} disagree on the order"
        for w in writers:
            assert writer_order_kept(got[x], w)


def test_one_writer_order_through_blocking(group):
    """A single writer whose writes block again and again keeps its order."""
    n = 300
    group.member("slow", capacity=1)
    group.member("fast", capacity=n)  # nobody reads it until the end

    def produce():
        fd = group.open("send", os.O_WRONLY)
        try:
            for k in range(n):
                os.write(fd, f"p:{k}".encode())
        finally:
            os.close(fd)

    stop = threading.Event()
    out = []
    producer = Call(produce)
    consumer = Call(read_until, group, "slow", n, stop, out)
    try:
        producer.result(30.0)
        consumer.result(10.0)
    finally:
        stop.set()
    assert out == [f"p:{k}".encode() for k in range(n)]
    assert group.take("fast") == out


def test_order_survives_loopback_and_drop_members(group):
    group.member("lb", loopback=1, capacity=1024)
    group.member("drop", capacity=8, drop_when_full=1)
    group.member("plain", capacity=1024)
    for k in range(100):
        group.send_as("lb", f"lb:{k}".encode())
        group.send(f"s:{k}".encode())
    lb, drop, plain = group.take("lb"), group.take("drop"), group.take("plain")
    assert lb == plain
    assert len(drop) == 8
    assert common_order_agrees(lb, drop)
    assert drop == plain[:8], "a drop-when-full member keeps the first messages, in order"
