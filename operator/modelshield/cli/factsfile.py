"""The facts file of ``modelshield test``: image verification results recorded for offline review.

In a pull request there is no registry to ask, so the reviewer (or a CI step that ran
``modelshield verify-image``) records what was verified; images it does not list are
"not verified", exactly as in admission.
"""

from __future__ import annotations

import datetime
import pathlib

import pydantic
import yaml

from modelshield.api.v1alpha1.common import ApiModel, Severity
from modelshield.cli import manifests
from modelshield.engine import facts


class SignatureEntry(ApiModel):
    """How the image's signature verified."""

    outcome: facts.Outcome = pydantic.Field(description="Verified, NoSignature, ...")
    signer: str | None = pydantic.Field(
        default=None, description="Name of the signer that matched."
    )
    detail: str = pydantic.Field(default="", description="Free text.")


class AttestationEntry(ApiModel):
    """A verified attestation."""

    predicate_type: str
    signer: str
    issued_at: datetime.datetime
    vulnerabilities: dict[Severity, int] | None = None


class ImageEntry(ApiModel):
    """Everything verified about one image reference."""

    image: str
    digest: str | None = None
    signature: SignatureEntry
    attestations: list[AttestationEntry] = pydantic.Field(default_factory=list)


class FactsFile(ApiModel):
    """The whole facts file."""

    images: list[ImageEntry] = pydantic.Field(default_factory=list)


def load(path: pathlib.Path) -> dict[str, facts.ImageFacts]:
    """Image facts by reference; ManifestError naming the file and field on bad input."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        parsed = FactsFile.model_validate(raw)
    except (OSError, yaml.YAMLError) as error:
        raise manifests.ManifestError(f"{path}: not readable: {error}") from error
    except pydantic.ValidationError as error:
        details = "; ".join(manifests.describe_validation_error(error))
        raise manifests.ManifestError(f"{path}: {details}") from error
    return {
        entry.image: facts.ImageFacts(
            reference=entry.image,
            digest=entry.digest,
            signature=facts.SignatureFact(
                outcome=entry.signature.outcome,
                signer=entry.signature.signer,
                detail=entry.signature.detail,
            ),
            attestations=tuple(
                facts.AttestationFact(
                    predicate_type=a.predicate_type,
                    signer=a.signer,
                    issued_at=a.issued_at,
                    vulnerabilities=a.vulnerabilities,
                )
                for a in entry.attestations
            ),
        )
        for entry in parsed.images
    }
