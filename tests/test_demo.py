"""`make demo`, the README's first command, gives the same verdicts on any day.

The demo is run exactly as a user runs it (`make demo`, which calls the installed
`modelshield` command), once with the real clock and once with the process clock moved
ahead by libfaketime (an LD_PRELOAD library that every child process inherits), and the
two outputs must agree line for line. A fixture that depends on the wall clock (an
attestation judged against today, an artifact verdict judged stale) changes a verdict a
year on and fails this test.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from tests.support.paths import REPOSITORY


def _libfaketime() -> pathlib.Path:
    package = importlib.util.find_spec("libfaketime")
    if package is None or package.origin is None:
        raise RuntimeError("libfaketime is a dev dependency: run make setup")
    return pathlib.Path(package.origin).parent / "vendor/libfaketime/src/libfaketime.so.1"


LIBFAKETIME = _libfaketime()
#: How far each run moves the clock: a year, and ten years on (leap days, new decade).
OFFSETS = ("+365d", "+3653d")


def _moved_clock(offset: str) -> dict[str, str]:
    return {
        **os.environ,
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": offset,
        # File times stay real: make compares them to decide whether setup must run again.
        "NO_FAKE_STAT": "1",
    }


def _make_demo(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # `-o .venv/.installed`: the test suite already runs inside the set-up environment; make
    # must not reinstall it (pip's TLS would see certificates from a year away).
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "demo"],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _verdicts(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("PASS", "FAIL", "  ✗", "  !"))]


@pytest.fixture(scope="module")
def today() -> subprocess.CompletedProcess[str]:
    return _make_demo(dict(os.environ))


def test_the_demo_passes_today(today: subprocess.CompletedProcess[str]) -> None:
    assert today.returncode == 0, today.stdout + today.stderr
    assert "PASS  Deployment ml-prod/fraud-detector " in today.stdout
    assert "FAIL  Deployment ml-prod/fraud-detector-experiment " in today.stdout
    assert "ImageUnsigned" in today.stdout


def test_the_moved_clock_reaches_the_demo_process() -> None:
    # Without this, a libfaketime that failed to load would make the next test vacuous.
    probe = [sys.executable, "-c", "import datetime; print(datetime.datetime.now().year)"]
    for offset, years in zip(OFFSETS, (1, 10), strict=True):
        moved = subprocess.run(
            probe, env=_moved_clock(offset), capture_output=True, text=True, check=True
        )
        real = subprocess.run(probe, capture_output=True, text=True, check=True)
        assert int(moved.stdout) - int(real.stdout) in (years, years - 1, years + 1)
        assert int(moved.stdout) > int(real.stdout)


@pytest.mark.parametrize("offset", OFFSETS)
def test_the_demo_gives_the_same_verdicts_with_the_clock_moved(
    today: subprocess.CompletedProcess[str], offset: str
) -> None:
    later = _make_demo(_moved_clock(offset))
    assert later.returncode == 0, later.stdout + later.stderr
    assert _verdicts(later.stdout) == _verdicts(today.stdout)
    assert _verdicts(today.stdout), "the demo printed no verdicts"
