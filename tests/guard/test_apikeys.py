"""API keys from mounted Secrets: digests only, reloaded when the Secret changes."""

from __future__ import annotations

import hashlib
import os
import pathlib

from modelshield.guard import apikeys


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _mount(root: pathlib.Path, name: str, keys: dict[str, str], version: str) -> None:
    """Lay a Secret out the kubelet's way: files are symlinks through ..data."""
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    payload = directory / f"..{version}"
    payload.mkdir()
    for client, key in keys.items():
        (payload / client).write_text(_digest(key) + "\n")
    link = directory / "..data_tmp"
    link.symlink_to(payload.name)
    os.replace(link, directory / "..data")
    for client in keys:
        entry = directory / client
        if not entry.is_symlink():
            entry.symlink_to(pathlib.Path("..data") / client)


def test_keys_map_to_clients_and_rotate(tmp_path: pathlib.Path) -> None:
    _mount(tmp_path, "keys", {"batch": "first"}, "v1")
    store = apikeys.KeyStore(tmp_path, frozenset({"keys"}))
    assert store.lookup(_digest("first"), now=0.0) == apikeys.KeyMatch("batch", frozenset({"keys"}))
    assert store.lookup(_digest("second"), now=0.0) is None
    _mount(tmp_path, "keys", {"batch": "second"}, "v2")
    assert store.lookup(_digest("first"), now=0.5) is not None  # not re-read within RECHECK
    assert store.lookup(_digest("first"), now=2.0) is None
    assert store.lookup(_digest("second"), now=2.0) == apikeys.KeyMatch(
        "batch", frozenset({"keys"})
    )


def test_values_that_are_not_digests_are_ignored(tmp_path: pathlib.Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / "plain").write_text("the-key-itself")
    (directory / "upper").write_text(_digest("k").upper())
    store = apikeys.KeyStore(tmp_path, frozenset({"keys"}))
    assert store.lookup(_digest("the-key-itself"), now=0.0) is None
    assert store.lookup(_digest("k"), now=0.0) == apikeys.KeyMatch("upper", frozenset({"keys"}))


def test_a_missing_secret_holds_no_keys(tmp_path: pathlib.Path) -> None:
    store = apikeys.KeyStore(tmp_path, frozenset({"absent"}))
    assert store.lookup(_digest("k"), now=0.0) is None


def test_the_secrets_listing_a_key(tmp_path: pathlib.Path) -> None:
    _mount(tmp_path, "a", {"batch": "k"}, "v1")
    _mount(tmp_path, "b", {"batch": "k"}, "v1")
    _mount(tmp_path, "c", {"other": "k2"}, "v1")
    store = apikeys.KeyStore(tmp_path, frozenset({"a", "b", "c"}))
    assert store.lookup(_digest("k"), now=0.0) == apikeys.KeyMatch("batch", frozenset({"a", "b"}))
