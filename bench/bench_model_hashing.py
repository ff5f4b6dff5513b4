"""Hashing a model through model_signing, against ``openssl dgst -sha256`` and across cores.

Figures (printed; nothing is asserted):

1. One 2 GiB file: model_signing's SHA-256 file hashing (as ``modelshield model sign``
   runs it) against ``openssl dgst -sha256`` on the same file, both from the page cache,
   best of three each. Ratio = openssl time / model_signing time (goal >= 0.9).
   Debian's ``sha256sum`` is no baseline: it does not use the CPU's SHA instructions.
2. A sharded multi-file model (8 files of 256 MiB): model_signing with one worker thread
   against two. Speed-up = one-worker time / two-worker time (goal >= 1.7 on two cores).

The files are made in a temporary directory and deleted afterwards.

    .venv/bin/python bench/bench_model_hashing.py              # 2 GiB, about a minute
    .venv/bin/python bench/bench_model_hashing.py --size-mib 512
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import os
import pathlib
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable

from modelshield.modelartifacts import hashing

MIB = 1 << 20


def _write(path: pathlib.Path, size: int) -> None:
    # Random blocks, repeated: hashing cost does not depend on the content.
    block = os.urandom(4 * MIB)
    with path.open("wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _best(runs: int, action: Callable[[], object]) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds (this process and its children) of runs."""
    wall = cpu = float("inf")
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), _cpu()
        action()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, _cpu() - start_cpu)
    return wall, cpu


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} CPUs"


def _openssl(path: pathlib.Path) -> None:
    subprocess.run(["openssl", "dgst", "-sha256", str(path)], check=True, capture_output=True)


_BLOCK = os.urandom(MIB)


def _hash_file(path: pathlib.Path) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)


def _hash_memory(path: pathlib.Path) -> None:
    digest = hashlib.sha256()
    for _ in range(path.stat().st_size // MIB):
        digest.update(_BLOCK)


def _threads(paths: list[pathlib.Path], workers: int, *, in_memory: bool = False) -> None:
    """Plain hashlib in a thread pool: what the interpreter and the machine allow."""
    work = _hash_memory if in_memory else _hash_file
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, paths))


def _openssl_streams(paths: list[pathlib.Path], streams: int) -> None:
    processes = [
        subprocess.Popen(
            ["openssl", "dgst", "-sha256", *map(str, paths[index::streams])],
            stdout=subprocess.DEVNULL,
        )
        for index in range(streams)
    ]
    for process in processes:
        assert process.wait() == 0


def single_file(work: pathlib.Path, size: int, runs: int) -> None:
    model = work / "single"
    model.mkdir()
    path = model / "weights.bin"
    _write(path, size)
    config = hashing.configure(max_workers=1)
    _openssl(path)  # warm the page cache
    model_signing, model_signing_cpu = _best(runs, lambda: config.hash(model))
    openssl, openssl_cpu = _best(runs, lambda: _openssl(path))
    gib = size / (1 << 30)
    print(f"single file: {gib:.2f} GiB ({_load()})")
    for label, wall, cpu in (
        ("model_signing sha256", model_signing, model_signing_cpu),
        ("openssl dgst -sha256", openssl, openssl_cpu),
    ):
        print(
            f"  {label}  wall {wall:7.3f} s {size / wall / 1e9:6.2f} GB/s"
            f"   cpu {cpu:7.3f} s {size / cpu / 1e9:6.2f} GB/s"
        )
    print(
        f"  ratio openssl/model_signing: wall {openssl / model_signing:.3f}, "
        f"cpu {openssl_cpu / model_signing_cpu:.3f}  (goal >= 0.9)"
    )
    shutil.rmtree(model)


def sharded(work: pathlib.Path, size: int, runs: int) -> None:
    model = work / "sharded"
    model.mkdir()
    files = 8
    for index in range(files):
        _write(model / f"model-{index:05}-of-{files:05}.safetensors", size // files)
    one = hashing.configure(max_workers=1)
    two = hashing.configure(max_workers=2)
    one.hash(model)  # warm the page cache
    single, _ = _best(runs, lambda: one.hash(model))
    double, _ = _best(runs, lambda: two.hash(model))
    paths = sorted(model.iterdir())
    # The machine's own parallelism, same files, same run: openssl over all files in one
    # process stream, then in two concurrent streams.
    serial, _ = _best(runs, lambda: _openssl_streams(paths, 1))
    parallel, _ = _best(runs, lambda: _openssl_streams(paths, 2))
    print(f"sharded model: {files} files, {size / (1 << 30):.2f} GiB ({_load()})")
    print(f"  model_signing, 1 worker    {single:7.3f} s  {size / single / 1e9:6.2f} GB/s")
    print(f"  model_signing, 2 workers   {double:7.3f} s  {size / double / 1e9:6.2f} GB/s")
    print(f"  openssl, 1 stream          {serial:7.3f} s  {size / serial / 1e9:6.2f} GB/s")
    print(f"  openssl, 2 streams         {parallel:7.3f} s  {size / parallel / 1e9:6.2f} GB/s")
    read_one, _ = _best(runs, lambda: _threads(paths, 1))
    read_two, _ = _best(runs, lambda: _threads(paths, 2))
    memory_one, _ = _best(runs, lambda: _threads(paths, 1, in_memory=True))
    memory_two, _ = _best(runs, lambda: _threads(paths, 2, in_memory=True))
    print(
        f"  speed-up 2 vs 1: model_signing {single / double:.2f}x (goal >= 1.7); baselines: "
        f"openssl processes {serial / parallel:.2f}x, hashlib threads reading the files "
        f"{read_one / read_two:.2f}x, hashlib threads over bytes in memory "
        f"{memory_one / memory_two:.2f}x"
    )
    shutil.rmtree(model)


def main() -> None:
    """Run both figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    size = arguments.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="modelshield-bench-hash-") as work:
        single_file(pathlib.Path(work), size, arguments.runs)
        sharded(pathlib.Path(work), size, arguments.runs)


if __name__ == "__main__":
    main()
