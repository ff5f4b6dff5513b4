"""The default scanners, in detection order (magic bytes before names, text last)."""

from __future__ import annotations

from modelshield.modelartifacts.scanning import (
    archives,
    compressed,
    documents,
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
