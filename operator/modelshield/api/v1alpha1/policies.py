"""ModelSecurityPolicy and ClusterModelSecurityPolicy: what a model deployment must prove."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import pydantic

from modelshield.api.v1alpha1 import apiprotection, common, syntax
from modelshield.api.v1alpha1.common import ApiModel, Duration, Severity
from modelshield.api.v1alpha1.provenance import ProvenanceRequirements

# Re-exported: the signer types lived here first, and callers name them policies.Signer.
from modelshield.api.v1alpha1.signers import KeylessIdentity as KeylessIdentity
from modelshield.api.v1alpha1.signers import Signer as Signer


class Enforcement(StrEnum):
    """What happens to a workload that violates the policy."""

    ENFORCE = "Enforce"
    AUDIT = "Audit"


class VulnerabilityConditions(ApiModel):
    """Conditions on a vulnerability-scan attestation's findings."""

    block_at_or_above: Severity = pydantic.Field(
        default=Severity.HIGH,
        description="The scan must report no vulnerability at or above this severity.",
    )


class AttestationRequirement(ApiModel):
    """A signed in-toto attestation the image must carry."""

    name: str = pydantic.Field(
        description="A name for this requirement, used in messages and reports.",
        min_length=1,
        max_length=63,
        pattern=common.DNS_LABEL_PATTERN,
    )
    predicate_type: str = pydantic.Field(
        description=(
            "The in-toto predicateType required, e.g. https://cosign.sigstore.dev/attestation/vuln/v1."
        ),
        min_length=1,
        max_length=1024,
    )
    signers: list[Signer] = pydantic.Field(
        default_factory=list,
        description="Who may sign the attestation; empty means the image's signers.",
        max_length=16,
    )
    max_age: Duration | None = pydantic.Field(
        default=None,
        description="The attestation must be younger than this, e.g. 168h or 7d.",
    )
    vulnerabilities: VulnerabilityConditions | None = pydantic.Field(
        default=None,
        description="For a vulnerability-scan predicate: which findings block.",
    )


RegistryPrefix = Annotated[
    str,
    pydantic.Field(
        min_length=1,
        max_length=512,
        # host[:port] then path: no scheme, space, tag or digest, which could never match.
        pattern=r"^[a-zA-Z0-9][-a-zA-Z0-9._]*(:[0-9]+)?(/[^\s@:/][^\s@:]*)?/?$",
    ),
]


class ImageRequirements(ApiModel):
    """Requirements on every container image of a governed workload."""

    allowed_registries: list[RegistryPrefix] = pydantic.Field(
        default_factory=list,
        description=(
            "Where images may come from, as path prefixes of the image reference: "
            "registry.example.com/ml/ (or registry.example.com/ml) admits every image "
            "under registry.example.com/ml/ and, without the slash, that repository "
            "itself; it never admits registry.example.com/ml-evil/. A bare host admits "
            "only images on that host and port. Docker Hub images are matched in their "
            "full form (docker.io/library/nginx). Empty allows any registry."
        ),
        max_length=64,
    )
    require_digest: bool = pydantic.Field(
        default=False,
        description="Images must be pinned by digest (name@sha256:...), not only by tag.",
    )
    mutate_to_digest: bool = pydantic.Field(
        default=False,
        description=(
            "The mutating webhook rewrites tags to the digest that was verified, so the "
            "image that runs is the image that was checked."
        ),
    )
    signers: list[Signer] = pydantic.Field(
        default_factory=list,
        description="Images must carry a signature by any one of these signers (key rotation: list both).",
        max_length=16,
    )
    attestations: list[AttestationRequirement] = pydantic.Field(
        default_factory=list,
        description="Signed attestations each image must carry, e.g. a recent vulnerability scan.",
        max_length=16,
    )


class ModelRequirements(ApiModel):
    """Requirements on the model artifact a governed workload serves."""

    signers: list[Signer] = pydantic.Field(
        default_factory=list,
        description="The model must be signed (OpenSSF model-signing format) by any one of these.",
        max_length=16,
    )
    require_scan: bool = pydantic.Field(
        default=True,
        description="The model must have been scanned by modelshield for unsafe code.",
    )
    block_findings_at_or_above: Severity = pydantic.Field(
        default=Severity.HIGH,
        description="Scan findings at or above this severity make the model unusable.",
    )
    verify_at_startup: bool = pydantic.Field(
        default=False,
        description=(
            "Re-verify the model files when each Pod starts: Pods this policy governs must "
            "carry modelshield's init container modelshield-verify-model, which the mutating "
            "webhook injects when they are created (templates are left unchanged); a Pod "
            "without exactly that container is denied (ModelStartupVerificationMissing; a "
            "warning under Audit). That container is exempt from images requirements, not runtime ones."
        ),
    )
    provenance: ProvenanceRequirements | None = pydantic.Field(
        default=None,
        description=(
            "Signed training provenance (in-toto statement with a SLSA provenance v1 "
            "predicate, DSSE-signed) bound to the model's verified digest: trusted builders, "
            "allowed dataset sources, signed datasets, maximum age."
        ),
    )


class PortRule(ApiModel):
    """A port, with its protocol."""

    port: int = pydantic.Field(description="Port number.", ge=1, le=65535)
    protocol: str = pydantic.Field(
        default="TCP", description="TCP, UDP or SCTP.", pattern=r"^(TCP|UDP|SCTP)$"
    )


#: A network address in canonical CIDR notation: the API server checks the syntax and,
#: for IPv4, that the host bits are zero; pydantic (and so the webhook and
#: ``modelshield test``) checks both families completely.
Cidr = Annotated[
    str,
    pydantic.AfterValidator(syntax.canonical_cidr),
    pydantic.WithJsonSchema(
        {
            "type": "string",
            "maxLength": 64,
            "pattern": syntax.CIDR_PATTERN,
            "x-kubernetes-validations": [
                {
                    "rule": syntax.IPV4_HOST_BITS_ZERO_RULE,
                    "message": syntax.IPV4_HOST_BITS_MESSAGE,
                }
            ],
        }
    ),
]


class Peer(ApiModel):
    """A network peer: pods, namespaces or an IP block."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.cidr) != (has(self.namespaceSelector) || has(self.podSelector))",
                    "message": "set cidr, or namespaceSelector and/or podSelector",
                }
            ]
        }
    )

    namespace_selector: common.LabelSelector | None = pydantic.Field(
        default=None,
        description="Namespaces whose pods are the peer; empty selects all namespaces.",
    )
    pod_selector: common.LabelSelector | None = pydantic.Field(
        default=None,
        description="Pods that are the peer (in the workload's namespace unless namespaceSelector is set).",
    )
    cidr: Cidr | None = pydantic.Field(
        default=None,
        description=(
            "An IP block in canonical CIDR notation, host bits zero, e.g. 10.0.0.0/8 or "
            "fd00::/8 (not 10.1.2.3/8)."
        ),
    )

    @pydantic.model_validator(mode="after")
    def _one_kind(self) -> Peer:
        has_selector = self.namespace_selector is not None or self.pod_selector is not None
        if (self.cidr is not None) == has_selector:
            raise ValueError("set cidr, or namespaceSelector and/or podSelector")
        return self


class TrafficRule(ApiModel):
    """Traffic allowed to or from some peers on some ports."""

    peers: list[Peer] = pydantic.Field(
        description="The peers this rule allows.", min_length=1, max_length=32
    )
    ports: list[PortRule] = pydantic.Field(
        default_factory=list, description="Ports allowed; empty allows all ports.", max_length=32
    )


class NetworkRequirements(ApiModel):
    """Network isolation: everything not allowed here is denied by an operator-owned NetworkPolicy.

    Only under Enforce; an Audit policy's network block restricts no traffic (its
    NetworkEnforced condition and the namespace's PolicyReport say what Enforce would
    narrow). Several Enforce policies: the intersection of what each allows. A NetworkPolicy
    that cannot be built or written becomes deny-all (the policy turns Degraded,
    NetworkPolicyFailedClosed). Namespaces outside modelshield's scope (kube-system,
    kube-public, kube-node-lease, modelshield's own, opted out) are never touched.
    """

    ingress: list[TrafficRule] = pydantic.Field(
        default_factory=list,
        description=(
            "Sources allowed to reach the model server. With an api block clients call the "
            "inference guard instead: these sources, on rules that admit the model's port, "
            "may reach the guard, and the model admits the guard alone."
        ),
        max_length=32,
    )
    egress: list[TrafficRule] = pydantic.Field(
        default_factory=list, description="Destinations the model server may reach.", max_length=32
    )
    allow_dns: bool = pydantic.Field(
        alias="allowDNS",
        default=True,
        description=(
            "Allow DNS lookups (UDP and TCP 53) to kube-dns. When several Enforce policies "
            "govern a workload, DNS (like any traffic) is allowed only if each allows it, "
            "here or through its own egress rules."
        ),
    )


class DriftStatistic(StrEnum):
    """The statistic that compares live inputs with the reference profile."""

    PSI = "PSI"
    KOLMOGOROV_SMIRNOV = "KolmogorovSmirnov"
    CHI_SQUARE = "ChiSquare"
    JENSEN_SHANNON = "JensenShannon"
    WASSERSTEIN = "Wasserstein"


class DriftMonitoring(ApiModel):
    """A drift monitor deployed next to the model server."""

    reference_profile: common.KeyReference = pydantic.Field(
        description="The ConfigMap key holding the reference profile (modelshield drift profile output)."
    )
    features: list[str] = pydantic.Field(
        default_factory=list,
        description="Features to watch; empty watches every feature of the profile.",
        max_length=512,
    )
    statistic: DriftStatistic = pydantic.Field(
        default=DriftStatistic.PSI, description="The drift statistic."
    )
    threshold: float = pydantic.Field(
        default=0.2,
        description="Drift is raised when the statistic exceeds this value "
        "(not used when falseAlarmRate is set).",
        gt=0,
    )
    false_alarm_rate: float | None = pydantic.Field(
        default=None,
        description="Declared false-alarm rate per window for the whole model (e.g. 0.01): "
        "each feature's threshold is calibrated on the reference profile, including its "
        "sampling noise, so that a window of undrifted traffic raises an alarm on any "
        "feature with at most this probability (Bonferroni over the watched features). "
        "Recommended; unset, the fixed threshold applies to every feature.",
        gt=0,
        le=0.5,
    )
    window: int = pydantic.Field(
        default=1000, description="Number of rows in each comparison window.", ge=10, le=10_000_000
    )


class MonitoringRequirements(ApiModel):
    """Monitoring deployed next to the model server."""

    drift: DriftMonitoring | None = pydantic.Field(
        default=None, description="Input drift monitoring."
    )


class RuntimeRequirements(ApiModel):
    """Hardening every container of the workload must declare. Each check defaults to on."""

    run_as_non_root: bool = pydantic.Field(
        default=True, description="securityContext.runAsNonRoot must be true (pod or container)."
    )
    read_only_root_filesystem: bool = pydantic.Field(
        default=True, description="securityContext.readOnlyRootFilesystem must be true."
    )
    disallow_privilege_escalation: bool = pydantic.Field(
        default=True, description="securityContext.allowPrivilegeEscalation must be false."
    )
    disallow_privileged: bool = pydantic.Field(
        default=True, description="securityContext.privileged must not be true."
    )
    require_resource_limits: bool = pydantic.Field(
        default=True, description="Every container must set CPU and memory limits."
    )


class PolicyRequirements(ApiModel):
    """The requirement blocks shared by namespaced and cluster policies."""

    enforcement: Enforcement = pydantic.Field(
        default=Enforcement.ENFORCE,
        description=(
            "Enforce denies violating workloads; Audit admits them with warnings and reports, "
            "and its network block restricts no traffic (it reports what Enforce would narrow)."
        ),
    )
    images: ImageRequirements | None = pydantic.Field(
        default=None, description="Requirements on container images."
    )
    models: ModelRequirements | None = pydantic.Field(
        default=None, description="Requirements on the served model artifact."
    )
    network: NetworkRequirements | None = pydantic.Field(
        default=None,
        description=(
            "Network isolation enforced by an operator-owned NetworkPolicy (under Enforce "
            "only; deny-all when it cannot be built or written)."
        ),
    )
    monitoring: MonitoringRequirements | None = pydantic.Field(
        default=None, description="Monitoring deployed next to the model server."
    )
    runtime: RuntimeRequirements | None = pydantic.Field(
        default=None, description="Container hardening requirements."
    )
    api: apiprotection.ApiRequirements | None = pydantic.Field(
        default=None,
        description=(
            "API protection enforced by modelshield's inference guard in front of the model "
            "server: authentication, authorization, rate limits and request checks. Every "
            "governing policy's block applies, so a namespaced policy can only tighten the "
            "cluster baseline's."
        ),
    )


class ModelSecurityPolicySpec(PolicyRequirements):
    """Which workloads in this namespace the policy governs, and what they must prove."""

    selector: common.LabelSelector = pydantic.Field(
        description="Label selector over the pod-template labels of inference workloads in this namespace."
    )


class ClusterModelSecurityPolicySpec(PolicyRequirements):
    """The platform baseline: governs workloads in every namespace its namespaceSelector selects."""

    namespace_selector: common.LabelSelector = pydantic.Field(
        default_factory=common.LabelSelector,
        description="Namespaces the policy applies in; empty selects every namespace.",
    )
    selector: common.LabelSelector = pydantic.Field(
        description="Label selector over the pod-template labels of inference workloads."
    )


class PolicyStatus(ApiModel):
    """What the operator observed; written only by the operator."""

    observed_generation: int = pydantic.Field(
        default=0, ge=0, description="The .metadata.generation this status describes."
    )
    conditions: list[common.Condition] = pydantic.Field(
        default_factory=list,
        description=(
            "Ready, Degraded and Compliant (Unknown while image verifications run); "
            "NetworkEnforced for a policy with a network block (False under Audit, saying "
            "what Enforce would narrow)."
        ),
        max_length=16,
    )
    governed: int = pydantic.Field(default=0, ge=0, description="Workloads the policy governs.")
    compliant: int = pydantic.Field(default=0, ge=0, description="Governed workloads that comply.")
    violating: int = pydantic.Field(default=0, ge=0, description="Governed workloads that violate.")
    pending: int = pydantic.Field(
        default=0,
        ge=0,
        description="Governed workloads whose image verification has not finished yet: "
        "counted neither compliant nor violating until it does.",
    )
    violators: list[str] = pydantic.Field(
        default_factory=list,
        description="The first few violating workloads, as kind/namespace/name.",
        max_length=10,
    )


class ObjectMeta(ApiModel):
    """The part of Kubernetes metadata the engine reads; everything else passes through."""

    model_config = pydantic.ConfigDict(extra="allow")

    name: str = pydantic.Field(default="", description="Object name.")
    namespace: str = pydantic.Field(default="", description="Namespace, for namespaced kinds.")
    generation: int = pydantic.Field(default=0, description="Spec generation.")
    labels: dict[str, str] = pydantic.Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = pydantic.Field(default_factory=dict, description="Annotations.")


class ModelSecurityPolicy(ApiModel):
    """Security requirements for the model deployments that the selector picks in one namespace."""

    api_version: str = pydantic.Field(
        default="modelshield.dev/v1alpha1", description="API version."
    )
    kind: str = pydantic.Field(default="ModelSecurityPolicy", description="Kind.")
    metadata: ObjectMeta = pydantic.Field(default_factory=ObjectMeta, description="Metadata.")
    spec: ModelSecurityPolicySpec = pydantic.Field(description="Desired requirements.")
    status: PolicyStatus | None = pydantic.Field(default=None, description="Observed state.")


class ClusterModelSecurityPolicy(ApiModel):
    """The platform team's baseline for model deployments across namespaces."""

    api_version: str = pydantic.Field(
        default="modelshield.dev/v1alpha1", description="API version."
    )
    kind: str = pydantic.Field(default="ClusterModelSecurityPolicy", description="Kind.")
    metadata: ObjectMeta = pydantic.Field(default_factory=ObjectMeta, description="Metadata.")
    spec: ClusterModelSecurityPolicySpec = pydantic.Field(description="Desired requirements.")
    status: PolicyStatus | None = pydantic.Field(default=None, description="Observed state.")
