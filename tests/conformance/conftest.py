"""Fixtures of the conformance tests.

The mounted tests' fixtures and hooks (`mount`, `mount_factory`,
`module_mount_factory`, `group`, `as_nobody`, `cbin`, time limits, the
watchdog, the daemon's stderr on failure) come from the plugin the suites
share, tests/lib/mcastfs_pytest.py.

Added here:
- `conf_bin` (session): the C helpers of tests/conformance/c/, compiled once
  into tests/conformance/bin/ (git-ignored); conf_bin["permbatch"] is a path.
- `RESULTS`: <repo>/results (git-ignored), where tables are written.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = REPO / "results"

_LIB = str(REPO / "tests" / "lib")
if _LIB not in sys.path:
    sys.path.insert(0, _LIB)

import mcastfs_pytest  # noqa: E402

conf_bin = mcastfs_pytest.c_helpers("conf_bin", HERE / "c")


def pytest_configure(config):
    mcastfs_pytest.register(config)
