"""Hashing a model through model_signing, with progress, and the manifest's root digest."""

from __future__ import annotations

import hashlib
import pathlib
import threading
from collections.abc import Callable, Iterable
from typing import Any, Literal, cast

from model_signing import hashing as ms_hashing
from model_signing import manifest as ms_manifest

Algorithm = Literal["sha256", "blake2", "blake3"]

#: The signature bundle at the model root, as model-signing's own CLI writes it.
DEFAULT_SIGNATURE_NAME = "model.sig"

#: Called with (bytes hashed so far, total bytes to hash).
ProgressCallback = Callable[[int, int], None]


def model_size(model_dir: pathlib.Path, ignored: Iterable[str] = ()) -> int:
    """Total bytes of the regular files of the model, for progress reporting."""
    ignored_set = set(ignored)
    total = 0
    for path in model_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            relative = path.relative_to(model_dir).as_posix()
            if relative not in ignored_set:
                total += path.stat().st_size
    return total


class _Counting:
    """Wraps one model_signing file hasher and reports its bytes once it is done."""

    def __init__(self, inner: Any, size: Callable[[], int], report: Callable[[int], None]) -> None:
        self._inner = inner
        self._size = size
        self._report = report

    def __getattr__(self, name: str) -> Any:
        # The serializers read digest_name, shard_size and _content_hasher from the hasher.
        return getattr(self._inner, name)

    def compute(self) -> Any:
        digest = self._inner.compute()
        self._report(self._size())
        return digest


class ProgressConfig(ms_hashing.Config):
    """model_signing's hashing configuration, reporting progress per file or shard.

    The hashing itself stays model_signing's: this only wraps the hasher factories
    (a private hook of model-signing 1.x, pinned below 2) to count finished bytes.
    """

    def __init__(self, progress: ProgressCallback | None = None, total: int = 0) -> None:
        self._progress = progress
        self._total = total
        self._done = 0
        self._lock = threading.Lock()
        super().__init__()  # type: ignore[no-untyped-call]

    def set_total(self, total: int) -> None:
        """Set the byte count that the progress callback reports against."""
        self._total = total

    def _advance(self, amount: int) -> None:
        if self._progress is None:
            return
        with self._lock:
            self._done += amount
            done = self._done
        self._progress(done, self._total)

    def _build_file_hasher_factory(self, *args: Any, **kwargs: Any) -> Any:
        factory = super()._build_file_hasher_factory(*args, **kwargs)

        def _factory(path: pathlib.Path) -> Any:
            return _Counting(
                factory(path), lambda: path.stat().st_size if path.is_file() else 0, self._advance
            )

        return _factory

    def _build_sharded_file_hasher_factory(self, *args: Any, **kwargs: Any) -> Any:
        factory = super()._build_sharded_file_hasher_factory(*args, **kwargs)

        def _factory(path: pathlib.Path, start: int, end: int) -> Any:
            return _Counting(factory(path, start, end), lambda: end - start, self._advance)

        return _factory


def configure(
    *,
    progress: ProgressCallback | None = None,
    algorithm: str = "sha256",
    shard_size: int | None = None,
    max_workers: int | None = None,
    ignore: Iterable[str] = (DEFAULT_SIGNATURE_NAME,),
) -> ProgressConfig:
    """A hashing configuration: per file, or per shard when shard_size is given."""
    config = ProgressConfig(progress)
    if shard_size is None:
        config.use_file_serialization(
            hashing_algorithm=cast(Algorithm, algorithm), max_workers=max_workers
        )
    else:
        config.use_shard_serialization(
            hashing_algorithm=cast(Algorithm, algorithm),
            shard_size=shard_size,
            max_workers=max_workers,
        )
    config.set_ignored_paths(paths=list(ignore))
    return config


def from_serialization(
    serialization: dict[str, Any], progress: ProgressCallback | None = None
) -> ProgressConfig:
    """The hashing configuration a signed manifest declares (as model_signing guesses it)."""
    config = ProgressConfig(progress)
    method = serialization.get("method")
    ignore = serialization.get("ignore_paths", [])
    if method == "files":
        config.use_file_serialization(
            hashing_algorithm=serialization["hash_type"],
            allow_symlinks=serialization["allow_symlinks"],
        )
    elif method == "shards":
        config.use_shard_serialization(
            hashing_algorithm=serialization["hash_type"],
            shard_size=serialization["shard_size"],
            allow_symlinks=serialization["allow_symlinks"],
        )
    else:
        raise ValueError(f"unknown serialization method {method!r} in the signed manifest")
    config.set_ignored_paths(paths=list(ignore))
    config.set_allow_symlinks(bool(serialization["allow_symlinks"]))
    return config


def root_digest(manifest: ms_manifest.Manifest) -> str:
    """The manifest's root digest: sha256 over every resource digest, as the signed subject."""
    hasher = hashlib.sha256()
    for descriptor in manifest.resource_descriptors():
        hasher.update(descriptor.digest.digest_value)
    return "sha256:" + hasher.hexdigest()
