"""What the install tests share: finding the daemons that mount(8) started
(they run in the background, so no test holds their pid), unmounting, and
reading the mount table through findmnt as a user would."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from helpers import run
from mounttable import mounts_at, unmount_lazily

# The generic options of mount(8), fstab and systemd (man 8 mcastfs), and
# the kernel flags fstab lines carry.
GENERIC = [
    "defaults",
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "nodiratime",
    "strictatime",
    "sync",
    "dirsync",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "_netdev",
    "nofail",
    "x-systemd.requires=network.target",
    "x-systemd.automount",
    "x-mount.mkdir",
    "x-anything=at all",
    "comment=bus",
]

# The first directory of the path that mount.fuse3's shell searches.
HELPER_DIR = "/usr/local/sbin"


def default_path_lookup(name: str) -> str:
    """Where the shell that mount.fuse3 starts (without PATH) finds name."""
    return run(["env", "-i", "/bin/sh", "-c", f"command -v {name}"]).stdout.strip()


def findmnt(path: str) -> dict | None:
    """findmnt's view of the mount at path: source, fstype, options (a set)."""
    res = run(["findmnt", "--json", "--mountpoint", path, "-o", "SOURCE,FSTYPE,OPTIONS"])
    if res.returncode != 0:
        return None
    fs = json.loads(res.stdout)["filesystems"][-1]
    return {"source": fs["source"], "fstype": fs["fstype"], "options": set(fs["options"].split(","))}


def daemons_at(path: str) -> list[int]:
    """pids of mcastfs processes whose command line names path."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"mcastfs" and path.encode() in argv[1:]:
            found.append(int(entry))
    return found


def wait_gone(pids, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def release(path: str):
    """Unmount whatever is at path and end its daemons; the safety net."""
    pids = daemons_at(path)
    if mounts_at(path):
        run(["umount", path])
    if mounts_at(path):
        unmount_lazily(path)
    if not wait_gone(pids, 5.0):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


