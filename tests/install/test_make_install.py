"""`make install` and `make uninstall` (README, "Install"): what lands where,
that the installed binary needs no Swift on the machine, and that uninstall
takes away exactly what install put.
"""

from pathlib import Path

import pytest

from helpers import run

REPO = Path(__file__).resolve().parents[2]
BUILD_TIME = 1800  # a first release build on 2 shared cores

EXPECTED = {
    "usr/local/bin/mcastfs": 0o755,
    "usr/local/share/man/man8/mcastfs.8": 0o644,
    "usr/local/share/man/man5/mcastfs.5": 0o644,
    "usr/local/lib/systemd/system/mcastfs@.service": 0o644,
    "usr/local/share/doc/mcastfs/examples/mnt-mcastfs.mount": 0o644,
}


def make(*args, timeout=BUILD_TIME):
    res = run(["make", "--no-print-directory", "-C", str(REPO), *args], timeout=timeout)
    assert res.returncode == 0, f"make {' '.join(args)}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def files_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o7777 for p in sorted(root.rglob("*")) if not p.is_dir()}


@pytest.fixture(scope="module")
def destdir(release_build, tmp_path_factory):
    root = tmp_path_factory.mktemp("destdir")
    make("install", f"DESTDIR={root}")
    return root


@pytest.mark.timeout(BUILD_TIME)
def test_install_puts_these_files(destdir):
    assert files_under(destdir) == EXPECTED
    for page in ("man8/mcastfs.8", "man5/mcastfs.5"):
        assert (destdir / "usr/local/share/man" / page).read_bytes() == (REPO / "man" / Path(page).name).read_bytes()
    unit = (destdir / "usr/local/lib/systemd/system/mcastfs@.service").read_text()
    assert "ExecStart=/usr/local/bin/mcastfs mcastfs %f -f $OPTIONS" in unit
    assert "@BINDIR@" not in unit


def dynamic_libraries(binary) -> str:
    return run(["ldd", str(binary)]).stdout


@pytest.mark.timeout(BUILD_TIME)
def test_installed_binary_has_no_swift_libraries(destdir, mcastfs_bin):
    binary = destdir / "usr/local/bin/mcastfs"
    libs = dynamic_libraries(binary)
    assert "libfuse3.so.3" in libs
    assert "swift" not in libs.lower() and "libFoundation" not in libs and "libdispatch" not in libs, libs
    assert "RUNPATH" not in run(["readelf", "-d", str(binary)]).stdout
    # The debug build links Swift's shared runtime: what the static one avoids.
    assert "libswiftCore.so" in dynamic_libraries(mcastfs_bin)


HIDDEN_SWIFT = """
set -e
# Swift's runtime lives only under /opt/swift here: hide it.
mount -t tmpfs none /opt/swift
test -z "$(ls /opt/swift)"
"$BIN" --version
mkdir -p "$MP"
"$BIN" mcastfs "$MP" -o capacity=3
mkdir "$MP/g" && touch "$MP/g/a"
echo hello > "$MP/g/send"
head -c 6 "$MP/g/a"
grep -o 'capacity=3' "$MP/g/status" | head -n 1
umount "$MP"
"""


@pytest.mark.timeout(BUILD_TIME)
def test_installed_binary_runs_without_swift(destdir, mcastfs_bin, tmp_path):
    if not Path("/opt/swift").is_dir():
        pytest.fail("this test hides /opt/swift, where Swift is on this machine; it is not there", pytrace=False)

    def hidden(binary):
        env = {"BIN": str(binary), "MP": str(tmp_path / "mnt"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        return run(["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDDEN_SWIFT], env=env, timeout=60)

    res = hidden(destdir / "usr/local/bin/mcastfs")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[1:3] == ["hello", "capacity=3"], res.stdout
    # The same script with the debug build fails at once: Swift is hidden.
    res = hidden(mcastfs_bin)
    assert res.returncode != 0 and "error while loading shared libraries: libswift" in res.stderr, res.stderr


@pytest.mark.timeout(BUILD_TIME)
def test_uninstall_removes_exactly_what_install_put(release_build, tmp_path):
    root = tmp_path / "root"
    # Someone else's files in the same directories stay.
    others = ["usr/local/bin/other", "usr/local/share/man/man8/other.8", "usr/local/lib/systemd/system/other.service"]
    for name in others:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("not mcastfs's\n")
    make("install", f"DESTDIR={root}")
    assert set(files_under(root)) == set(EXPECTED) | set(others)
    make("uninstall", f"DESTDIR={root}")
    assert set(files_under(root)) == set(others)
    assert not (root / "usr/local/share/doc/mcastfs").exists(), "mcastfs's own doc directory goes too"
    make("uninstall", f"DESTDIR={root}")  # again: nothing to do, no error


@pytest.mark.timeout(BUILD_TIME)
def test_prefix_and_unit_directory(release_build, tmp_path):
    root = tmp_path / "root"
    make("install", f"DESTDIR={root}", "PREFIX=/usr", "SYSTEMDUNITDIR=/lib/systemd/system")
    assert set(files_under(root)) == {
        "usr/bin/mcastfs",
        "usr/share/man/man8/mcastfs.8",
        "usr/share/man/man5/mcastfs.5",
        "lib/systemd/system/mcastfs@.service",
        "usr/share/doc/mcastfs/examples/mnt-mcastfs.mount",
    }
    assert "ExecStart=/usr/bin/mcastfs " in (root / "lib/systemd/system/mcastfs@.service").read_text()
    make("uninstall", f"DESTDIR={root}", "PREFIX=/usr", "SYSTEMDUNITDIR=/lib/systemd/system")
    assert files_under(root) == {}
