"""The checker checks: each rule it enforces is shown to catch a violation on
made-up logs (no mount), so a passing stress run is not a vacuous one.
mcr's decoding is checked on single messages passed through a FIFO."""

from __future__ import annotations

import os
import subprocess
import zlib

import checker as ck

A, B, C, D = (1, 0), (1, 1), (2, 0), (2, 1)


def test_exact_catches_missing_duplicate_extra_and_order():
    assert ck.check_exact("m", [A, B, C], [A, B, C]) == []
    assert ck.check_exact("m", [A, C], [A, B, C])               # a gap
    assert ck.check_exact("m", [A, B, C, D], [A, B, C])         # not for it
    assert ck.check_exact("m", [A, C, B], [A, B, C])            # order
    assert ck.check_no_duplicates("m", [A, B, A])


def test_order_checks():
    pos = {m: i for i, m in enumerate([A, C, B, D])}
    assert ck.check_follows("m", [A, B, D], pos) == []
    assert ck.check_follows("m", [B, C], pos)                   # disagrees with the group order
    assert ck.check_writer_order("m", [A, C, B, D]) == []
    assert ck.check_writer_order("m", [B, A])                   # writer 1's order broken
    assert ck.check_pairwise_order({"x": [A, C, B], "y": [C, B, D]}) == []
    assert ck.check_pairwise_order({"x": [A, C, B], "y": [B, C]})


def test_contiguous_run():
    ref = [A, B, C, D]
    assert ck.check_contiguous("t", [B, C], ref) == ([], (1, 2))
    assert ck.check_contiguous("t", [A, C], ref)[0]             # gap inside the run
    assert ck.check_contiguous("t", [A, C], ref, own={B})[0] == []


def test_received_must_have_been_accepted(tmp_path):
    log = tmp_path / "w.log"
    log.write_text("B 0 1 0 10\nR 0 1 1 0 0 10 20\n"          # accepted
                   "B 1 40 1 30\nR 1 40 -1 11 1 30 31\n"      # EAGAIN
                   "B 2 50 0 40\n")                           # died in write(2)
    wl = ck.parse_writer_log(str(log), 7)
    assert wl.accepted == {(7, 0): 1}
    assert [a.counter for a in wl.failed()] == [1]
    assert [a.counter for a in wl.inflight()] == [2]
    attempts = {(7, a.counter): a for a in wl.attempts.values()}
    assert ck.check_received_were_accepted("m", [((7, 0), 1)], wl.accepted, attempts) == []
    assert ck.check_received_were_accepted("m", [((7, 1), 40)], wl.accepted, attempts)   # EAGAIN reached it
    assert ck.check_received_were_accepted("m", [((7, 0), 2)], wl.accepted, attempts)    # wrong length
    assert ck.check_received_were_accepted("m", [((9, 0), 2)], wl.accepted, attempts)    # never written


def test_max_message_edges(tmp_path):
    log = tmp_path / "w.log"
    log.write_text("R 0 1 1 0 0 1 2\nR 1 100 100 0 0 3 4\nR 2 101 -1 90 0 5 6\n")   # 90: EMSGSIZE
    assert ck.check_max_message_edges(ck.parse_writer_log(str(log), 0), 100) == []
    log.write_text("R 0 1 1 0 0 1 2\nR 1 100 -1 90 0 3 4\nR 2 101 101 0 0 5 6\n")
    assert len(ck.check_max_message_edges(ck.parse_writer_log(str(log), 0), 100)) == 2   # refused, then taken


def one_message_through_mcr(rbin, tmp_path, data: bytes, bufsize: int = 4096) -> ck.ReaderLog:
    """mcr reads one message written whole into a FIFO, then end of file."""
    fifo = tmp_path / "fifo"
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    rlog = tmp_path / "r.log"
    if rlog.exists():
        rlog.unlink()
    reader = subprocess.Popen([rbin["mcr"], "-p", str(fifo), "-l", str(rlog), "-b", str(bufsize)],
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    fd = os.open(fifo, os.O_WRONLY)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)
    assert reader.wait(30) == 0
    reader.stdout.close()
    return ck.parse_reader_log(str(rlog), 64)


def full_message(wid: int, counter: int, body: bytes) -> bytes:
    length = 16 + len(body)
    return (length.to_bytes(4, "little") + wid.to_bytes(2, "little") + (0xC0DE).to_bytes(2, "little")
            + counter.to_bytes(4, "little") + zlib.crc32(body).to_bytes(4, "little") + body)


def test_mcr_decodes_and_catches_corruption(rbin, tmp_path):
    good = full_message(3, 77, b"x" * 100)
    assert one_message_through_mcr(rbin, tmp_path, good).msgs == [((3, 77), 116)]
    assert one_message_through_mcr(rbin, tmp_path, good, bufsize=16).msgs == [((3, 77), 116)]  # in parts
    bad = bytearray(good)
    bad[50] ^= 1
    assert one_message_through_mcr(rbin, tmp_path, bytes(bad)).corrupt[0].startswith("X crc")
    assert one_message_through_mcr(rbin, tmp_path, good[:-1]).corrupt                       # cut short
    assert one_message_through_mcr(rbin, tmp_path, good + good).corrupt                      # two in one read
    tiny = (5 * 64 + 9).to_bytes(2, "little")                                                # counter 5, writer 9
    assert one_message_through_mcr(rbin, tmp_path, tiny).msgs == [((9, 5), 2)]


def frame(mid, seq, pid=10, uid=0, gid=0, dropped=0, name=""):
    return ck.Frame(mid, 20, seq, pid, uid, gid, dropped, name)


def test_frame_checks_catch_sequence_credentials_and_sender():
    creds = {1: (10, 0, 0, ""), 2: (20, 65534, 65534, "wm")}
    good = [frame(A, 1), frame(C, 2, 20, 65534, 65534, name="wm"), frame(B, 5)]
    assert ck.check_frames("m", good, creds) == []
    assert ck.check_frames("m", [frame(A, 2), frame(B, 2)], creds)                  # not strictly increasing
    assert ck.check_frames("m", [frame(C, 1, 20, 0, 65534, name="wm")], creds)      # uid forged
    assert ck.check_frames("m", [frame(C, 1, 21, 65534, 65534, name="wm")], creds)  # another pid
    assert ck.check_frames("m", [frame(C, 1, 20, 65534, 65534)], creds)             # sender name lost
    assert ck.check_frames("m", [frame(C, 1, 0, 0, 0, name="wm")], creds)           # credentials 0 (a lost writer)


def test_one_sequence_per_message():
    assert ck.check_one_sequence({"x": [frame(A, 1), frame(B, 2)], "y": [frame(B, 2)]})[0] == []
    assert ck.check_one_sequence({"x": [frame(A, 1)], "y": [frame(A, 2)]})[0]       # two numbers for A
    assert ck.check_one_sequence({"x": [frame(A, 1)], "y": [frame(B, 1)]})[0]       # one number for two


def test_dropped_must_be_the_gaps_and_add_up():
    frames = [frame(A, 1), frame(B, 4, dropped=2), frame(C, 5)]
    assert ck.check_dropped("d", frames, sent=7, status_dropped=4) == []            # 2 in frames, 2 after
    assert ck.check_dropped("d", frames, sent=7, status_dropped=3)                  # status disagrees
    assert ck.check_dropped("d", [frame(A, 1), frame(B, 4, dropped=1)], sent=4, status_dropped=2)
    assert ck.check_dropped("d", [frame(A, 2)], sent=2, status_dropped=1)           # the first gap, uncounted


def test_emsgsize_only_for_a_frame_that_does_not_fit():
    assert ck.check_emsgsize("m", [(100, 97), (100, 200)]) == []                    # 97 pads to 104
    assert ck.check_emsgsize("m", [(104, 97)])


def test_frame_log_parsing(tmp_path):
    log = tmp_path / "f.log"
    log.write_text("F 1 0 20 3 10 0 0 2 wm\nG 4100 4 10 0 0 0 -\nE 64 300\nX payload 3 1 1\nEOF msgs=2\ncut")
    r = ck.parse_frame_log(str(log), 64)
    assert r.frames[1].mid == (0x41 % 64, 0x41 // 64) and r.msgs[1] == ((1, 1), 2)
    assert r.frames[0] == ck.Frame(A, 20, 3, 10, 0, 0, 2, "wm") and r.frames[1].name == ""
    assert r.emsgsize == [(64, 300)] and r.corrupt and r.eof == {"msgs": 2}


def test_frame_log_parsing_of_private_frames(tmp_path):
    log = tmp_path / "p.log"
    log.write_text("F 1 0 20 3 10 0 0 0 - P\nG 4100 4 10 0 0 0 - P\nF 1 1 20 5 10 0 0 0 wm\nEOF msgs=3\n")
    r = ck.parse_frame_log(str(log), 64)
    assert [f.private for f in r.frames] == [True, True, False]
    assert r.frames[0].name == "" and len(r.msgs) == 3


def test_drops_among_what_was_addressed_to_a_member():
    # 1..8 accepted; 3 and 6 were private to others: 1 2 4 5 7 8 were this member's
    addressed = [1, 2, 4, 5, 7, 8]
    frames = [frame(A, 1), frame(B, 5, dropped=2), frame(C, 7)]
    assert ck.check_dropped_among("d", frames, addressed, status_dropped=3) == []    # 2 before 5, 1 after 7
    assert ck.check_dropped_among("d", [frame(A, 1), frame(B, 5, dropped=3)], addressed, status_dropped=5)
    assert ck.check_dropped_among("d", frames, addressed, status_dropped=2)          # status disagrees


# --- the rules of the mixed run: one model of recipients -----------------------------

def reader(*ids) -> ck.ReaderLog:
    return ck.ReaderLog("r", msgs=[(m, 20) for m in ids])


def status(delivered, dropped=0):
    return {"delivered": delivered, "dropped": dropped}


# writer 1 on send, writer 2 as member "w", writer 3 privately to "p"
W1 = [(1, c) for c in range(4)]
W2 = [(2, c) for c in range(2)]
P3 = [(3, c) for c in range(2)]
REF = [W1[0], W2[0], W1[1], W1[2], W2[1], W1[3]]


def traffic(starts=None) -> ck.Traffic:
    accepted = {m: 20 for m in W1 + W2 + P3}
    return ck.Traffic(accepted, {}, sender={2: "w"}, private_to={3: "p"},
                      starts=starts or {m: b"A" if m[1] % 2 == 0 else b"B" for m in accepted})


def test_payload_start_gives_the_topic_of_a_message():
    assert ck.payload_start((3, 9), 65, 64) == b"A\0\0\0\3\0"                   # its length, LE
    assert ck.payload_start((3, 9), 2, 64) == (9 * 64 + 3).to_bytes(2, "little")  # a tiny one: the number


def test_addressed_follows_filter_loopback_and_private():
    t = traffic()
    assert t.addressed(ck.Member("x"), W1[0]) and t.addressed(ck.Member("x"), W2[0])
    assert not t.addressed(ck.Member("w"), W2[0])                               # its own, no loopback
    assert t.addressed(ck.Member("w", loopback=True), W2[0])
    assert not t.addressed(ck.Member("w", "B", loopback=True), W2[0])          # loopback, but no match
    assert not t.addressed(ck.Member("x", "A"), W1[1]) and t.addressed(ck.Member("x", "A"), W1[2])
    assert t.addressed(ck.Member("p", "never"), P3[0])                          # private: filters do not apply
    assert not t.addressed(ck.Member("x"), P3[0])                               # nobody else's


def test_member_gets_exactly_what_is_addressed_to_it():
    t = traffic()
    plain = ck.Member("x")
    assert ck.check_member(plain, [reader(*REF)], REF, t, status(6)) == ([], 0)
    assert ck.check_member(plain, [reader(*REF[:-1])], REF, t, status(5))[0]          # one missing
    assert ck.check_member(plain, [reader(*REF)], REF, t, status(5))[0]               # delivered wrong
    assert ck.check_member(plain, [reader(*REF, P3[0])], REF, t, status(7))[0]        # another's private
    assert ck.check_member(plain, [reader(*REF)], REF, t, status(6, 1))[0]            # dropped without dwf
    sender = ck.Member("w")
    mine = [m for m in REF if m[0] != 2]
    assert ck.check_member(sender, [reader(*mine)], REF, t, status(4)) == ([], 0)
    assert ck.check_member(sender, [reader(*REF)], REF, t, status(6))[0]              # got its own
    filtered = ck.Member("f", "A")
    a_only = [m for m in REF if m[1] % 2 == 0]
    assert ck.check_member(filtered, [reader(*a_only)], REF, t, status(len(a_only))) == ([], 0)
    assert ck.check_member(filtered, [reader(*REF)], REF, t, status(6))[0]            # not matching
    order = [REF[1], REF[0]] + REF[2:]
    assert ck.check_member(plain, [reader(*order)], REF, t, status(6))[0]             # not the group order


def test_private_messages_reach_their_member_whatever_its_filter():
    t = traffic()
    p = ck.Member("p", "never")
    assert ck.check_member(p, [reader(P3[0], P3[1])], REF, t, status(2)) == ([], 0)
    assert ck.check_member(p, [reader(P3[0])], REF, t, status(1))[0]                  # one private lost
    assert ck.check_member(p, [reader(P3[0], W1[0], P3[1])], REF, t, status(3))[0]    # filtered out, yet got it


def test_dropping_member_misses_exactly_its_dropped():
    t = traffic()
    d = ck.Member("p", drops=True)
    got = [REF[0], P3[0], REF[3], REF[5]]
    # missed: REF 1, 2, 4 and P3[1]
    assert ck.check_member(d, [reader(*got)], REF, t, status(4, 4)) == ([], 4)
    assert ck.check_member(d, [reader(*got)], REF, t, status(4, 3))[0]
    assert ck.check_member(d, [reader(REF[3], REF[0])], REF, t, status(2, 4))[0]      # order


def test_member_shared_by_readers_gets_each_message_once():
    t = traffic()
    plain = ck.Member("x")
    assert ck.check_member(plain, [reader(*REF[::2]), reader(*REF[1::2])], REF, t, status(6)) == ([], 0)
    assert ck.check_member(plain, [reader(*REF[::2]), reader(*REF[1:4])], REF, t, status(6))[0]  # twice, and a gap
    assert ck.check_member(plain, [reader(REF[2], REF[0]), reader(*REF[1::2])], REF, t, status(5))[0]  # one reader's order


def test_member_whose_patterns_flip_gets_only_what_a_list_matches():
    starts = {m: b"A" for m in W1 + W2 + P3}
    starts[W1[1]] = b"Z"
    t = traffic(starts)
    toggle = ck.Member("x", either="A,B")
    assert ck.check_member(toggle, [reader(REF[0], REF[3])], REF, t, status(2)) == ([], 0)
    assert ck.check_member(toggle, [reader(REF[0], W1[1])], REF, t, status(2))[0]


def test_peer_gets_exactly_its_talkers_messages():
    assert ck.check_peer("w", W2, REF, {2}) == []
    assert ck.check_peer("w", W2[:1], REF, {2})                                   # one lost
    assert ck.check_peer("w", [W2[0], W1[1], W2[1]], REF, {2})                    # someone else's


def test_private_flag_must_mark_exactly_the_private_frames():
    t = traffic()
    good = [ck.Frame(W1[0], 20, 1, 10, 0, 0, 0, ""), ck.Frame(P3[0], 20, 2, 10, 0, 0, 0, "", private=True)]
    assert ck.check_private_flags("p", good, t) == []
    assert ck.check_private_flags("p", [ck.Frame(P3[0], 20, 2, 10, 0, 0, 0, "")], t)
    assert ck.check_private_flags("p", [ck.Frame(W1[0], 20, 1, 10, 0, 0, 0, "", private=True)], t)


def test_sequences_addressed_to_a_dropping_member():
    t = traffic()
    d = ck.Member("p", "A", drops=True)
    # 1..9 sent: REF is 1 .. 6 (seen), P3[0] got 8, P3[1] dropped (7 or 9 unseen?) - 9 unseen, 7 was the fill
    seq_of = {m: i + 1 for i, m in enumerate(REF)} | {P3[0]: 8}
    problems, seqs = ck.addressed_sequences(d, t, seq_of, sent=9, before={7})
    assert problems == [] and seqs == [1, 2, 4, 8, 9]        # A-topic group messages (not W1[1], W2[1]) and its privates
    assert ck.addressed_sequences(d, t, seq_of, sent=10, before={7})[0]          # a number nobody can account for
    assert ck.addressed_sequences(d, t, {k: v for k, v in seq_of.items() if k != REF[5]}, 9, {7})[0]  # a stray
    assert ck.check_dropped_among("p", [ck.Frame(REF[0], 20, 1, 0, 0, 0, 0, ""),
                                        ck.Frame(P3[0], 20, 8, 0, 0, 0, 2, "", private=True)], seqs, 3) == []


def attempt(c, t0, t1):
    return ck.Attempt(c, 20, 20, 0, 0, t0, t1)


def test_transient_member_gets_a_run_without_gaps_and_what_it_must():
    ref = [(1, c) for c in range(8)]
    attempts = {m: attempt(m[1], 100 * m[1], 100 * m[1] + 50) for m in ref}    # message c: c*100 .. c*100+50
    tl = ck.Timeline(ref, attempts)
    times = dict(j0=180, j1=190, l0=600, l1=610)
    assert ck.check_transient("t", ref[2:6], tl, times) == ([], 4)             # 2, 3, 4, 5 written while a member
    assert ck.check_transient("t", ref[2:6] + ref[7:], tl, times)[0]           # a gap (6)
    assert ck.check_transient("t", ref[3:6], tl, times)[0]                     # 2 was written while it was there
    assert ck.check_transient("t", ref[0:6], tl, times)[0]                     # 0 was written before it joined
    assert ck.check_transient("t", [], tl, times)[0]                           # nothing at all


def test_transient_member_with_a_filter_set_after_it_joined():
    ref = [(1, c) for c in range(8)]
    attempts = {m: attempt(m[1], 100 * m[1], 100 * m[1] + 50) for m in ref}
    tl = ck.Timeline(ref, attempts)
    times = dict(j0=180, j1=190, s0=260, s1=270, l0=800, l1=810)
    even = lambda m: m[1] % 2 == 0  # noqa: E731
    # 2 (before the filter) must come, 3 (after it, odd) must not; then only the even ones
    assert ck.check_transient("t", [ref[2], ref[4], ref[6]], tl, times, even)[0] == []
    assert ck.check_transient("t", [ref[2], ref[3], ref[4], ref[6]], tl, times, even)[0]   # 3 after the filter
    assert ck.check_transient("t", [ref[4], ref[6]], tl, times, even)[0]                   # 2 was unfiltered
    times["s1"] = 320                                    # 3 written during the subscribe command: either way
    assert ck.check_transient("t", [ref[2], ref[3], ref[4], ref[6]], tl, times, even)[0] == []
    assert ck.check_transient("t", [ref[2], ref[4], ref[6]], tl, times, even)[0] == []


def test_transient_member_of_a_clustered_group():
    """relayed=True: its node delivers after the writes returned and applies
    its filter from some message of its delivery on."""
    ref = [(1, c) for c in range(8)]
    attempts = {m: attempt(m[1], 100 * m[1], 100 * m[1] + 50) for m in ref}
    tl = ck.Timeline(ref, attempts)
    times = dict(j0=180, j1=190, l0=600, l1=610)
    assert ck.check_transient("t", ref[2:6], tl, times, relayed=True) == ([], 4)
    assert ck.check_transient("t", ref[2:4], tl, times, relayed=True) == ([], 2)    # 4, 5 still on their way
    assert ck.check_transient("t", [], tl, times, relayed=True) == ([], 0)          # left before anything came
    assert ck.check_transient("t", ref[3:6], tl, times, relayed=True)[0]            # 2 came after its join
    assert ck.check_transient("t", ref[2:4] + ref[5:6], tl, times, relayed=True)[0]  # a gap (4)
    assert ck.check_transient("t", ref[1:4], tl, times, relayed=True)[0]            # 1 was stored before j0
    assert ck.check_transient("t", ref[2:8], tl, times, relayed=True)[0]            # 7 written after it left
    even = lambda m: m[1] % 2 == 0  # noqa: E731
    times = dict(j0=180, j1=190, s0=460, s1=470, l0=800, l1=810)
    # written before the subscribe command: odd ones either way, the filter switching once
    assert ck.check_transient("t", ref[2:5] + [ref[6]], tl, times, even, relayed=True)[0] == []
    assert ck.check_transient("t", [ref[2], ref[4], ref[6]], tl, times, even, relayed=True)[0] == []
    assert ck.check_transient("t", [ref[2], ref[4], ref[5], ref[6]], tl, times, even, relayed=True)[0]  # 5 after s1
    assert ck.check_transient("t", [ref[2], ref[4], ref[6]], tl, times, even)[0]   # not relayed: 3 was unfiltered
    # 3 missed (filtered), then 5 received (unfiltered again), both written before s0
    times = dict(j0=180, j1=190, s0=560, s1=570, l0=800, l1=810)
    assert ck.check_transient("t", [ref[2], ref[4], ref[5], ref[6]], tl, times, even, relayed=True)[0]
    assert ck.check_transient("t", [ref[2], ref[3], ref[4], ref[6]], tl, times, even, relayed=True)[0] == []


class Snap:
    def __init__(self, sent, blocked=0, **members):
        self.group = {"sent": sent, "blocked_writers": blocked}
        self.members = {n: dict(dict(queued=0, queued_bytes=0, capacity=4, queue_bytes=1000, full=0, delivered=0,
                                     dropped=0, peer_queued=0, peer_full=0), **m) for n, m in members.items()}


def test_snapshot_rules():
    ok = Snap(10, 1, a=dict(delivered=8, dropped=1), b=dict(delivered=9), f=dict(delivered=3),
              t=dict(queued=4, full=1, delivered=9, peer_queued=4, peer_full=1))
    rules = dict(plain=["a", "b"], bounded=["f"], senders=2, talkers=["t"])
    assert ck.check_snapshot(ok, **rules) == []
    assert ck.check_snapshot(ok, plain=["a", "b"], sent_less=1, senders=1) == []
    assert ck.check_snapshot(ok, plain=["a", "b"], sent_less=0, senders=1)               # privates: none here
    assert ck.check_snapshot(Snap(10, a=dict(delivered=8), b=dict(delivered=9)), plain=["a", "b"])  # a lost one
    assert ck.check_snapshot(Snap(10, 3), senders=2)                                     # blocked_writers
    assert ck.check_snapshot(Snap(10, a=dict(queued=3, delivered=2)))                    # queued > delivered
    assert ck.check_snapshot(Snap(10, a=dict(delivered=9, dropped=2)))                   # more than sent
    assert ck.check_snapshot(Snap(10, a=dict(queued=4, delivered=4)))                    # full, not said
    assert ck.check_snapshot(Snap(10, a=dict(queued=1, queued_bytes=1000, delivered=4)))  # full by bytes
    assert ck.check_snapshot(Snap(10, a=dict(queued=1, full=1, delivered=4)))            # full=1, not full
    assert ck.check_snapshot(Snap(10, t=dict(peer_queued=4)), talkers=["t"])             # peer_full not said
    assert ck.check_snapshot(Snap(10, a=dict(delivered=9), f=dict(delivered=10)), plain=["a"], bounded=["f"])
    later = Snap(12, a=dict(delivered=10, dropped=1), b=dict(delivered=11), f=dict(delivered=3),
                 t=dict(delivered=9))
    assert ck.check_snapshot(later, ok, plain=["a", "b"]) == []
    assert ck.check_snapshot(Snap(9, a=dict(delivered=9)), ok, plain=["a"])               # sent went down
    assert ck.check_snapshot(Snap(12, a=dict(delivered=7, dropped=1)), ok)                # delivered went down
    assert ck.check_snapshot(Snap(12, a=dict(delivered=11, dropped=1)), ok, plain=["a"])  # privates went down
    # a node of a cluster: another node's member (r) shows what it last reported, judged only over time
    remote = Snap(10, a=dict(delivered=8), r=dict(queued=9, delivered=12))
    assert ck.check_snapshot(remote, local=["a"]) == []
    assert ck.check_snapshot(remote)
    assert ck.check_snapshot(Snap(12, a=dict(delivered=9), r=dict(delivered=11)), remote, local=["a"])  # went down


def test_framed_view_judges_every_frame_and_a_dropping_members_gaps():
    t = traffic()
    seq_of = {m: i + 1 for i, m in enumerate(REF)}
    creds = {1: (10, 0, 0, ""), 2: (20, 0, 0, "w"), 3: (30, 65534, 65534, "")}

    def fr(m, seq, dropped=0):
        pid, uid, gid, name = creds[m[0]]
        return ck.Frame(m, 20, seq, pid, uid, gid, dropped, name, private=t.private(m))

    anchor = ck.FrameLog("a", frames=[fr(m, seq_of[m]) for m in REF])
    # sent 8: the group's 1 .. 6, then private ones to p at 7 and 8; p (drop-when-full) gets 1 and
    # its private at 7, missing 2 .. 6 before it and the one at 8 after it
    members = {"p": ck.Member("p", drops=True)}
    ok = {"a": [anchor], "p": [ck.FrameLog("p", frames=[fr(REF[0], 1), fr(P3[0], 7, dropped=5)])]}
    problems, figures = ck.check_framed_view(ok, REF, 8, creds, t, members, {"p": {"dropped": 6}})
    assert problems == [] and figures["private_frames"] == 1 and figures["dropping_members_gaps"] == 1
    assert ck.check_framed_view(ok, REF, 8, creds, t, members, {"p": {"dropped": 5}})[0]    # status disagrees
    short = {"a": [anchor], "p": [ck.FrameLog("p", frames=[fr(REF[0], 1), fr(P3[0], 7, dropped=4)])]}
    assert ck.check_framed_view(short, REF, 8, creds, t, members, {"p": {"dropped": 5}})[0]  # a gap miscounted
    assert ck.check_framed_view(ok, REF, 9, creds, t, members, {"p": {"dropped": 7}})[0]    # 9 is nobody's
    forged = {"a": [ck.FrameLog("a", frames=[fr(m, seq_of[m]) for m in REF[:-1]] +
                                [ck.Frame(REF[-1], 20, 6, 10, 65534, 0, 0, "")])]}
    assert ck.check_framed_view(forged, REF, 6, creds, t, {}, {})[0]                        # another uid
    swapped = {"a": [ck.FrameLog("a", frames=[fr(REF[1], 1), fr(REF[0], 2)])]}
    assert ck.check_framed_view(swapped, REF, 6, creds, t, {}, {})[0]                       # against the group order
