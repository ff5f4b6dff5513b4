"""``modelshield verify-image IMAGE --policy FILE``: check one image as admission would, and say why.

Every ModelSecurityPolicy or ClusterModelSecurityPolicy in the files that has an
``images`` block is applied to IMAGE: the image is verified against the registry
(signatures, attestations) and the engine judges the facts, exactly as the admission
webhook does. What was found and each violation are printed.

Exit codes: 0 the image passes every policy; 1 it fails at least one; 2 the command
could not run (unreadable policy, no image requirements, bad arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import pathlib
import sys
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.cli import manifests
from modelshield.engine import compiling, facts, imagechecks, workloads
from modelshield.supplychain.images import verifiersettings

_DEFAULT_DEADLINE = 20.0


def _load_policies(
    paths: list[pathlib.Path],
) -> list[policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy]:
    found: list[policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy] = []
    for document in manifests.read_documents(paths):
        if (
            not manifests.is_modelshield_kind(document)
            or document.body.get("kind") == "ModelArtifact"
        ):
            continue
        policy = manifests.parse_custom_resource(document)
        if (
            isinstance(policy, (policies.ModelSecurityPolicy, policies.ClusterModelSecurityPolicy))
            and policy.spec.images is not None
        ):
            found.append(policy)
    return found


def _describe(image: facts.ImageFacts) -> list[str]:
    signature = image.signature
    lines = [
        f"  digest:       {image.digest or '(not resolved)'}",
        f"  signature:    {signature.outcome.value}"
        + (f" by {signature.signer}" if signature.signer else "")
        + (f" ({signature.detail})" if signature.detail else ""),
    ]
    if image.attestation_failure is not None:
        failure = image.attestation_failure
        lines.append(
            f"  attestations: could not be read: {failure.outcome.value} ({failure.detail})"
        )
    for attestation in image.attestations:
        vulnerabilities = ""
        if attestation.vulnerabilities is not None:
            counts = ", ".join(
                f"{count} {severity.value}"
                for severity, count in sorted(
                    attestation.vulnerabilities.items(), key=lambda item: -item[0].rank
                )
            )
            vulnerabilities = f"; findings: {counts}"
        lines.append(
            f"  attestation:  {attestation.predicate_type} signed by {attestation.signer}, "
            f"issued {attestation.issued_at.isoformat()}{vulnerabilities}"
        )
    if not image.attestations and image.attestation_failure is None:
        lines.append("  attestations: none verified")
    return lines


async def _verify_all(
    arguments: argparse.Namespace,
    selected: list[policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy],
    pull_secrets: list[dict[str, Any]],
) -> int:
    # Pull-secret credentials (--docker-config) are passed per verification, as a pod's are.
    verifier = verifiersettings.build_verifier(
        verifiersettings.VerifierSettings(
            insecure_registries=frozenset(arguments.insecure_registry or ()),
            trust_root=arguments.trust_root,
        )
    )
    now = datetime.datetime.now(datetime.UTC)
    failed = False
    try:
        for policy in selected:
            compiled = compiling.compile_policy(policy).images
            assert compiled is not None
            image = await verifier.verify(
                arguments.image,
                compiled.source,
                compiled.key,
                deadline_seconds=arguments.deadline,
                pull_secrets=pull_secrets,
                namespace=policy.metadata.namespace,
            )
            container = workloads.Container(
                path="image",
                field="containers",
                name="image",
                image=arguments.image,
                spec={},
                pod=workloads.PodSpec(path="", spec={}),
            )
            source = facts.StaticFacts(images={arguments.image: image})
            findings = list(imagechecks.check_container(container, compiled, source, now))
            where = f"{policy.kind} {policy.metadata.namespace + '/' if policy.metadata.namespace else ''}{policy.metadata.name}"
            verdict = "FAIL" if findings else "PASS"
            print(f"{verdict} {arguments.image} against {where}")
            for line in _describe(image):
                print(line)
            for code, _, message in findings:
                print(f"  violation:    {code.value}: {message}")
            failed = failed or bool(findings)
    finally:
        await verifier.close()
    return 1 if failed else 0


def _handle(arguments: argparse.Namespace) -> int:
    try:
        selected = _load_policies([pathlib.Path(p) for p in arguments.policy])
    except manifests.ManifestError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not selected:
        print(
            "error: no ModelSecurityPolicy or ClusterModelSecurityPolicy with an images block",
            file=sys.stderr,
        )
        return 2
    pull_secrets: list[dict[str, Any]] = []
    for path in arguments.docker_config or ():
        try:
            pull_secrets.append(json.loads(pathlib.Path(path).read_text()))
        except (OSError, ValueError) as error:
            print(f"error: {path}: not a readable docker config: {error}", file=sys.stderr)
            return 2
    return asyncio.run(_verify_all(arguments, selected, pull_secrets))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``verify-image`` command."""
    parser = subparsers.add_parser(
        "verify-image",
        help="verify an image's signatures and attestations against policies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "image", help="image reference, e.g. registry.example.com/ml/server@sha256:..."
    )
    parser.add_argument(
        "--policy",
        action="append",
        required=True,
        help="policy YAML file or directory (repeatable)",
    )
    parser.add_argument(
        "--insecure-registry",
        action="append",
        metavar="HOST:PORT",
        help="reach this registry over plain HTTP (repeatable; for local test registries)",
    )
    parser.add_argument(
        "--docker-config",
        action="append",
        metavar="FILE",
        help="docker config JSON with registry credentials",
    )
    parser.add_argument(
        "--trust-root", metavar="FILE", help="sigstore trusted_root.json for keyless signers"
    )
    parser.add_argument(
        "--deadline", type=float, default=_DEFAULT_DEADLINE, help="seconds allowed for verification"
    )
    parser.set_defaults(handler=_handle)
