"""The two sizes of the reliability run, chosen by $RELIABILITY_SCALE.

short (default): CI. Every reliability test together takes well under three
minutes on a 2-core machine shared with other work.
long: the documented long run (minutes): tens of thousands of messages,
hundreds of faults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    name: str
    # stress (part 1)
    send_writers: int            # writers on G/send (not members)
    member_writers: int          # writers on their own member file
    attempts_per_writer: int     # write attempts per writer
    stress_time_limit_s: float   # writers stop by themselves after this
    churn_max_live: int          # transient members alive at once
    framed_records_per_writer: int   # records per framed batch writer (one on frames/send as uid 65534,
                                     # one a member on frames/fm0)
    line_messages_per_writer: int    # line messages per line writer (three, in a message=line group)
    # everything in one run (part 1c, test_mixed_stress.py)
    mixed_attempts_per_writer: int   # per record writer (mcw: on send, as members, private)
    mixed_records_per_writer: int    # per framed batch writer (mcfw)
    mixed_lines_per_writer: int      # per line writer (mclw, in the line group)
    mixed_time_limit_s: float        # writers stop by themselves after this
    # signal faults (part 2a)
    fault_readers: int           # killable readers (one member each)
    fault_writers: int           # killable writers alive at once
    faults: int                  # signals to inject (readers and writers)
    fault_time_limit_s: float    # stop injecting after this, whatever the count
    v2_faults: int               # signals per v2 scenario (batches and frames; lines; each with peers)
    v2_fault_time_limit_s: float # ... and its time limit
    # daemon killed (part 2b)
    daemon_kill_rounds: int
    daemon_kill_blocked: int     # blocked clients per round, of every kind (test_daemon_faults.MIX)
    # unmount with blocked clients (part 2c)
    unmount_rounds: int
    unmount_blocked: int         # blocked clients per round


SHORT = Scale(
    name="short",
    send_writers=2,
    member_writers=2,
    attempts_per_writer=3000,
    stress_time_limit_s=25,
    churn_max_live=2,
    framed_records_per_writer=8000,
    line_messages_per_writer=3000,
    mixed_attempts_per_writer=1500,
    mixed_records_per_writer=3000,
    mixed_lines_per_writer=1500,
    mixed_time_limit_s=18,
    fault_readers=3,
    fault_writers=3,
    faults=300,
    fault_time_limit_s=25,
    v2_faults=250,
    v2_fault_time_limit_s=10,
    daemon_kill_rounds=3,
    daemon_kill_blocked=100,
    unmount_rounds=1,
    unmount_blocked=1000,
)

LONG = Scale(
    name="long",
    send_writers=3,
    member_writers=3,
    attempts_per_writer=20000,
    stress_time_limit_s=240,
    churn_max_live=3,
    framed_records_per_writer=60000,
    line_messages_per_writer=20000,
    mixed_attempts_per_writer=12000,
    mixed_records_per_writer=25000,
    mixed_lines_per_writer=12000,
    mixed_time_limit_s=180,
    fault_readers=4,
    fault_writers=6,
    faults=2000,
    fault_time_limit_s=240,
    v2_faults=1500,
    v2_fault_time_limit_s=150,
    daemon_kill_rounds=6,
    daemon_kill_blocked=200,
    unmount_rounds=3,
    unmount_blocked=1000,
)


def current_scale() -> Scale:
    name = os.environ.get("RELIABILITY_SCALE", "short").strip().lower() or "short"
    if name == "short":
        return SHORT
    if name == "long":
        return LONG
    raise ValueError(f"RELIABILITY_SCALE must be short or long, not {name!r}")
