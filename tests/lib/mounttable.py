"""The mount table, as the kernel has it now (/proc/self/mountinfo), and the
lazy unmount that takes a mount off it.

The one reader of it for the tests and the benchmarks. Mount points are
unescaped: the kernel writes a space, tab, newline or backslash in a path as
\\040, \\011, \\012, \\134, so a plain split of the line would miss (or
mistake) a mount point that has one. Standard library only: the benchmark
driver imports this without pytest.
"""

from __future__ import annotations

import os
import re
import subprocess

MOUNTINFO = "/proc/self/mountinfo"


def unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts() -> list[tuple[str, str]]:
    """(mount point, fstype) of every mount, oldest first."""
    found = []
    with open(MOUNTINFO) as f:
        for line in f:
            # "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER"
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) >= 5 and right:
                found.append((unescape(fields[4]), right.split()[0]))
    return found


def mounts_at(path: str) -> list[str]:
    """fstypes of the mounts whose mount point is path (newest last)."""
    path = os.path.realpath(path)
    return [fstype for point, fstype in mounts() if point == path]


def is_fuse_mount(path: str) -> bool:
    return any(t.startswith("fuse") for t in mounts_at(path))


def mounts_under(directory: str) -> list[str]:
    """Mount points at or below directory, each once."""
    directory = os.path.realpath(directory)
    points = {point for point, _ in mounts()}
    return sorted(p for p in points if p == directory or p.startswith(directory.rstrip("/") + "/"))


def unmount_lazily(path: str):
    """The safety net for a mount that outlived its daemon, or whose daemon
    hangs: fusermount3 -u -z, then umount -l, while anything is mounted at
    path. Lazy, so that it cannot block on the filesystem."""
    for cmd in (["fusermount3", "-u", "-z", path], ["umount", "-l", path]):
        if not mounts_at(path):
            return
        try:
            subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
