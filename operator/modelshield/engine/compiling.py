"""Policies compiled ahead of time into immutable, fast rules.

The reconciler or the webhook's cache compiles a policy once when it changes; evaluation
then touches only tuples, frozensets and precomputed strings.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import typing
from collections.abc import Iterable, Mapping, Sequence

from modelshield.api.v1alpha1 import common, policies, provenance
from modelshield.engine import decisions, modelsigners, selectors

AnyPolicy = policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledAttestation:
    """One attestation requirement with its signers' names and maximum age resolved."""

    name: str
    predicate_type: str
    signer_names: frozenset[str]
    max_age: datetime.timedelta | None
    block_at_or_above: common.Severity | None


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledImages:
    """Image requirements, with the key under which their verification results are cached."""

    allowed_registries: tuple[str, ...]
    require_digest: bool
    mutate_to_digest: bool
    signer_names: frozenset[str]
    attestations: tuple[CompiledAttestation, ...]
    #: Identifies what must be verified (signers and attestations): equal requirements share
    #: verification results, different ones never do.
    key: str
    #: Every field above is compared, so equal blocks mean equal requirements and blocks
    #: can be shared between policies; the source is kept for the verifier only.
    source: policies.ImageRequirements = dataclasses.field(compare=False)

    @property
    def needs_verification(self) -> bool:
        """Whether any fact must be fetched for an image under this requirement."""
        return bool(self.signer_names or self.attestations)


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledModels:
    """Model requirements."""

    signer_names: frozenset[str]
    require_scan: bool
    block_at_or_above: common.Severity
    verify_at_startup: bool
    #: models.provenance, when the policy asks for training provenance.
    provenance: CompiledProvenance | None = None
    #: models.signers by key or keyless identity: a model is this policy's only when the
    #: key or identity that verified is one of these (a name another policy uses is not).
    signers: tuple[modelsigners.CompiledSigner, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledProvenance:
    """Training provenance requirements (hashable, so equal blocks are shared)."""

    required: bool
    builder_names: tuple[str, ...]
    #: trustedBuilders by key or keyless identity (as CompiledModels.signers); a key in a
    #: Secret (namespaced policies only) is trusted by name.
    builders: tuple[modelsigners.CompiledSigner, ...]
    allowed_dataset_sources: tuple[str, ...]
    require_signed_datasets: bool
    dataset_signer_names: tuple[str, ...]
    #: datasetSigners by key or keyless identity (as CompiledModels.signers).
    dataset_signers: tuple[modelsigners.CompiledSigner, ...]
    #: maxAge as written (for messages) and parsed once here.
    max_age: str | None
    max_age_delta: datetime.timedelta | None


def _compile_provenance(
    block: provenance.ProvenanceRequirements | None,
) -> CompiledProvenance | None:
    if block is None:
        return None
    return CompiledProvenance(
        required=block.required,
        builder_names=tuple(sorted(s.name for s in block.trusted_builders)),
        builders=modelsigners.compile_signers(block.trusted_builders),
        allowed_dataset_sources=tuple(block.allowed_dataset_sources),
        require_signed_datasets=block.require_signed_datasets,
        dataset_signer_names=tuple(sorted(s.name for s in block.dataset_signers)),
        dataset_signers=modelsigners.compile_signers(block.dataset_signers),
        max_age=block.max_age,
        max_age_delta=common.parse_duration(block.max_age) if block.max_age else None,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """One policy, ready for evaluation."""

    ref: decisions.PolicyRef
    enforcement: policies.Enforcement
    selector: selectors.Selector
    namespace_selector: selectors.Selector | None
    images: CompiledImages | None
    models: CompiledModels | None
    runtime: policies.RuntimeRequirements | None
    source: AnyPolicy


def requirement_key(requirement: policies.ImageRequirements) -> str:
    """A stable digest of what verification of an image depends on."""
    relevant = {
        "signers": [signer.model_dump(mode="json") for signer in requirement.signers],
        "attestations": [
            {
                "predicateType": a.predicate_type,
                "signers": [s.model_dump(mode="json") for s in a.signers],
            }
            for a in requirement.attestations
        ],
    }
    encoded = json.dumps(relevant, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def _compile_images(requirement: policies.ImageRequirements) -> CompiledImages:
    image_signers = frozenset(signer.name for signer in requirement.signers)
    return CompiledImages(
        allowed_registries=tuple(requirement.allowed_registries),
        require_digest=requirement.require_digest,
        mutate_to_digest=requirement.mutate_to_digest,
        signer_names=image_signers,
        attestations=tuple(
            CompiledAttestation(
                name=attestation.name,
                predicate_type=attestation.predicate_type,
                signer_names=frozenset(s.name for s in attestation.signers) or image_signers,
                max_age=common.parse_duration(attestation.max_age) if attestation.max_age else None,
                block_at_or_above=(
                    attestation.vulnerabilities.block_at_or_above
                    if attestation.vulnerabilities
                    else None
                ),
            )
            for attestation in requirement.attestations
        ),
        key=requirement_key(requirement),
        source=requirement,
    )


def compile_policy(policy: AnyPolicy) -> CompiledPolicy:
    """Compile one validated policy."""
    spec = policy.spec
    namespace_selector = (
        selectors.compile_selector(spec.namespace_selector)
        if isinstance(spec, policies.ClusterModelSecurityPolicySpec)
        else None
    )
    models = spec.models
    return CompiledPolicy(
        ref=decisions.PolicyRef(
            kind=policy.kind,
            namespace=policy.metadata.namespace if namespace_selector is None else "",
            name=policy.metadata.name,
        ),
        enforcement=spec.enforcement,
        selector=selectors.compile_selector(spec.selector),
        namespace_selector=namespace_selector,
        images=_compile_images(spec.images) if spec.images else None,
        models=(
            CompiledModels(
                signer_names=frozenset(signer.name for signer in models.signers),
                require_scan=models.require_scan,
                block_at_or_above=models.block_findings_at_or_above,
                verify_at_startup=models.verify_at_startup,
                provenance=_compile_provenance(models.provenance),
                signers=modelsigners.compile_signers(models.signers),
            )
            if models
            else None
        ),
        runtime=spec.runtime,
        source=policy,
    )


@dataclasses.dataclass(frozen=True)
class PolicySet:
    """Every compiled policy, indexed so that a workload meets only those of its namespace."""

    namespaced: Mapping[str, tuple[CompiledPolicy, ...]]
    cluster: tuple[CompiledPolicy, ...]

    def governing(
        self, namespace: str, labels: Mapping[str, str], namespace_labels: Mapping[str, str]
    ) -> tuple[CompiledPolicy, ...]:
        """The policies whose selectors pick a workload with these labels in this namespace."""
        found = [p for p in self.namespaced.get(namespace, ()) if p.selector.matches(labels)]
        for policy in self.cluster:
            assert policy.namespace_selector is not None
            if policy.namespace_selector.matches(namespace_labels) and policy.selector.matches(
                labels
            ):
                found.append(policy)
        return tuple(found)

    def governing_any(
        self,
        namespace: str,
        label_sets: Sequence[Mapping[str, str]],
        namespace_labels: Mapping[str, str],
    ) -> tuple[CompiledPolicy, ...]:
        """The policies that pick any of the label sets (an InferenceService's components
        run pods with different labels): each policy once, in the order first picked."""
        if len(label_sets) == 1:
            return self.governing(namespace, label_sets[0], namespace_labels)
        found: dict[int, CompiledPolicy] = {}
        for labels in label_sets:
            for policy in self.governing(namespace, labels, namespace_labels):
                found.setdefault(id(policy), policy)
        return tuple(found.values())

    def governing_cluster_wide(
        self, label_sets: Sequence[Mapping[str, str]]
    ) -> tuple[CompiledPolicy, ...]:
        """The cluster policies that pick any label set whatever their namespaceSelector:
        for cluster-scoped objects (a ClusterServingRuntime runs in every namespace)."""
        return tuple(
            policy
            for policy in self.cluster
            if any(policy.selector.matches(labels) for labels in label_sets)
        )

    def could_govern(self, namespace: str) -> bool:
        """Cheap pre-check: whether any policy could apply in the namespace at all."""
        return bool(self.cluster) or namespace in self.namespaced

    def __len__(self) -> int:
        return len(self.cluster) + sum(len(group) for group in self.namespaced.values())


def _interned(compiled: CompiledPolicy, seen: dict[object, object]) -> CompiledPolicy:
    """Share one object between equal requirement blocks of different policies.

    Evaluation memoizes checks by block identity, so a workload governed by several
    policies that ask the same thing is checked once per distinct block.
    """
    return dataclasses.replace(
        compiled,
        images=_intern(seen, compiled.images),
        models=_intern(seen, compiled.models),
        runtime=_intern(seen, compiled.runtime),
    )


_Block = typing.TypeVar("_Block")


def _intern(seen: dict[object, object], block: _Block) -> _Block:
    return typing.cast(_Block, seen.setdefault(block, block))


def compile_policies(policies_: Iterable[AnyPolicy]) -> PolicySet:
    """Compile and index a collection of policies."""
    namespaced: dict[str, list[CompiledPolicy]] = {}
    cluster: list[CompiledPolicy] = []
    seen: dict[object, object] = {}
    for policy in policies_:
        compiled = _interned(compile_policy(policy), seen)
        if compiled.namespace_selector is None:
            namespaced.setdefault(policy.metadata.namespace, []).append(compiled)
        else:
            cluster.append(compiled)
    return PolicySet(
        namespaced={namespace: tuple(group) for namespace, group in namespaced.items()},
        cluster=tuple(cluster),
    )


EMPTY = PolicySet(namespaced={}, cluster=())
