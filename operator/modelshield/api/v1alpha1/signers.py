"""Signers: who may sign an image, a model, an attestation or a training provenance.

One definition shared by every signer list of the policy (``images.signers``,
``models.signers``, attestation signers, ``models.provenance.trustedBuilders`` and
``models.provenance.datasetSigners``), so that each list accepts the same three sources.
"""

from __future__ import annotations

import re

import pydantic

from modelshield.api.v1alpha1 import common
from modelshield.api.v1alpha1.common import ApiModel

_EXACTLY_ONE_SIGNER_SOURCE = (
    "[has(self.publicKey), has(self.secretRef), has(self.keyless)].filter(x, x).size() == 1"
)


class KeylessIdentity(ApiModel):
    """A sigstore keyless signer: a certificate issued for an OIDC identity."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.subject) != has(self.subjectRegExp)",
                    "message": "set exactly one of subject and subjectRegExp",
                }
            ]
        }
    )

    issuer: str = pydantic.Field(
        description="OIDC issuer URL the certificate must carry, e.g. https://token.actions.githubusercontent.com.",
        min_length=1,
        max_length=1024,
    )
    subject: str | None = pydantic.Field(
        default=None,
        description="Exact identity (SAN) the certificate must carry, e.g. a workflow URL or e-mail.",
        max_length=1024,
    )
    subject_reg_exp: str | None = pydantic.Field(
        default=None,
        description="Regular expression (RE2 subset) the whole identity must match; alternative to subject.",
        max_length=1024,
    )

    @pydantic.model_validator(mode="after")
    def _one_subject(self) -> KeylessIdentity:
        if (self.subject is None) == (self.subject_reg_exp is None):
            raise ValueError("set exactly one of subject and subjectRegExp")
        if self.subject_reg_exp is not None:
            try:
                re.compile(self.subject_reg_exp)
            except re.error as error:
                raise ValueError(f"subjectRegExp does not compile: {error}") from error
        return self


class Signer(ApiModel):
    """A trusted signer: a public key (inline or from a Secret) or a keyless identity."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _EXACTLY_ONE_SIGNER_SOURCE,
                    "message": "set exactly one of publicKey, secretRef and keyless",
                }
            ]
        }
    )

    name: str = pydantic.Field(
        description="A name for this signer, reported when it matches (e.g. release-2026).",
        min_length=1,
        max_length=63,
        pattern=common.DNS_LABEL_PATTERN,
    )
    public_key: str | None = pydantic.Field(
        default=None,
        description="PEM-encoded public key (ECDSA P-256/P-384, Ed25519 or RSA).",
        max_length=16384,
        pattern=r"^\s*-----BEGIN PUBLIC KEY-----",
    )
    secret_ref: common.KeyReference | None = pydantic.Field(
        default=None,
        description="A key of a Secret in the policy's namespace that holds the PEM public key.",
    )
    keyless: KeylessIdentity | None = pydantic.Field(
        default=None,
        description="A sigstore keyless identity, verified offline against the configured trust root.",
    )

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> Signer:
        sources = [self.public_key, self.secret_ref, self.keyless]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("set exactly one of publicKey, secretRef and keyless")
        return self
