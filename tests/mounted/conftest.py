"""The mounted tests' fixtures and hooks are those of the plugin shared with
tests/reliability and tests/conformance: tests/lib/mcastfs_pytest.py, whose
docstring is the fixture contract (`mount`, `group`, `cbin`, time limits,
the watchdog, ...).
"""

import sys
from pathlib import Path

_LIB = str(Path(__file__).resolve().parents[1] / "lib")
if _LIB not in sys.path:
    sys.path.insert(0, _LIB)

import mcastfs_pytest  # noqa: E402


def pytest_configure(config):
    mcastfs_pytest.register(config)
