#!/usr/bin/env python3
"""framed_subscriber.py - read members through the framed view, with metadata.

What it shows: G/frames/NAME is the member NAME seen as frames. One read(2)
returns every queued message that fits the buffer, each with what the group
recorded when it accepted it: its sequence number, the time, the sending
member (none for G/send), and the writer's uid, gid and pid as the kernel
gave them (they cannot be forged). clients/python/mcastfs.py parses the
frames; FramedFile opens them non-blocking for selectors (epoll). The
subscriber ends when every member has been removed, and says how many reads
its messages took.

    usage: framed_subscriber.py [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...

    MOUNT defaults to $MCASTFS or /mnt/mcastfs. --create makes missing groups
    and members (and removes the members it made when it ends).

    $ ./framed_subscriber.py --create chat/carol
    [subscribed to chat/carol]
    chat/carol #1 10:35:32.120417 from alice uid=1000 gid=1000 pid=4242: hi everyone
    chat/carol #2 10:35:32.120417 from - uid=0 gid=0 pid=4250: (one write on chat/send)
    chat/carol #3 10:35:40.981003 from bob uid=1001 gid=1001 pid=4301: bye
    chat/carol (left)                 <- after `rm /mnt/mcastfs/chat/carol`
    [3 messages in 2 reads]

A message that arrives after others were dropped (drop_when_full) shows
"dropped=N" before its text. The payload is printed as text, its last
newline removed and any other shown as \\n.
"""

import argparse
import errno
import os
import selectors
import sys
import time
from pathlib import Path

# The helper module lives in the project's clients/python; PYTHONPATH works too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))
import mcastfs  # noqa: E402


def member_path(root: str, spec: str, create: bool) -> tuple[str, bool]:
    """ROOT/GROUP/frames/MEMBER for GROUP/MEMBER; makes it first with --create.
    (path, made)."""
    group, _, member = spec.partition("/")
    if not group or not member or "/" in member:
        sys.exit(f"framed_subscriber.py: {spec!r} is not GROUP/MEMBER")
    made = False
    if create:
        try:
            os.mkdir(os.path.join(root, group))
        except FileExistsError:
            pass
        try:
            # Members join in G/; frames/ only shows them.
            os.close(os.open(os.path.join(root, group, member), os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o644))
            made = True
        except FileExistsError:
            pass
    return os.path.join(root, group, "frames", member), made


def describe(spec: str, frame: mcastfs.Frame) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(frame.time_ns // 1_000_000_000))
    micros = frame.time_ns // 1000 % 1_000_000
    text = str(frame.payload, "utf-8", "replace")
    text = (text[:-1] if text.endswith("\n") else text).replace("\n", "\\n")
    dropped = f" dropped={frame.dropped}" if frame.dropped else ""
    return (f"{spec} #{frame.sequence} {when}.{micros:06d} from {frame.sender or '-'} "
            f"uid={frame.uid} gid={frame.gid} pid={frame.pid}{dropped}: {text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-m", "--mount", default=os.environ.get("MCASTFS", "/mnt/mcastfs"))
    parser.add_argument("--create", action="store_true", help="make missing groups and members")
    parser.add_argument("-n", "--count", type=int, default=0, help="stop after COUNT messages")
    parser.add_argument("-t", "--timeout", type=float, default=0, help="stop after SECONDS without a message")
    parser.add_argument("members", nargs="+", metavar="GROUP/MEMBER")
    args = parser.parse_args()

    sel = selectors.DefaultSelector()  # epoll on Linux
    made = []
    for spec in args.members:
        path, created = member_path(args.mount, spec, args.create)
        sel.register(mcastfs.FramedFile(path), selectors.EVENT_READ, spec)
        if created:
            made.append(os.path.join(args.mount, spec))
    print(f"[subscribed to {' '.join(args.members)}]", file=sys.stderr, flush=True)

    received = reads = 0
    last = time.monotonic()
    try:
        while sel.get_map():
            timeout = None
            if args.timeout:
                timeout = max(0.0, last + args.timeout - time.monotonic())
            events = sel.select(timeout)
            if not events and args.timeout and time.monotonic() - last >= args.timeout:
                break
            for key, _ in events:
                member = key.fileobj
                # Read until the queue is empty ([] and not at_eof) or the
                # member has left ([] and at_eof).
                while frames := member.read():
                    reads += 1
                    for frame in frames:
                        print(describe(key.data, frame))
                        received += 1
                        if args.count and received >= args.count:
                            return 0
                    sys.stdout.flush()
                    last = time.monotonic()
                if member.at_eof:
                    print(f"{key.data} (left)", flush=True)
                    sel.unregister(member)
                    member.close()
    except KeyboardInterrupt:
        pass
    finally:
        sys.stdout.flush()
        print(f"[{received} message{'' if received == 1 else 's'} in {reads} read{'' if reads == 1 else 's'}]",
              file=sys.stderr, flush=True)
        for path in made:  # leave the groups we joined
            try:
                os.unlink(path)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
