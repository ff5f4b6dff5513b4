"""``modelshield model sign|verify|scan|attest``: the OpenSSF model-signing format and the static scanner.

Exit codes: 0 success (verified; no finding at or above ``--fail-on``), 1 verification
failed or a finding is at or above ``--fail-on``, 2 the input cannot be read at all.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from modelshield import __version__
from modelshield.modelartifacts.scanning import findings, scanners

if TYPE_CHECKING:
    from modelshield.modelartifacts import modelverifying

# Signing and verification modules load model_signing and sigstore (most of a second):
# they are imported by the commands that use them, so `scan` starts fast.
DEFAULT_SIGNATURE_NAME = "model.sig"

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(
        self, label: str, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self._label = label
        # Looked up now, not at import, so that redirections made later are honoured.
        stream = stream if stream is not None else sys.stderr
        self._stream = stream
        self._enabled = stream.isatty() if enabled is None else enabled
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        """Report bytes done out of total."""
        now = time.monotonic()
        if not self._enabled or (now - self._last < 0.1 and done < total):
            return
        self._last = now
        fraction = done / total if total else 1.0
        bar = "#" * int(fraction * 30)
        self._stream.write(
            f"\r{self._label} [{bar:<30}] {fraction:6.1%} {done / 1e9:.2f}/{total / 1e9:.2f} GB"
        )
        if done >= total:
            self._stream.write("\n")
        self._stream.flush()


def _bad_input(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _run_sign(arguments: argparse.Namespace) -> int:
    from modelshield.modelartifacts import signing

    model = pathlib.Path(arguments.directory)
    if not model.is_dir():
        return _bad_input(f"{model} is not a directory")
    progress = Progress("hashing", enabled=arguments.progress)
    signature = pathlib.Path(arguments.signature) if arguments.signature else None
    try:
        if arguments.certificate:
            signed = signing.sign_with_certificate(
                model,
                pathlib.Path(arguments.key),
                pathlib.Path(arguments.certificate),
                [pathlib.Path(path) for path in arguments.chain],
                signature=signature,
                progress=progress,
            )
        else:
            signed = signing.sign_with_key(
                model,
                pathlib.Path(arguments.key),
                signature=signature,
                progress=progress,
                shard_size=arguments.shard_size,
            )
    except (OSError, ValueError) as error:
        return _bad_input(f"cannot sign {model}: {error}")
    print(f"signed {model}: {signed.digest} -> {signed.signature_path}")
    return EXIT_OK


def _policy_signers(
    path: pathlib.Path, trust_config: pathlib.Path | None
) -> list[modelverifying.TrustedSigner]:
    from modelshield.api.v1alpha1 import policies
    from modelshield.cli import manifests
    from modelshield.modelartifacts import reconciling

    requirements: list[policies.ModelRequirements] = []
    for document in manifests.read_documents([path]):
        if not manifests.is_modelshield_kind(document):
            continue
        parsed = manifests.parse_custom_resource(document)
        spec = getattr(parsed, "spec", None)
        models = getattr(spec, "models", None)
        if isinstance(models, policies.ModelRequirements):
            requirements.append(models)
            for signer in models.signers:
                if signer.secret_ref is not None:
                    print(
                        f"warning: signer {signer.name} reads its key from a Secret; "
                        "offline, it is skipped (use --key)",
                        file=sys.stderr,
                    )
    return reconciling.trusted_signers(requirements, {}, trust_config)


def _run_verify(arguments: argparse.Namespace) -> int:
    from modelshield.cli import manifests
    from modelshield.modelartifacts import modelverifying

    model = pathlib.Path(arguments.directory)
    if not model.is_dir():
        return _bad_input(f"{model} is not a directory")
    trust = pathlib.Path(arguments.trust_config) if arguments.trust_config else None
    signers: list[modelverifying.TrustedSigner]
    try:
        if arguments.policy:
            signers = _policy_signers(pathlib.Path(arguments.policy), trust)
        elif arguments.certificate_chain:
            chain = b"".join(
                pathlib.Path(path).read_bytes() for path in arguments.certificate_chain
            )
            single = (
                arguments.certificate_chain[0] if len(arguments.certificate_chain) == 1 else None
            )
            signers = [
                modelverifying.CertificateSigner(
                    "certificate-chain",
                    chain,
                    pathlib.Path(single) if single else None,
                    subject=arguments.certificate_subject,
                )
            ]
        else:
            signers = [
                modelverifying.KeySigner(
                    pathlib.Path(path).stem, pathlib.Path(path).read_bytes(), pathlib.Path(path)
                )
                for path in arguments.key
            ]
    except (OSError, manifests.ManifestError) as error:
        return _bad_input(str(error))
    if arguments.digest is not None and not re.fullmatch(r"sha256:[a-f0-9]{64}", arguments.digest):
        return _bad_input(f"--digest {arguments.digest!r} is not sha256:<64 hex>")
    try:
        result = modelverifying.verify(
            model,
            signers,
            signature=pathlib.Path(arguments.signature) if arguments.signature else None,
            expected_digest=arguments.digest,
            progress=Progress("verifying", enabled=arguments.progress),
        )
    except modelverifying.VerificationError as error:
        print(f"verification FAILED ({error.reason}): {error.message}", file=sys.stderr)
        if error.reason == modelverifying.SIGNATURE_MISSING:
            return EXIT_BAD_INPUT if arguments.signature else EXIT_FAILED
        return EXIT_FAILED
    print(f"verified {model}: {result.digest}, signed by {result.signer} ({result.files} files)")
    return EXIT_OK


def _table(report: findings.ScanReport, out: TextIO) -> None:
    for record in report.files:
        out.write(f"{record.format:<16} {record.size:>14}  {record.path}\n")
    out.write("\n")
    if not report.findings:
        out.write("no findings\n")
    for finding in report.findings:
        out.write(
            f"{finding.severity.value.upper():<9} {finding.file}  {finding.location}\n"
            f"          {finding.reason} [{finding.scanner}]\n"
        )


def sarif(report: findings.ScanReport) -> dict[str, Any]:
    """The report as SARIF 2.1.0 (one rule per severity; byte offsets as regions)."""
    levels = {"Critical": "error", "High": "error", "Medium": "warning", "Low": "note"}
    results = []
    for finding in report.findings:
        location: dict[str, Any] = {"artifactLocation": {"uri": finding.file.split("!")[0]}}
        offset = re.match(r"offset (\d+)", finding.location)
        if offset and "!" not in finding.file:
            location["region"] = {"byteOffset": int(offset.group(1)), "byteLength": 1}
        results.append(
            {
                "ruleId": f"model-scan-{finding.severity.value.lower()}",
                "level": levels[finding.severity.value],
                "message": {"text": f"{finding.file} {finding.location}: {finding.reason}"},
                "locations": [{"physicalLocation": location}],
                "properties": {"severity": finding.severity.value, "scanner": finding.scanner},
            }
        )
    rules = [
        {
            "id": f"model-scan-{level.lower()}",
            "shortDescription": {"text": f"{level} model scan finding"},
            "defaultConfiguration": {"level": levels[level]},
        }
        for level in levels
    ]
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "modelshield", "version": __version__, "rules": rules}},
                "results": results,
                "artifacts": [
                    {"location": {"uri": record.path}, "length": record.size}
                    for record in report.files
                ],
            }
        ],
    }


def as_json(report: findings.ScanReport) -> dict[str, Any]:
    """The report as a JSON document."""
    worst = report.worst()
    return {
        "files": [{"path": r.path, "format": r.format, "size": r.size} for r in report.files],
        "bytesScanned": report.bytes_scanned,
        "worst": worst.value if worst else None,
        "findings": [
            {
                "severity": f.severity.value,
                "file": f.file,
                "location": f.location,
                "reason": f.reason,
                "scanner": f.scanner,
            }
            for f in report.findings
        ],
    }


def _run_scan(arguments: argparse.Namespace) -> int:
    target = pathlib.Path(arguments.directory)
    if not target.exists():
        return _bad_input(f"{target} does not exist")
    try:
        threshold = findings.parse_severity(arguments.fail_on)
    except ValueError as error:
        return _bad_input(str(error))
    if target.is_dir() and not any(True for _ in scanners.model_files(target)):
        return _bad_input(f"{target} holds no files")
    # The catalog loads every format module (Jinja2 among them): only `scan` needs it.
    from modelshield.modelartifacts.scanning import catalog

    report = catalog.scan_directory(target, max_workers=arguments.jobs)
    if all(record.format == "unreadable" for record in report.files):
        return _bad_input(f"no file under {target} could be read")
    if arguments.output == "json":
        json.dump(as_json(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif arguments.output == "sarif":
        json.dump(sarif(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _table(report, sys.stdout)
    return EXIT_FAILED if report.fails(threshold) else EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``model`` command."""
    parser = subparsers.add_parser("model", help="sign, verify, scan and attest model artifacts")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    sign = actions.add_parser("sign", help="sign a model directory (OpenSSF model-signing)")
    sign.add_argument("directory", help="the model directory")
    sign.add_argument("--key", required=True, help="PEM private key (elliptic curve)")
    sign.add_argument("--certificate", help="signing certificate (PEM) for certificate signing")
    sign.add_argument(
        "--chain", action="append", default=[], help="issuer certificates (PEM); repeatable"
    )
    sign.add_argument("--signature", help=f"bundle path (default: DIR/{DEFAULT_SIGNATURE_NAME})")
    sign.add_argument(
        "--shard-size", type=int, default=None, help="hash in shards of this many bytes"
    )
    sign.add_argument("--progress", action="store_true", default=None, help="show a progress bar")
    sign.set_defaults(handler=_run_sign)

    verify = actions.add_parser("verify", help="verify a model directory against its signature")
    verify.add_argument("directory", help="the model directory")
    trust = verify.add_mutually_exclusive_group(required=True)
    trust.add_argument("--key", action="append", help="PEM public key; repeatable (any matches)")
    trust.add_argument("--policy", help="a policy YAML whose spec.models.signers are trusted")
    trust.add_argument(
        "--certificate-chain", action="append", help="root/intermediate certificates (PEM)"
    )
    verify.add_argument(
        "--certificate-subject",
        help="with --certificate-chain: the signing certificate must name this subject "
        "(RFC 4514 DN or a subject alternative name), not just any certificate of that CA",
    )
    verify.add_argument("--digest", help="the manifest digest the model must have (sha256:...)")
    verify.add_argument("--signature", help=f"bundle path (default: DIR/{DEFAULT_SIGNATURE_NAME})")
    verify.add_argument("--trust-config", help="sigstore client trust config for keyless signers")
    verify.add_argument("--progress", action="store_true", default=None, help="show a progress bar")
    verify.set_defaults(handler=_run_verify)

    scan = actions.add_parser("scan", help="scan every model file for code execution, offline")
    scan.add_argument("directory", help="the model directory (or one file)")
    scan.add_argument("--output", choices=("table", "json", "sarif"), default="table")
    scan.add_argument(
        "--fail-on", default="high", help="exit 1 at or above: low, medium, high, critical"
    )
    scan.add_argument("--jobs", type=int, default=1, help="files scanned in parallel")
    scan.set_defaults(handler=_run_scan)

    # Training provenance (in-toto, SLSA provenance v1, DSSE): its own module.
    from modelshield.cli import attest

    attest.register(actions)


def main(argv: list[str] | None = None) -> int:
    """``python -m modelshield.cli.model``: the model commands alone, for a fast start."""
    parser = argparse.ArgumentParser(prog="modelshield")
    register(parser.add_subparsers(dest="command", required=True))
    arguments = parser.parse_args(["model", *(sys.argv[1:] if argv is None else argv)])
    exit_code: int = arguments.handler(arguments)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
