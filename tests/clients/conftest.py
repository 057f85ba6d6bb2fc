"""Fixtures of the client helpers' tests (clients/python, clients/c).

These tests need no mount: they check the helpers against the contract's
framed-view format with bytes built by hand (framebuilder.py).

- `mcastfs` is importable: clients/python goes first on sys.path, as it does
  for any client run from the project.
- `framestool` (session): tests/clients/c/framestool.c compiled with
  `cc -Wall -Wextra -Werror -std=c99 -pedantic` against clients/c/mcastfs.h,
  into a temporary directory. A compile failure fails the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

for path in (str(HERE.parents[1] / "clients" / "python"), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from cbuild import compile_c  # noqa: E402


@pytest.fixture(scope="session")
def framestool(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("clients-c") / "framestool"
    compile_c(HERE / "c" / "framestool.c", out, "-O1")
    return str(out)
