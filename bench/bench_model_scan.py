"""Scanning throughput: ``modelshield model scan`` against ModelScan's CLI on the same files.

Both tools run as command-line processes: modelshield as ``python -m modelshield.cli.model``
(the model commands alone; the full ``modelshield`` entry point also loads the operator),
ModelScan as its ``modelscan`` script. Two directories of real files made here:

1. ``mixed`` (about 1 GiB): a PyTorch zip checkpoint with 512 MiB of tensor data, a pickled
   256 MiB NumPy array, a joblib file with a 256 MiB array, a small scikit-learn model.
2. ``pickles`` (files both tools read whole): the 256 MiB array pickle and a state-dict-like
   pickle of many small objects (opcode-heavy: where a walker's per-opcode cost shows).
3. ``keras`` (about 512 MiB): a Keras HDF5 model with 384 MiB of weights and a ``.keras``
   file with 128 MiB (ModelScan reads HDF5 only with h5py in its venv: ``pip install h5py``).

Figures: wall-clock and CPU seconds (best of three), directory bytes per second, and the
bytes each tool read. modelshield reads every byte; ModelScan reads only the pickles it
recognises (not a PyTorch zip's tensor data, and it stops with an error at the raw array
bytes joblib writes inside its stream), so on ``mixed`` the per-byte-read ratio is the
comparable one. Nothing is asserted.

ModelScan is not a dependency: install it in a throwaway venv and point to it::

    python3 -m venv /tmp/modelscan-venv && /tmp/modelscan-venv/bin/pip install modelscan
    .venv/bin/python bench/bench_model_scan.py --modelscan /tmp/modelscan-venv/bin/modelscan
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import joblib  # type: ignore[import-untyped]
import numpy

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
MIB = 1 << 20


def make_mixed(directory: pathlib.Path) -> None:
    """A PyTorch checkpoint, an array pickle, a joblib file and a scikit-learn model."""
    # The test suite's model builders: the same files the tests make.
    sys.path[:0] = [str(REPOSITORY), str(REPOSITORY / "operator")]
    models = importlib.import_module("tests.modelartifacts.models")
    directory.mkdir(parents=True)
    rng = numpy.random.default_rng(7)
    tensor = rng.standard_normal(512 * MIB // 4, dtype=numpy.float32)
    models.torch_style_zip(directory / "model.pt", values=(0.0,))
    with zipfile.ZipFile(directory / "model.pt", "a") as archive:
        archive.writestr("archive/data/1", tensor.tobytes())
    del tensor
    array = rng.standard_normal(256 * MIB // 8)
    (directory / "weights.pkl").write_bytes(pickle.dumps({"w": array}, protocol=4))
    joblib.dump({"embedding": array}, directory / "index.joblib")
    models.sklearn_model(directory / "classifier")


def make_keras(directory: pathlib.Path) -> None:
    """A Keras HDF5 model with 384 MiB of weights and a .keras file with 128 MiB."""
    sys.path[:0] = [str(REPOSITORY), str(REPOSITORY / "operator")]
    models = importlib.import_module("tests.modelartifacts.models")
    h5py = importlib.import_module("h5py")
    directory.mkdir(parents=True)
    rng = numpy.random.default_rng(9)
    models.keras_h5_file(directory / "model.h5")
    with h5py.File(directory / "model.h5", "r+") as handle:
        for index in range(3):
            extra = rng.standard_normal(128 * MIB // 4, dtype=numpy.float32)
            handle.create_dataset(f"model_weights/dense/dense/extra_{index}:0", data=extra)
    weights_file = directory / "model.weights.h5"
    with h5py.File(weights_file, "w") as handle:
        extra = rng.standard_normal(128 * MIB // 4, dtype=numpy.float32)
        handle.create_dataset("layers/dense/vars/0", data=extra)
    with zipfile.ZipFile(directory / "model.keras", "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        archive.writestr("config.json", json.dumps(models.keras_config()))
        archive.write(weights_file, "model.weights.h5")
    weights_file.unlink()


def make_pickles(directory: pathlib.Path) -> None:
    """Pickles only: one large array, one with half a million small objects."""
    directory.mkdir(parents=True)
    rng = numpy.random.default_rng(8)
    array = rng.standard_normal(256 * MIB // 8)
    (directory / "weights.pkl").write_bytes(pickle.dumps({"w": array}, protocol=4))
    state = {f"layer.{i}.weight": [float(i), i * 0.5, "name"] for i in range(500_000)}
    (directory / "state.pkl").write_bytes(pickle.dumps(state, protocol=2))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], runs: int) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Best wall and CPU seconds of a command, and its last result."""
    wall = cpu = float("inf")
    result: subprocess.CompletedProcess[str] | None = None
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), _children_cpu()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, _children_cpu() - start_cpu)
    assert result is not None
    return wall, cpu, result


_MEASURE_RSS = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_mib(command: list[str]) -> float:
    """Peak resident memory of one run of command, through a fresh parent process."""
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE_RSS, *command], capture_output=True, text=True, check=True
    )
    return int(result.stdout.strip()) / 1024


def _size_read(model: pathlib.Path, scanned: list[str]) -> int:
    """Bytes of the files (or zip members) ModelScan lists as scanned."""
    total = 0
    for entry in scanned:
        path, _, member = entry.partition(":")
        if member:
            with zipfile.ZipFile(model / path) as archive:
                total += archive.getinfo(member).file_size
        else:
            total += (model / path).stat().st_size
    return total


def compare(name: str, model: pathlib.Path, modelscan: str, runs: int, work: pathlib.Path) -> None:
    """Run both tools on one directory and print the figures."""
    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    ours = [sys.executable, "-m", "modelshield.cli.model", "scan", str(model), "--output", "json"]
    subprocess.run(ours, capture_output=True, check=False)  # warm the page cache
    our_wall, our_cpu, our_result = timed(ours, runs)
    our_read = json.loads(our_result.stdout)["bytesScanned"]
    our_rss = peak_rss_mib(ours)
    load = os.getloadavg()[0]
    print(f"{name}: {size / MIB:.0f} MiB (load average {load:.1f} on {os.cpu_count()} CPUs)")
    print(
        f"  modelshield  wall {our_wall:6.2f} s {size / our_wall / 1e6:7.0f} MB/s  "
        f"cpu {our_cpu:6.2f} s  read {our_read / MIB:6.0f} MiB  exit {our_result.returncode}"
        f"  peak RSS {our_rss:.0f} MiB"
    )
    if not pathlib.Path(modelscan).exists():
        print(f"  ModelScan not found at {modelscan}: see this module's docstring")
        return
    report = work / f"modelscan-{name}.json"
    theirs = [modelscan, "-p", str(model), "-r", "json", "-o", str(report)]
    their_wall, their_cpu, their_result = timed(theirs, runs)
    their_report = json.loads(report.read_text())
    their_read = _size_read(model, their_report["summary"]["scanned"]["scanned_files"])
    errors = [error.get("source") for error in their_report.get("errors", [])]
    print(
        f"  ModelScan    wall {their_wall:6.2f} s {size / their_wall / 1e6:7.0f} MB/s  "
        f"cpu {their_cpu:6.2f} s  read {their_read / MIB:6.0f} MiB  exit {their_result.returncode}"
        + (f"  errors on {errors}" if errors else "")
    )
    print(
        f"  ratio modelshield/ModelScan, directory bytes per second: wall "
        f"{their_wall / our_wall:.2f}, cpu {their_cpu / our_cpu:.2f}; bytes read per CPU second: "
        f"{(our_read / our_cpu) / (their_read / their_cpu):.2f}  (goal >= 1.0)"
    )


def main() -> None:
    """Make the files, run both scanners, print the figures."""
    parser = argparse.ArgumentParser(description="model scanning throughput")
    default = shutil.which("modelscan") or str(
        pathlib.Path(tempfile.gettempdir()) / "modelscan-venv" / "bin" / "modelscan"
    )
    parser.add_argument("--modelscan", default=default)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    os.environ["PYTHONPATH"] = f"{REPOSITORY / 'operator'}:{REPOSITORY}"
    with tempfile.TemporaryDirectory(prefix="modelshield-bench-scan-") as temporary:
        work = pathlib.Path(temporary)
        make_mixed(work / "mixed")
        compare("mixed", work / "mixed", arguments.modelscan, arguments.runs, work)
        shutil.rmtree(work / "mixed")
        make_pickles(work / "pickles")
        compare("pickles", work / "pickles", arguments.modelscan, arguments.runs, work)
        shutil.rmtree(work / "pickles")
        make_keras(work / "keras")
        compare("keras", work / "keras", arguments.modelscan, arguments.runs, work)


if __name__ == "__main__":
    main()
