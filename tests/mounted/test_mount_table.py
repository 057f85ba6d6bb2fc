"""The mount-table reader the tests and the benchmarks share
(tests/lib/mounttable.py), on a mount point whose name the kernel escapes in
/proc/self/mountinfo: a space, a tab and a backslash (\\040, \\011, \\134).
A reader that splits the line without unescaping finds no mount there.
"""

import os
import tempfile

from helpers import Mount
from mounttable import is_fuse_mount, mounts_at, mounts_under

ODD = "odd name\twith\\escapes"


def test_a_mount_point_the_kernel_escapes_is_found_and_then_gone(mcastfs_bin, workdir_base):
    parent = tempfile.mkdtemp(prefix="mounttable-", dir=workdir_base)
    m = Mount(mcastfs_bin, parent, name=ODD)
    try:
        m.start()
        with open("/proc/self/mountinfo") as f:
            raw = f.read()
        assert "odd\\040name\\011with\\134escapes" in raw, "the kernel escapes these characters"
        assert is_fuse_mount(m.path)
        assert len(mounts_at(m.path)) == 1
        assert mounts_under(parent) == [os.path.realpath(m.path)]
        assert mounts_at(os.path.join(parent, "odd")) == []
        assert m.stop() == 0
        assert mounts_under(parent) == []
        assert not is_fuse_mount(m.path)
    finally:
        m.kill()  # the session's workdir_base removes the directories
