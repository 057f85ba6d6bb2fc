"""The man pages, man/mcastfs.8 and man/mcastfs.5 (mdoc): no warning from
`mandoc -T lint` nor from groff through `man --warnings`, and no key or
option missing against what mcastfs does and docs/contract.md says. A key
added to ctl or status, or a -o option, needs its .It line in the page:
this test says which.
"""

import os
import re
from pathlib import Path

import pytest

from helpers import Group, run

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "man" / "mcastfs.8", REPO / "man" / "mcastfs.5"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_mandoc_lint(page):
    # -W warning: every message but style hints (which include "referenced
    # manual not found", true of any page whose machine lacks the others).
    res = run(["mandoc", "-T", "lint", "-W", "warning", str(page)])
    assert res.returncode == 0 and res.stdout == "" and res.stderr == "", res.stdout + res.stderr


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_man_warnings(page):
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    res = run(["man", "--warnings", "-E", "UTF-8", "-l", str(page)], env=env)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert "NAME" in res.stdout and "mcastfs" in res.stdout


def section(page: Path, start: str) -> str:
    """The text of `.Ss START` (or `.Sh START`) up to the next .Ss or .Sh."""
    text = page.read_text()
    m = re.search(rf"^\.S[sh] {re.escape(start)}\n(.*?)(?=^\.S[sh] )", text, re.S | re.M)
    assert m, f"no section {start!r} in {page.name}"
    return m.group(1)


def table_keys(text: str) -> set[str]:
    return set(re.findall(r"^\.It Cm ([a-z_]+) Ta ", text, re.M))


def contract_section(title: str) -> str:
    text = (REPO / "docs" / "contract.md").read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, f"no section {title!r} in docs/contract.md"
    return m.group(1)


def test_ctl_keys_match_the_contract():
    contract = set(re.findall(r"^\| `([a-z_]+)` \|", contract_section("`G/ctl`"), re.M))
    assert contract >= {"capacity", "queue_bytes", "max_message", "send", "message", "loopback", "drop_when_full"}
    page = table_keys(section(REPO / "man" / "mcastfs.5", "Commands"))
    assert page == contract, f"in the contract only: {contract - page}; in the page only: {page - contract}"


def test_status_keys_match_what_mcastfs_prints(mount):
    """Every key of a live status is in mcastfs.5: a setting (Commands) or
    one of the status tables."""
    g = Group(mount.path, "man-status")
    os.mkdir(g.path)
    g.member("alice")
    st = g.status()
    live = set(st.group_order) | set(st.member_order["alice"])
    page = REPO / "man" / "mcastfs.5"
    documented = table_keys(section(page, "Commands")) | table_keys(section(page, "Status"))
    assert live - documented == set(), f"status keys missing from mcastfs.5: {live - documented}"
    # And every key of the contract's example lines.
    lines = re.findall(r"^ +(?:group|member) \S+ (.*)$", contract_section("`G/status`"), re.M)
    assert len(lines) >= 2
    contract = {pair.split("=")[0] for line in lines for pair in line.split()}
    assert contract - documented == set(), f"status keys of docs/contract.md missing from mcastfs.5: {contract - documented}"


def test_mount_options_in_mcastfs_8():
    page = (REPO / "man" / "mcastfs.8").read_text()
    opts = set(re.findall(r"^\.It Cm ([a-z_]+)", page, re.M))
    mounting = contract_section("Mounting")
    for option in set(re.findall(r"`-o ([a-z_]+)", mounting)) | set(re.findall(r"([a-z_]+)=N", mounting)):
        assert option in opts, f"-o {option} (docs/contract.md, Mounting) is not in mcastfs.8"
    for generic in ("defaults", "auto", "noauto", "user", "users", "nouser", "_netdev", "nofail", "x-"):
        assert f".Cm {generic}" in page, generic
    for part in ("SIGNALS", "EXIT STATUS", "FILES", "EXAMPLES", "OPTIONS"):
        assert f".Sh {part}\n" in page
