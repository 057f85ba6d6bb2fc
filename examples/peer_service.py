#!/usr/bin/env python3
"""peer_service.py - a request/response service on a connected group.

What it shows: the group's owner is the listener of a connected group.
Every member NAME has a peer file, G/peers/NAME, that only the owner may
open (mode 0600): with send_to_peer=1 it receives what NAME sends, and a
write on it answers NAME alone, privately. The service sets send_to_peer=1
for the members that join, reads every G/peers/* with epoll (select.epoll),
and answers each request (here it upper-cases it). It finds new members with
inotify on G/ itself: members join and leave there, through the kernel,
while G/peers/ changes as a consequence the kernel never sees, so an
inotify watch on G/peers/ gets no events. End of file on a peer file means
its member left. An answer to a client whose queue is full waits in an
outbox until EPOLLOUT; the service never blocks.

A client joins (creates G/NAME), writes its request on its member file and
reads the answer from G/frames/NAME: it hears the other clients' requests
too (a connected group is still a group: every member receives what any
member sends), and the answer is the frame marked private (flags bit 0).

    usage: peer_service.py [-m MOUNT] serve GROUP [-n COUNT] [-t SECONDS]
           peer_service.py [-m MOUNT] ask GROUP NAME REQUEST...

    MOUNT defaults to $MCASTFS or /mnt/mcastfs. serve makes GROUP if it is
    missing and runs until Ctrl-C (or COUNT answers, or SECONDS without a
    request); ask joins as NAME, asks, prints each answer, and leaves.

    terminal 1 (the group's owner)        terminal 2
    $ ./peer_service.py serve shout
    [serving shout: peers/ with epoll, joins seen with inotify on shout/]
                                          $ ./peer_service.py ask shout alice hello 'how are you'
                                          HELLO
                                          HOW ARE YOU
    alice: hello -> HELLO
    alice: how are you -> HOW ARE YOU
    alice left
    ^C
    [2 requests answered]
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import select
import sys
from collections import deque
from pathlib import Path

# The helper module lives in the project's clients/python; PYTHONPATH works too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))
import mcastfs  # noqa: E402

BIG = 1 << 20  # a read buffer that holds any message whole


def ctl(group: str, command: str) -> None:
    fd = os.open(os.path.join(group, "ctl"), os.O_WRONLY)
    try:
        os.write(fd, command.encode())
    finally:
        os.close(fd)


def text(data: bytes) -> str:
    return str(data, "utf-8", "replace").rstrip("\n")


class Joins:
    """inotify on the group directory: an event when a member joins or leaves."""

    IN_CREATE, IN_DELETE = 0x100, 0x200

    def __init__(self, path: str):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_CREATE | self.IN_DELETE) < 0:
            code = ctypes.get_errno()
            if self.fd >= 0:
                os.close(self.fd)
            raise OSError(code, f"inotify on {path}: {os.strerror(code)}")

    def drain(self) -> None:
        """The events say only that something changed: the caller looks again."""
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass


class Peer:
    def __init__(self, name: str, fd: int):
        self.name, self.fd = name, fd
        self.outbox: deque[bytes] = deque()  # answers that wait for room in the client's queue


class Service:
    def __init__(self, group: str):
        self.group = group
        self.peers_dir = os.path.join(group, "peers")
        self.epoll = select.epoll()
        self.peers: dict[int, Peer] = {}
        self.names: set[str] = set()
        self.answered = 0
        try:
            self.joins: Joins | None = Joins(group)
            self.epoll.register(self.joins.fd, select.EPOLLIN)
        except OSError as e:
            # No inotify (too many watches, say): look again every second.
            print(f"[{e}; looking for new members every second]", file=sys.stderr)
            self.joins = None

    def scan(self) -> None:
        """Opens the peer file of every member we do not serve yet."""
        for name in os.listdir(self.peers_dir):
            if name in self.names:
                continue
            try:
                # A member that joined before the service set the default.
                ctl(self.group, f"member {name} send_to_peer=1")
                fd = os.open(os.path.join(self.peers_dir, name), os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.EINVAL):
                    continue  # it left already
                raise
            self.peers[fd] = Peer(name, fd)
            self.names.add(name)
            self.epoll.register(fd, select.EPOLLIN)

    def close(self, peer: Peer) -> None:
        self.epoll.unregister(peer.fd)
        os.close(peer.fd)
        del self.peers[peer.fd]
        self.names.discard(peer.name)

    def answer(self, peer: Peer, data: bytes) -> None:
        peer.outbox.append(data)
        self.flush(peer)

    def flush(self, peer: Peer) -> None:
        while peer.outbox:
            try:
                os.write(peer.fd, peer.outbox[0])  # to peer.name alone
            except BlockingIOError:
                # Its queue is full: wait for room instead of blocking everyone.
                self.epoll.modify(peer.fd, select.EPOLLIN | select.EPOLLOUT)
                return
            except BrokenPipeError:
                peer.outbox.clear()  # it left; end of file follows
                break
            peer.outbox.popleft()
        self.epoll.modify(peer.fd, select.EPOLLIN)

    def requests(self, peer: Peer) -> bool:
        """Answers what the member sent; False once it has left."""
        while True:
            try:
                request = os.read(peer.fd, BIG)
            except BlockingIOError:
                return True
            if not request:
                print(f"{peer.name} left", flush=True)
                self.close(peer)
                return False
            reply = request.upper()
            print(f"{peer.name}: {text(request)} -> {text(reply)}", flush=True)
            self.answered += 1
            self.answer(peer, reply)

    def run(self, count: int, idle: float) -> None:
        self.scan()
        while not count or self.answered < count:
            events = self.epoll.poll(idle or (1.0 if self.joins is None else -1))
            if not events:
                if idle:
                    return
                self.scan()
                continue
            for fd, mask in events:
                if self.joins is not None and fd == self.joins.fd:
                    self.joins.drain()
                    self.scan()
                    continue
                peer = self.peers.get(fd)
                if peer is None:
                    continue  # closed by an earlier event of this round
                if mask & select.EPOLLOUT:
                    self.flush(peer)
                if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    self.requests(peer)


def serve(args) -> int:
    group = os.path.join(args.mount, args.group)
    try:
        os.mkdir(group, 0o755)
    except FileExistsError:
        pass
    ctl(group, "set send_to_peer=1")  # every member that joins from now on talks to us too
    service = Service(group)
    how = "joins seen with inotify on" if service.joins else "a re-scan every second of"
    print(f"[serving {args.group}: peers/ with epoll, {how} {args.group}/]", file=sys.stderr, flush=True)
    try:
        service.run(args.count, args.timeout)
    except KeyboardInterrupt:
        pass
    finally:
        print(f"[{service.answered} request{'' if service.answered == 1 else 's'} answered]", file=sys.stderr,
              flush=True)
    return 0


def ask(args) -> int:
    group = os.path.join(args.mount, args.group)
    member = os.path.join(group, args.name)
    # Joining gives us the group's send_to_peer=1, which the service set.
    os.close(os.open(member, os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o600))
    heard = 0
    try:
        with mcastfs.FramedFile(os.path.join(group, "frames", args.name)) as inbox:
            poller = select.poll()
            poller.register(inbox.fileno(), select.POLLIN)
            out = os.open(member, os.O_WRONLY)
            try:
                for request in args.requests:
                    os.write(out, request.encode())  # one message, to the group and to our peer
                    answer = None
                    while answer is None:
                        if not poller.poll(args.wait * 1000):
                            print(f"ask: no answer in {args.wait} s; is `peer_service.py serve {args.group}` "
                                  "running?", file=sys.stderr)
                            return 1
                        for frame in inbox.read():
                            if frame.private:
                                answer = frame.payload
                            else:
                                heard += 1  # another member's request: every member hears the group
                    print(text(answer), flush=True)
            finally:
                os.close(out)
    finally:
        os.unlink(member)
    if heard:
        print(f"[heard {heard} message{'' if heard == 1 else 's'} of other members]", file=sys.stderr)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-m", "--mount", default=os.environ.get("MCASTFS", "/mnt/mcastfs"))
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve", help="answer every member of GROUP through G/peers/")
    p.add_argument("group")
    p.add_argument("-n", "--count", type=int, default=0, help="stop after COUNT answers")
    p.add_argument("-t", "--timeout", type=float, default=0, help="stop after SECONDS without a request")
    p = commands.add_parser("ask", help="join GROUP as NAME, send each REQUEST, print each answer")
    p.add_argument("group")
    p.add_argument("name")
    p.add_argument("requests", nargs="+", metavar="REQUEST")
    p.add_argument("-w", "--wait", type=float, default=10, help="seconds to wait for an answer")
    args = parser.parse_args()
    return serve(args) if args.command == "serve" else ask(args)


if __name__ == "__main__":
    sys.exit(main())
