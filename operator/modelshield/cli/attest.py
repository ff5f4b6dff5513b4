"""``modelshield model attest``: write and sign the training provenance of a model directory.

The statement is an in-toto statement with a SLSA provenance v1 predicate whose subject is
the model (the model-signing manifest's root digest, what the operator verifies), naming the
code (repository and commit) and the datasets (URI and digest); it is signed with a key
into a DSSE envelope and written beside the model (DIR.intoto.jsonl), where the operator
looks for it by default. Exit codes: 0 written, 2 bad input.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re
import sys

EXIT_OK, EXIT_BAD_INPUT = 0, 2
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def _bad_input(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _digest_of(path: pathlib.Path) -> str:
    """The model-signing root digest of a directory (or one file), as the operator computes it."""
    from modelshield.modelartifacts import hashing

    return hashing.root_digest(hashing.configure().hash(path))


def _dataset(text: str) -> tuple[str, str]:
    """URI=DIGEST or URI=LOCAL_PATH (hashed here) -> (uri, sha256:<hex>)."""
    uri, separator, value = text.rpartition("=")
    if not separator or not uri or "://" not in uri:
        raise ValueError(f"--dataset {text!r}: expected URI=sha256:<hex> or URI=LOCAL_PATH")
    if value.startswith("sha256:"):
        if not _DIGEST.fullmatch(value):
            raise ValueError(f"--dataset {text!r}: {value!r} is not sha256:<64 hex>")
        return uri, value
    local = pathlib.Path(value)
    if not local.exists():
        raise ValueError(f"--dataset {text!r}: {local} does not exist")
    return uri, _digest_of(local)


def _time(text: str | None, default: datetime.datetime) -> datetime.datetime:
    if not text:
        return default
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def run(arguments: argparse.Namespace) -> int:
    """Write the signed provenance; return the exit code."""
    from modelshield.provenance import envelopes, statements

    model = pathlib.Path(arguments.directory)
    if not model.is_dir():
        return _bad_input(f"{model} is not a directory")
    try:
        datasets = [_dataset(text) for text in arguments.dataset]
        if arguments.digest and not _DIGEST.fullmatch(arguments.digest):
            raise ValueError(f"--digest {arguments.digest!r} is not sha256:<64 hex>")
        digest = arguments.digest or _digest_of(model)
        now = datetime.datetime.now(datetime.UTC)
        finished = _time(arguments.finished_on, now)
        started = _time(arguments.started_on, finished)
        statement = statements.build(
            subject_name=arguments.name or model.resolve().name,
            subject_digest=digest,
            builder_id=arguments.builder_id,
            source=arguments.source,
            commit=arguments.commit,
            datasets=[
                statements.Input(name=uri.rstrip("/").rsplit("/", 1)[-1], uri=uri, digest=d)
                for uri, d in datasets
            ],
            started=started,
            finished=finished,
            invocation_id=arguments.invocation_id or "",
        )
        password = os.environ.get(arguments.password_env) if arguments.password_env else None
        envelope = envelopes.sign(
            statement,
            pathlib.Path(arguments.key).read_bytes(),
            password.encode() if password is not None else None,
        )
    except (OSError, ValueError, TypeError) as error:
        return _bad_input(f"cannot attest {model}: {error}")
    output = pathlib.Path(arguments.output or str(model).rstrip("/") + ".intoto.jsonl")
    output.write_text(json.dumps(envelope, separators=(",", ":")) + "\n")
    print(f"attested {model}: {digest} built by {arguments.builder_id} -> {output}")
    return EXIT_OK


def register(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``attest`` to the ``model`` command's actions."""
    attest = actions.add_parser(
        "attest",
        help="write and sign the training provenance of a model (in-toto, SLSA provenance v1, DSSE)",
    )
    attest.add_argument("directory", help="the model directory")
    attest.add_argument(
        "--key", required=True, help="the builder's PEM private key (EC, Ed25519, RSA)"
    )
    attest.add_argument(
        "--password-env", help="environment variable holding the key's password (if encrypted)"
    )
    attest.add_argument(
        "--builder-id", required=True, help="runDetails.builder.id, e.g. the pipeline's URL"
    )
    attest.add_argument(
        "--source", required=True, help="code repository, e.g. git+https://host/org/repo"
    )
    attest.add_argument("--commit", required=True, help="the code's commit")
    attest.add_argument(
        "--dataset",
        action="append",
        default=[],
        help="URI=sha256:<hex> or URI=LOCAL_PATH (hashed like a model); repeatable",
    )
    attest.add_argument(
        "--digest", help="the model's digest (default: hashed here, as `model sign` does)"
    )
    attest.add_argument("--name", help="subject name (default: the directory's name)")
    attest.add_argument("--started-on", help="RFC 3339 start of the training run")
    attest.add_argument("--finished-on", help="RFC 3339 end of the training run (default: now)")
    attest.add_argument("--invocation-id", help="the pipeline run's id")
    attest.add_argument("--output", help="where to write (default: DIR.intoto.jsonl beside DIR)")
    attest.set_defaults(handler=run)
