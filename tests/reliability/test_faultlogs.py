"""faultlogs.py, the checks of the v2 fault test, on made-up logs: each rule
catches its violation and passes what the contract allows. And the line
model agrees with the C helpers: mclw's bytes are line_bytes's, and mcr -P
logs a line cut short with the CRC that prefix_key computes."""

from __future__ import annotations

import subprocess

import checker as ck
import faultlogs as fl


def write(tmp_path, name: str, text: str) -> str:
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write(text)
    return path


# --- the line model against the C helpers ----------------------------------------


def test_line_bytes_are_what_mclw_writes(rbin, tmp_path):
    out = tmp_path / "stream"
    out.write_bytes(b"")  # mclw opens its path O_WRONLY, without O_CREAT
    log = tmp_path / "mclw.log"
    res = subprocess.run([rbin["mclw"], "-p", str(out), "-i", "7", "-l", str(log), "-n", "300", "-s", "5", "-B"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    delivered = [(int(p[1]), int(p[2])) for p in (ln.split() for ln in open(log)) if p[0] == "R"]
    assert len(delivered) == 300
    assert out.read_bytes() == b"".join(fl.line_bytes(7, c, n) for c, n in delivered)
    lw = fl.parse_line_writer(str(log), 7)
    assert len(lw.wl.accepted) == 300 and lw.writes
    # each write's Q line: the tail after it is the tail before the next one (nothing failed here)
    for a, b in zip(lw.writes, lw.writes[1:]):
        assert (a.after.counter, a.after.k) == (b.before.counter, b.before.k) or not a.after.k and not b.before.k


def test_a_line_cut_short_is_logged_with_the_crc_prefix_key_computes(rbin, tmp_path):
    for k in (1, 5, 23, 24, 60):
        line = fl.line_bytes(3, 41, 97)
        src = tmp_path / f"cut{k}"
        src.write_bytes(line[:k])
        log = tmp_path / f"mcr{k}.log"
        res = subprocess.run([rbin["mcr"], "-p", str(src), "-l", str(log), "-t", "-P"], capture_output=True,
                             text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        rl = fl.parse_reader(str(log), 64)
        assert [e.key for e in rl.entries] == [fl.prefix_key(3, 41, k, 97)], open(log).read()
        assert not rl.corrupt and rl.eof is not None


# --- what a killed line writer's file holds ---------------------------------------


LINE_LOG = """Q 0 0 0 2 10 90 100
B 0 80 0 100
B 1 70 0 100
R 0 80 80 0 0 100 110
R 1 70 70 0 0 100 110
Q 2 10 90 3 5 60 200
B 2 90 0 200
"""


def test_tail_outcomes_follow_the_contract(tmp_path):
    lw = fl.parse_line_writer(write(tmp_path, "w.log", LINE_LOG), 9)
    assert [w.lines for w in lw.writes] == [[0, 1], [2]]
    assert sorted(lw.wl.accepted) == [(9, 0), (9, 1)]
    assert [(9, a.counter) for a in lw.wl.inflight()] == [(9, 2)]
    # the last write delivered its line: the tail its chunk ends with waits
    assert fl.tail_outcomes(lw, lambda m: True) == ([fl.Tail(3, 5, 60)], "all")
    # it delivered nothing: what waited before it
    assert fl.tail_outcomes(lw, lambda m: m != (9, 2)) == ([fl.Tail(2, 10, 90)], "none")
    two = fl.parse_line_writer(write(tmp_path, "w2.log", LINE_LOG + "B 3 60 0 200\n"), 9)
    # some of its lines: a short count, nothing kept
    assert fl.tail_outcomes(two, lambda m: m != (9, 3)) == ([], "some")
    # a write that completes no line leaves either tail
    none = fl.parse_line_writer(write(tmp_path, "w3.log", "Q 4 3 50 4 9 50 300\n"), 9)
    assert fl.tail_outcomes(none, lambda m: False) == ([fl.Tail(4, 3, 50), fl.Tail(4, 9, 50)], "either")
    empty = fl.parse_line_writer(write(tmp_path, "w4.log", "Q 0 0 0 0 0 0 300\nB 0 40 0 300\n"), 9)
    assert fl.tail_outcomes(empty, lambda m: False) == ([], "none")


def test_check_prefix_catches_a_hole_in_what_a_write_delivered():
    ids = [(1, 5), (1, 6), (1, 7)]
    assert fl.check_prefix("w", ids, lambda m: m in {(1, 5), (1, 6)}) == ([], 2)
    assert fl.check_prefix("w", ids, lambda m: False) == ([], 0)
    problems, _ = fl.check_prefix("w", ids, lambda m: m in {(1, 5), (1, 7)})
    assert problems and "not a prefix" in problems[0]


# --- readers ----------------------------------------------------------------------


READER_LOG = """M 1 2 300
T 0a01
H 17 0000abcd
F 2 3 40 11 100 0 0 0 t0
G 0503 12 100 0 0 0 - P
H 9 00000001 13 100 0 0 0 -
E 64 200
X short 3 0 0
EOF msgs=5 reads=9 parts=0 eintr=2
"""


def test_parse_reader_keeps_every_kind_in_order(tmp_path):
    rl = fl.parse_reader(write(tmp_path, "r.log", READER_LOG + "M 9 9"), 256)   # a last line cut by SIGKILL
    # a tiny message is counter * wspan + writer, little-endian: 0x010a is writer 10's message 1
    assert [e.key for e in rl.entries] == [(1, 2), (10, 1), ("H", 17, 0xABCD), (2, 3), (5, 3), ("H", 9, 1)]
    assert [e.frame.seq for e in rl.entries if e.frame] == [11, 12, 13]
    assert [e.frame.private for e in rl.entries if e.frame] == [False, True, False]
    assert rl.entries[3].frame.name == "t0" and rl.entries[4].frame.name == ""
    assert rl.emsgsize == [(64, 200)] and rl.corrupt == ["X short 3 0 0"] and rl.eof["eintr"] == 2
    assert fl.health("r", [rl], need_eof=True) == ["r: corrupt message (%s): X short 3 0 0" % rl.path]


REF = [(0, i) for i in range(10)]


def inc(ids, killed, allowance=1, exit_ns=10**18, blocked=False):
    return fl.Incarnation(list(ids), killed, allowance, exit_ns=exit_ns, blocked_at_signal=blocked)


def test_walk_queue_allows_what_a_killed_reader_takes_and_nothing_else():
    ok = [inc(REF[:3], "open"), inc(REF[4:7], "open", allowance=4), inc(REF[9:], None)]
    problems, stats = fl.walk_queue("m", REF, ok, {})
    assert problems == [] and stats["lost"] == 3 and stats["max_run"] == 2
    # a gap after a reader that was not killed in the open
    problems, _ = fl.walk_queue("m", REF, [inc(REF[:3], "closed"), inc(REF[4:], None)], {})
    assert problems and "at most 0" in problems[0]
    # a record reader takes one message with it, not two
    problems, _ = fl.walk_queue("m", REF, [inc(REF[:3], "open"), inc(REF[5:], None)], {})
    assert problems and "2 messages missing" in problems[0]
    # a framed reader's batch: up to its allowance, in one run
    assert fl.walk_queue("m", REF, [inc(REF[:3], "open", 2), inc(REF[5:], None)], {})[0] == []
    # twice, and out of order
    assert fl.walk_queue("m", REF, [inc(REF[:3], "open"), inc(REF[2:], None)], {})[0]
    assert fl.walk_queue("m", REF, [inc([REF[1], REF[0]] + REF[2:], None)], {})[0]
    # something it should not have got (another member's private message)
    assert fl.walk_queue("m", REF, [inc(REF + [(5, 0)], None)], {})[0]
    # the readers stopped early
    assert fl.walk_queue("m", REF, [inc(REF[:8], None)], {})[0]
    # a lost message written after the killed reader was gone
    late = {REF[3]: ck.Attempt(3, 10, ret=10, t0=2000)}
    problems, _ = fl.walk_queue("m", REF, [inc(REF[:3], "open", exit_ns=1000), inc(REF[4:], None)], late)
    assert problems and "after the killed reader was gone" in problems[0]


def test_check_shared_queue_counts_what_its_killed_readers_may_take():
    a, b = inc(REF[0:10:2], None), inc([REF[1], REF[3], REF[7], REF[9]], "open")
    assert fl.check_shared_queue("s", REF, [a, b]) == ([], 1)
    problems, _ = fl.check_shared_queue("s", REF, [a, inc([REF[1], REF[9]], "open")])
    assert problems and "3 messages missing" in problems[0]
    assert fl.check_shared_queue("s", REF, [a, inc([REF[1], REF[2], REF[3], REF[5], REF[7], REF[9]], None)])[0]


def test_consecutive_writes_and_batch_writes(tmp_path):
    log = write(tmp_path, "fw.log", "B 0 5 0 100\nB 1 5 0 100\nR 0 5 5 0 0 100 120\nR 1 5 5 0 0 100 120\n"
                                    "B 2 5 0 200\nR 2 5 5 0 0 200 220\nB 3 5 0 300\n")
    wl = ck.parse_writer_log(log, 4)
    writes = fl.batch_writes(wl)
    assert writes == [[(4, 0), (4, 1)], [(4, 2)]]
    assert fl.consecutive_writes("b", writes, {(4, 0): 7, (4, 1): 8, (4, 2): 12}) == []
    assert fl.consecutive_writes("b", writes, {(4, 0): 7, (4, 1): 9, (4, 2): 12})
    assert [a.counter for a in wl.inflight()] == [3]


def test_prefix_key_tells_lines_and_lengths_apart():
    assert fl.prefix_key(1, 2, 30, 90) != fl.prefix_key(1, 2, 31, 90)
    assert fl.prefix_key(1, 2, 30, 90) != fl.prefix_key(1, 3, 30, 90)
    assert fl.prefix_key(1, 2, 30, 90) != fl.prefix_key(2, 2, 30, 90)
    # the first bytes are the same for every line: so are their keys (the test calls them ambiguous)
    assert fl.prefix_key(1, 2, 2, 90) == fl.prefix_key(1, 7, 2, 50)
