#!/usr/bin/env python3
"""publisher.py - publish COUNT messages to a group at a steady rate.

What it shows: each write(2) is one message. The file is opened with
O_NONBLOCK, so a write that would wait (a member without drop_when_full has a
full queue) fails with EAGAIN instead; the publisher then waits in poll() for
POLLOUT, which mcastfs reports once every such member has room, and writes
again. Nothing is lost and nobody gets a message twice: a write that failed
delivered nothing.

    usage: publisher.py [-m MOUNT] [-n COUNT] [-r RATE] [--as MEMBER] GROUP [TEXT]

    MOUNT defaults to $MCASTFS or /mnt/mcastfs. Messages are "TEXT 0",
    "TEXT 1", ... (TEXT defaults to "message"). RATE is messages per second
    (0: as fast as the group takes them). --as MEMBER writes on that member's
    file instead of send, so the message comes from that member.

    $ ./publisher.py -n 3 -r 10 chat hello
    published 3 messages to chat/send in 0.20 s (0 waits for room)

    $ echo "member slow capacity=1" > /mnt/mcastfs/chat/ctl    # and a slow reader
    $ ./publisher.py -n 100 chat
    published 100 messages to chat/send in 2.31 s (99 waits for room)
"""

import argparse
import os
import select
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-m", "--mount", default=os.environ.get("MCASTFS", "/mnt/mcastfs"))
    parser.add_argument("-n", "--count", type=int, default=10)
    parser.add_argument("-r", "--rate", type=float, default=0.0, help="messages per second (0: no limit)")
    parser.add_argument("--as", dest="member", help="send as this member instead of through send")
    parser.add_argument("group")
    parser.add_argument("text", nargs="?", default="message")
    args = parser.parse_args()

    name = args.member or "send"
    path = os.path.join(args.mount, args.group, name)
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)

    waits = 0
    start = time.monotonic()
    try:
        for i in range(args.count):
            if args.rate > 0:  # keep to the schedule, not to the previous write
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            message = f"{args.text} {i}".encode()
            while True:
                try:
                    os.write(fd, message)
                    break
                except BlockingIOError:
                    # A member that does not drop is full. Wait until a write
                    # would not block; then try again (another writer may have
                    # taken the room first).
                    waits += 1
                    poller.poll()
                except InterruptedError:
                    pass  # a signal: nothing was delivered, so retrying is safe
    finally:
        os.close(fd)
    elapsed = time.monotonic() - start
    print(f"published {args.count} messages to {args.group}/{name} in {elapsed:.2f} s ({waits} waits for room)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
