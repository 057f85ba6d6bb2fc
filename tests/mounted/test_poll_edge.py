"""Edge-triggered epoll (contract: "Poll, edge-triggered").

EPOLLET reports a new event for every message that arrives at a member and
every time a blocked-full condition clears, as a pipe does; an event loop
that drains on each event must never wait for ever. Two real clients check
it, several rounds each, read side and write side:

- c/epollet.c: epoll with EPOLLIN|EPOLLET on a member, EPOLLOUT|EPOLLET on
  `send` with a full member drained by another process, and a write parked
  behind it;
- go/edge.go: os.File.Read and os.File.Write, which the Go runtime waits in
  its edge-triggered poller (it registers every file it opens).

Each wait is bounded inside the helper, which prints one line per round and
"MISS ..." for a wake-up that did not come; `-s` shows the timings.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import run

HERE = Path(__file__).resolve().parent
GO_DIR = HERE / "go"
BIN_DIR = HERE / "bin"


@pytest.fixture(scope="module")
def go_edge() -> str:
    """go/edge.go built with the go on PATH; the tests fail, never skip, without it."""
    go = shutil.which("go")
    if go is None:
        pytest.fail(
            "go is not installed (apt-get install golang-go, or scripts/install-deps --tests): "
            "the Go reader and writer tests never skip",
            pytrace=False,
        )
    BIN_DIR.mkdir(mode=0o755, exist_ok=True)
    exe = BIN_DIR / "edge-go"
    # A throw-away cache and GOPATH: the build writes nothing outside it and bin/.
    with tempfile.TemporaryDirectory(prefix="mcastfs-go-") as tmp:
        env = {**os.environ, "GOCACHE": f"{tmp}/cache", "GOPATH": f"{tmp}/path", "GOENV": "off", "GOFLAGS": ""}
        res = run([go, "build", "-o", str(exe), "edge.go"], cwd=GO_DIR, env=env, timeout=180)
    if res.returncode != 0:
        pytest.fail(f"go build go/edge.go failed:\n{res.stdout}{res.stderr}", pytrace=False)
    return str(exe)


def run_client(cmd: list[str], what: str):
    """Runs one client to the end; fails with its misses when it saw any."""
    try:
        res = run(cmd, timeout=45)
    except subprocess.TimeoutExpired as e:  # its own bounds did not hold
        pytest.fail(f"{what}: {cmd} did not finish: {e}", pytrace=False)
    print(res.stdout, end="")
    if res.returncode != 0:
        misses = [line for line in res.stdout.splitlines() if not line.startswith("ok ")]
        pytest.fail(
            f"{what} (exit {res.returncode}):\n" + "\n".join(misses) + (f"\nstderr: {res.stderr}" if res.stderr else ""),
            pytrace=False,
        )
    assert res.stdout.splitlines()[-1].startswith("summary"), res.stdout


def test_c_epollet_reader_gets_an_event_for_every_message(group, cbin):
    run_client([cbin["epollet"], "read", group.path], "EPOLLIN|EPOLLET on a member missed wake-ups")


def test_c_epollet_writer_gets_an_event_every_time_room_appears(group, cbin):
    run_client([cbin["epollet"], "write", group.path], "EPOLLOUT|EPOLLET on send missed wake-ups")


def test_go_reader_reads_every_message(group, go_edge):
    run_client([go_edge, "read", group.path], "a Go os.File.Read on a member waited for ever")


def test_go_writer_returns_once_the_queue_drains(group, go_edge):
    run_client([go_edge, "write", group.path], "a Go os.File.Write on send waited for ever")
