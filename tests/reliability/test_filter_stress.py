"""Stress with a checker, with topic filters (docs/contract.md, "Topic filters").

The writers (mcw, on G/send and as members) send their self-describing
payloads (c/payload.h): a message of 16 bytes or more begins with its length
as a little-endian u32, so its topic (the bytes up to the first space, tab,
newline or NUL) is the low bytes of its length: one byte for most messages
("A" for a message of 65 bytes), two or three for larger ones ("A\\x01" for
321 bytes, which a member subscribed to `A` must not get: tokens, not
prefixes), none when the length's low byte is a space, tab or newline. A
tiny message's topic is the bytes of the number it encodes. The checker
computes every message's topic from what the writers logged, and the
reference matcher (tests/lib/topicfilter.py) says who must get it.

Members: `anchor` (no filter: the group order), `star` (`*`), `rest` (`>`),
`letters` (26 literal patterns, capacity 4: it holds writers back, but only
for its own messages), `digits` (with `*.*`), `dropper` (drop-when-full,
slow), `toggle` (its patterns flip between two halves of the alphabet all
along), `stuck` (full before the writers start, matching nothing, never
read: it must hold nobody back), and two writer-members with filters, one
with loopback. Proved:

- every message received was accepted and is intact; nobody got one twice;
- `anchor` got exactly the accepted messages, and `sent` is their number;
- every member with a fixed filter that is not drop-when-full got exactly
  the accepted messages its patterns match, in the group order (less its own
  messages without loopback, with all of its matching ones with loopback);
- `dropper` got those in the group order less some, and its `dropped` is
  exactly what it misses; no member counts a drop for a message that does
  not match it;
- `toggle` got only messages that match one of its two lists, in order;
- `stuck` still holds its one message and counts no delivery or drop since;
- every member's `delivered` is what its reader got, every writer's order is
  kept, every pair of members agrees on the order of what they share, and
  `blocked_writers` is 0 at the end.
"""

from __future__ import annotations

import os
import random
import string
import time

import pytest

import checker as ck
import procs
import stress
import topicfilter
from helpers import MAX_MESSAGE
from stress import WSPAN

HALVES = (",".join(string.ascii_uppercase[:13]), ",".join(string.ascii_uppercase[13:]))


@pytest.mark.timeout(300)
def test_filtered_members_get_exactly_their_messages_in_one_order(mount_factory, rbin, scale, record, tmp_path):
    seed = stress.run_seed()
    rng = random.Random(seed)
    logs = tmp_path
    mnt = mount_factory()
    g = mnt.group("filtered")

    # Full before anyone else joins (so that nobody else has its message), then matching nothing.
    g.member("stuck", capacity=1)
    g.send(b"fill")
    g.ctl("member stuck subscribe=never.matches.this")

    # name -> (settings, subscribe=, reader options)
    permanent = {
        "anchor": ({}, "", dict(bufsize=2 << 20)),
        "star": ({}, "*", dict(variable=True)),
        "rest": ({}, ">", dict(bufsize=2 << 20)),
        "letters": ({"capacity": 4}, ",".join(string.ascii_uppercase), dict(variable=True)),
        "digits": ({"capacity": 8}, ",".join(string.digits) + ",*.*", dict(bufsize=2 << 20)),
        "dropper": ({"capacity": 1, "drop_when_full": 1}, ",".join(string.ascii_lowercase[:16]),
                    dict(bufsize=2 << 20, delay_us=300)),
        "toggle": ({"capacity": 4}, HALVES[0], dict(variable=True)),
        "wm0": ({"loopback": 1}, "*", dict(variable=True)),
        "wm1": ({"capacity": 16}, ">", dict(bufsize=2 << 20)),
    }
    for name, (settings, patterns, _) in permanent.items():
        g.member(name, **settings)
        g.ctl(f"member {name} subscribe={patterns}")
    loopback = {"wm0"}
    dwf = {"dropper"}

    workers: list[procs.Worker] = []
    readers: dict[str, procs.Worker] = {}
    flips = {"n": 0}
    threads = stress.Threads()
    try:
        for name, (_, _, opts) in permanent.items():
            readers[name] = procs.reader(rbin, g.p(name), str(logs / f"r-{name}.log"), seed=rng.randrange(1 << 30), **opts)
            workers.append(readers[name])
        targets = [("send", "ws0"), ("send", "ws1"), ("wm0", "wm0"), ("wm1", "wm1")]
        writers = {}
        t_start = time.monotonic()
        threads.start(stress.flip_patterns, threads.stop, g, "toggle", HALVES, flips, "n")
        for wid, (path_name, label) in enumerate(targets):
            w = procs.writer(
                rbin, g.p(path_name), wid, str(logs / f"w-{label}.log"), wspan=WSPAN,
                count=scale.attempts_per_writer, deadline_ms=int(scale.stress_time_limit_s * 1000),
                seed=rng.randrange(1 << 30), maxmsg=MAX_MESSAGE, nonblock_pct=25, large_pm=3, medium_pct=8,
                pause_us=rng.choice([0, 100]), label=label, member=path_name,
            )
            writers[wid] = w
            workers.append(w)
        for w in writers.values():
            # A member that does not match a message holding its writer back would hang them here.
            code = w.wait(scale.stress_time_limit_s + 60)
            assert code == 0, f"writer {w.info['label']} exited with {code}: {w.stderr()}"
        t_writers = time.monotonic() - t_start
        threads.finish()
        st = g.status()
        for name in permanent:
            os.unlink(g.p(name))
        for name, r in readers.items():
            code = r.wait(60)
            assert code == 0, f"reader {name} exited with {code}: {r.stderr()}"
    finally:
        threads.stop.set()
        procs.stop_all(workers)

    # --- the checker -------------------------------------------------------------------
    traffic, wlogs, problems, _ = stress.writer_side(writers)
    accepted = traffic.accepted
    seqs = {}
    logs_of = {}
    for name, r in readers.items():
        rl = ck.parse_reader_log(r.log, WSPAN)
        logs_of[name] = [rl]
        problems += ck.check_received(name, [rl], accepted, traffic.attempts)
        seqs[name] = [m for m, _ in rl.msgs]

    ref = seqs["anchor"]
    if set(ref) != set(accepted) or len(ref) != len(accepted):
        problems.append(f"anchor got {len(ref)} messages, {len(accepted)} were accepted")
    if st.group["sent"] != len(accepted) + 1:  # and the fill
        problems.append(f"status sent={st.group['sent']}, but {len(accepted)} writes (and the fill) were accepted")
    if st.group["blocked_writers"] != 0:
        problems.append(f"blocked_writers={st.group['blocked_writers']} after every writer finished")

    topics = traffic.starts
    matched = {}
    for name, (_, patterns, _) in permanent.items():
        m = ck.Member(name, patterns, loopback=name in loopback, drops=name in dwf,
                      either=",".join(HALVES) if name == "toggle" else None)
        problems += ck.check_member(m, logs_of[name], ref, traffic, st.members.get(name))[0]
        if m.either is None:
            matched[name] = sum(1 for x in ref if traffic.addressed(m, x))
    stuck = st.members["stuck"]
    if (stuck["queued"], stuck["delivered"], stuck["dropped"], stuck["full"]) != (1, 1, 0, 1):
        problems.append(f"stuck: queued={stuck['queued']} delivered={stuck['delivered']} dropped={stuck['dropped']}, "
                        "expected its one message and nothing since")
    problems += ck.check_pairwise_order(seqs)

    sizes = [accepted[m] for m in ref]
    figures = dict(
        seed=seed, writers=len(writers), attempts=sum(len(wl.attempts) for wl in wlogs.values()),
        accepted=len(accepted), matched=matched, received={n: len(s) for n, s in seqs.items()},
        dropped=st.members["dropper"]["dropped"], toggle_flips=flips["n"],
        topicless=sum(1 for m in ref if topicfilter.topic_tokens(topics[m]) is None),
        two_byte_topics=sum(1 for s in sizes if s >= 256), deliveries_checked=sum(len(s) for s in seqs.values()),
        writers_s=round(t_writers, 2),
    )
    stress.conclude(mnt, record, figures, problems, seed)
