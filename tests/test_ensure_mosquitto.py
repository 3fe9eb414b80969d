"""``make test`` gets Mosquitto first: installed by root with apt-get, else one line, exit 1.

``scripts/ensure-mosquitto.sh`` runs here with a PATH of fakes only (``id``, ``apt-get``,
``mosquitto`` as tiny shell scripts) and ``MOSQUITTO_PATHS`` pointed away from the real
broker, so each case is what a machine of that kind would see.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "ensure-mosquitto.sh"
NEEDS = (
    "make test needs Mosquitto: run `sudo apt-get install -y mosquitto`"
    " (or your system's equivalent)\n"
)


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


def _run(bin_dir: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command or ("/bin/sh", str(SCRIPT)),
        env={"PATH": str(bin_dir), "MOSQUITTO_PATHS": str(bin_dir.parent / "sbin" / "mosquitto")},
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )


def _user(bin_dir: Path, uid: int) -> None:
    _fake(bin_dir, "id", f"echo {uid}")


def _apt(bin_dir: Path, *, works: bool = True) -> Path:
    """An apt-get that logs its calls and, on install, puts a mosquitto on PATH."""
    log = bin_dir.parent / "apt.log"
    # Only fakes are on PATH: the fake install writes with the shell and chmods by path.
    target = bin_dir / "mosquitto"
    install = f"echo exit 0 > {target}; /bin/chmod +x {target}" if works else "exit 100"
    _fake(
        bin_dir,
        "apt-get",
        f'echo "$*" >> {log}\n[ "$1" = update ] && exit 0\n{install}',
    )
    return log


def test_present_on_path_is_silent(bin_dir: Path) -> None:
    _fake(bin_dir, "mosquitto", "exit 0")
    _user(bin_dir, 1000)
    done = _run(bin_dir)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_present_in_sbin_outside_path_is_found(bin_dir: Path) -> None:
    sbin = bin_dir.parent / "sbin"
    sbin.mkdir()
    _fake(sbin, "mosquitto", "exit 0")
    _user(bin_dir, 1000)
    assert _run(bin_dir).returncode == 0


def test_absent_for_a_user_is_one_line_and_no_install(bin_dir: Path) -> None:
    _user(bin_dir, 1000)
    log = _apt(bin_dir)
    done = _run(bin_dir)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", NEEDS)
    assert not log.exists()


def test_absent_for_root_without_apt_is_one_line(bin_dir: Path) -> None:
    _user(bin_dir, 0)
    done = _run(bin_dir)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", NEEDS)


def test_absent_for_root_with_apt_is_installed(bin_dir: Path) -> None:
    _user(bin_dir, 0)
    log = _apt(bin_dir)
    done = _run(bin_dir)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "make test: Mosquitto is missing; installing it with apt-get\n"
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq mosquitto"]
    assert (bin_dir / "mosquitto").exists()


def test_a_failed_install_ends_with_the_line(bin_dir: Path) -> None:
    _user(bin_dir, 0)
    _apt(bin_dir, works=False)
    done = _run(bin_dir)
    assert done.returncode == 1
    assert done.stderr.endswith(NEEDS)


def test_make_test_stops_before_anything_else(bin_dir: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    _user(bin_dir, 1000)
    done = _run(bin_dir, make, "--no-print-directory", "test")
    assert done.returncode != 0
    assert done.stdout == ""
    # Our line, then make's own note of the failed target; no ruff, mypy, pip or pytest.
    first, *rest = done.stderr.splitlines()
    assert first + "\n" == NEEDS
    assert len(rest) == 1
    assert "need-mosquitto" in rest[0]
