"""What processes spend: their CPU time from /proc, and py-spy samples of where.

Used by the guard's benchmark, which counts the CPU of the processes that serve a request
rather than trusting wall-clock rates on a shared machine.
"""

from __future__ import annotations

import collections
import os
import pathlib
import shutil
import subprocess
import sys

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    return sum(cpu_times(pid))


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process so far (the kernel's part: system)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def profile(pid: int, seconds: float, output: pathlib.Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(pathlib.Path(sys.executable).parent / "py-spy")
    if not pathlib.Path(spy).exists():
        print("py-spy not found: no profile")
        return None
    raw = output.with_suffix(".raw")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
         "--format", "raw", "--output", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def summarise_profile(raw: pathlib.Path, output: pathlib.Path) -> None:
    """Own time and inclusive time per function, from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [
            frame.split(" (")[0] + " (" + frame.split(" (")[-1]
            for frame in stack.split(";")
            if frame
        ]
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    with output.open("w") as out:
        out.write(f"{total} samples\n\nown time\n")
        for frame, count in own.most_common(40):
            out.write(f"{100 * count / total:5.1f}%  {frame}\n")
        out.write("\ninclusive time\n")
        for frame, count in inclusive.most_common(60):
            out.write(f"{100 * count / total:5.1f}%  {frame}\n")
