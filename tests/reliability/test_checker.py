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
    seen = []
    assert ck.check_frames("m", [frame(C, 1, 0, 0, 0, name="wm")], creds, {C}, seen) == [] and seen == [C]
    assert ck.check_frames("m", [frame(C, 1, 0, 0, 0, name="wm")], creds)           # tolerated only when named


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
    from test_peer_stress import check_dropped_among
    # 1..8 accepted; 3 and 6 were private to others: 1 2 4 5 7 8 were this member's
    addressed = [1, 2, 4, 5, 7, 8]
    frames = [frame(A, 1), frame(B, 5, dropped=2), frame(C, 7)]
    assert check_dropped_among("d", frames, addressed, status_dropped=3) == []    # 2 before 5, 1 after 7
    assert check_dropped_among("d", [frame(A, 1), frame(B, 5, dropped=3)], addressed, status_dropped=5)
    assert check_dropped_among("d", frames, addressed, status_dropped=2)          # status disagrees
