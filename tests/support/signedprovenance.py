"""Provenance made by the tests: signed models, datasets and statements (real signatures)."""

from __future__ import annotations

import base64
import datetime
import json
import pathlib
from typing import Any

from modelshield.cli import main as cli
from modelshield.modelartifacts import hashing, signing
from modelshield.provenance import envelopes, statements
from tests.support import modelfiles as models
from tests.support import signingkeys as keys

SOURCE = "git+https://git.example.com/ml/fraud"
COMMIT = "4f2d9c1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e"
BUILDER_ID = "https://ci.example.com/pipelines/fraud-training"


def digest_of(path: pathlib.Path) -> str:
    """The model-signing root digest the operator computes."""
    return hashing.root_digest(hashing.configure().hash(path))


def signed_model(directory: pathlib.Path, signer: keys.KeyPair, seed: str = "v1") -> pathlib.Path:
    """A small benign model, signed in the OpenSSF model-signing format."""
    model = models.benign_model(directory)
    (model / "version.txt").write_text(seed)
    signing.sign_with_key(model, signer.private_path)
    return model


def dataset(directory: pathlib.Path, rows: str = "amount,label\n12.5,0\n990.0,1\n") -> pathlib.Path:
    """A tiny CSV dataset directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train.csv").write_text(rows)
    return directory


def attest(
    model: pathlib.Path,
    builder: keys.KeyPair,
    datasets: dict[str, pathlib.Path | str],
    *,
    output: pathlib.Path | None = None,
    digest: str | None = None,
    finished: str | None = None,
) -> pathlib.Path:
    """Run `modelshield model attest` (the code under test) and return the provenance file."""
    arguments = [
        "model",
        "attest",
        str(model),
        "--key",
        str(builder.private_path),
        "--builder-id",
        BUILDER_ID,
        "--source",
        SOURCE,
        "--commit",
        COMMIT,
    ]
    for uri, value in datasets.items():
        arguments += ["--dataset", f"{uri}={value}"]
    if output is not None:
        arguments += ["--output", str(output)]
    if digest is not None:
        arguments += ["--digest", digest]
    if finished is not None:
        arguments += ["--finished-on", finished]
    assert cli.main(arguments) == 0
    return output or pathlib.Path(str(model).rstrip("/") + ".intoto.jsonl")


def envelope_of(path: pathlib.Path) -> dict[str, Any]:
    """The one envelope a provenance file holds."""
    document: dict[str, Any] = json.loads(path.read_text().splitlines()[0])
    return document


def statement_of(path: pathlib.Path) -> dict[str, Any]:
    """The statement inside the file's envelope (signature not checked)."""
    document: dict[str, Any] = json.loads(base64.b64decode(envelope_of(path)["payload"]))
    return document


def rewrite_payload(path: pathlib.Path, statement: dict[str, Any]) -> None:
    """Replace the payload and keep the old signature (what a tamperer without the key can do)."""
    envelope = envelope_of(path)
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(envelope) + "\n")


def resign(path: pathlib.Path, statement: dict[str, Any], builder: keys.KeyPair) -> None:
    """Sign a (changed) statement with a builder's key."""
    envelope = envelopes.sign(statement, builder.private_path.read_bytes())
    path.write_text(json.dumps(envelope) + "\n")


def predicate(datasets: dict[str, str], finished: datetime.datetime) -> dict[str, Any]:
    """A SLSA provenance v1 predicate as another tool (cosign attest-blob) is given it."""
    statement = statements.build(
        subject_name="ignored",
        subject_digest="sha256:" + "0" * 64,
        builder_id=BUILDER_ID,
        source=SOURCE,
        commit=COMMIT,
        datasets=[statements.Input(uri.rsplit("/", 2)[-2], uri, d) for uri, d in datasets.items()],
        started=finished,
        finished=finished,
    )
    result: dict[str, Any] = statement["predicate"]
    return result
