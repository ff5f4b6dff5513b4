"""The default scanners, in detection order (magic bytes before names, text last), and the
scan of a whole model directory with them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import pathlib
from collections.abc import Callable, Iterator, Sequence

from modelshield.modelartifacts.scanning import (
    archives,
    compressed,
    documents,
    findings,
    hdf5_files,
    headers,
    keras_models,
    numpy_arrays,
    onnx_models,
    pickles,
    scanners,
)


def default_scanners() -> list[scanners.Scanner]:
    """Every scanner modelshield ships."""
    return [
        archives.ZipScanner(),
        archives.TarScanner(),
        compressed.CompressedScanner(),
        numpy_arrays.NpyScanner(),
        headers.GgufScanner(),
        hdf5_files.Hdf5Scanner(),
        headers.SafetensorsScanner(),
        onnx_models.OnnxScanner(),
        keras_models.SavedModelScanner(),
        keras_models.TensorflowVariablesScanner(),
        pickles.PickleScanner(),
        documents.SignatureBundleScanner(),
        documents.PythonSourceScanner(),
        documents.JsonScanner(),
        documents.TextScanner(),
    ]


def scan_directory(
    model_dir: pathlib.Path,
    use: Sequence[scanners.Scanner] | None = None,
    *,
    max_workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> findings.ScanReport:
    """Scan every file of a model (or a single file) with bounded concurrency.

    use: the scanners to detect formats with, in order; by default ``default_scanners()``.
    """
    chosen = list(use) if use is not None else default_scanners()
    if model_dir.is_file():
        return findings.ScanReport([scanners.scan_file(model_dir, model_dir.name, chosen)])
    files = scanners.model_files(model_dir)
    report = findings.ScanReport()
    with contextlib.ExitStack() as stack:
        mapper: Callable[..., Iterator[findings.FileRecord]] = map
        if max_workers > 1:
            mapper = stack.enter_context(
                concurrent.futures.ThreadPoolExecutor(max_workers=max_workers)
            ).map
        for record in mapper(lambda item: scanners.scan_file(item[0], item[1], chosen), files):
            if progress is not None:
                progress(record.path)
            report.files.append(record)
    return report
