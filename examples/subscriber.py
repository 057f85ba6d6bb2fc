#!/usr/bin/env python3
"""subscriber.py - read several members, of one group or several, at once.

What it shows: member files work with poll/epoll (here through selectors).
Opened with O_NONBLOCK, each read(2) returns one whole message, EAGAIN when
the queue is empty, and 0 (end of file) once the member has been removed with
`rm`; the subscriber then drops that member and ends when none is left.

    usage: subscriber.py [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...

    MOUNT defaults to $MCASTFS or /mnt/mcastfs. --create makes missing groups
    and members (and removes the members it made when it ends).

    $ ./subscriber.py --create chat/carol logs/all
    [subscribed to chat/carol logs/all]
    chat/carol: alice: hi everyone
    logs/all: ERROR disk full
    logs/all: (left)                  <- after `rm /mnt/mcastfs/logs/all`
    chat/carol: bob: bye
    ^C
"""

import argparse
import errno
import os
import selectors
import sys
import time

READ_SIZE = 1 << 20  # more than the largest message (1,044,480 bytes): one read, one message


def open_member(root: str, spec: str, create: bool) -> tuple[int, bool]:
    """Open ROOT/GROUP/MEMBER non-blocking; make it first with --create. (fd, made)."""
    group, _, member = spec.partition("/")
    if not group or not member or "/" in member:
        sys.exit(f"subscriber.py: {spec!r} is not GROUP/MEMBER")
    path = os.path.join(root, group, member)
    made = False
    if create:
        try:
            os.mkdir(os.path.join(root, group))
        except FileExistsError:
            pass
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o644))
            made = True
        except FileExistsError:
            pass
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK), made


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
        fd, created = open_member(args.mount, spec, args.create)
        sel.register(fd, selectors.EVENT_READ, spec)
        if created:
            made.append(os.path.join(args.mount, spec))
    print(f"[subscribed to {' '.join(args.members)}]", file=sys.stderr, flush=True)

    received = 0
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
                # Read everything queued now; EAGAIN means the queue is empty.
                while True:
                    try:
                        data = os.read(key.fd, READ_SIZE)
                    except BlockingIOError:
                        break
                    except InterruptedError:
                        continue
                    if not data:  # end of file: the member was removed
                        print(f"{key.data}: (left)", flush=True)
                        sel.unregister(key.fd)
                        os.close(key.fd)
                        break
                    text = data.decode("utf-8", "replace").rstrip("\n")
                    print(f"{key.data}: {text}", flush=True)
                    received += 1
                    last = time.monotonic()
                    if args.count and received >= args.count:
                        return 0
    except KeyboardInterrupt:
        pass
    finally:
        for path in made:  # leave the groups we joined
            try:
                os.unlink(path)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
