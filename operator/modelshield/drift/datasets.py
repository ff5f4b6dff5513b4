"""Reading training data (CSV, JSON Lines, Parquet) into columns, and profiles from/to files.

Parquet needs ``pyarrow``, which is optional: without it, a Parquet file gets an error
that says so rather than an ImportError.
"""

from __future__ import annotations

import csv
import importlib
import json
import pathlib
from typing import Any

from modelshield.drift import profiledocuments, profiles

Columns = dict[str, list[Any]]


class DatasetError(ValueError):
    """A data file that cannot be read."""


def read_csv(path: pathlib.Path) -> Columns:
    """Columns of a CSV file with a header row; cells stay strings (empty = missing)."""
    with path.open(newline="") as stream:
        reader = csv.reader(stream)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetError(f"{path}: empty file") from None
        columns: Columns = {name: [] for name in header}
        for number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetError(
                    f"{path}:{number}: {len(row)} cells, the header has {len(header)}"
                )
            for name, cell in zip(header, row, strict=True):
                columns[name].append(cell)
    return columns


def read_jsonl(path: pathlib.Path) -> Columns:
    """Columns of a JSON Lines file of objects; absent keys are missing values."""
    records: list[dict[str, Any]] = []
    with path.open() as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{number}: not JSON: {error}") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{number}: each line must be a JSON object")
            records.append(record)
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return {name: [record.get(name) for record in records] for name in names}


def read_parquet(path: pathlib.Path) -> Columns:
    """Columns of a Parquet file (needs pyarrow)."""
    try:
        parquet: Any = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise DatasetError(
            f"{path}: reading Parquet needs the optional package pyarrow "
            "(pip install pyarrow), or convert the data to CSV or JSON Lines"
        ) from None
    table = parquet.read_table(path)
    columns: Columns = table.to_pydict()
    return columns


READERS = {".csv": read_csv, ".jsonl": read_jsonl, ".ndjson": read_jsonl, ".parquet": read_parquet}


def read(path: pathlib.Path) -> Columns:
    """Columns of a data file, chosen by its suffix."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DatasetError(f"{path}: unknown data format; use {', '.join(READERS)}")
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    return reader(path)


def read_profile(path: pathlib.Path) -> profiles.Profile:
    """Load a profile file, saying which file and where it is wrong."""
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise profiles.ProfileError(f"{path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise profiles.ProfileError(f"{path}: not JSON: {error}") from None
    try:
        return profiledocuments.from_document(document)
    except profiles.ProfileError as error:
        raise profiles.ProfileError(f"{path}: {error}") from None


def write_profile(profile: profiles.Profile, path: pathlib.Path) -> None:
    """Write a profile as indented JSON."""
    path.write_text(json.dumps(profiledocuments.to_document(profile), indent=2) + "\n")
