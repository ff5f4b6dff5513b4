"""The kinds modelshield serves: names, scope, printer columns, and their models."""

from __future__ import annotations

import dataclasses

import pydantic

from modelshield.api.v1alpha1 import GROUP, VERSION, artifacts, policies


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    """A column ``kubectl get`` shows."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclasses.dataclass(frozen=True)
class Resource:
    """A custom resource kind and what its CRD needs to say about it."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    model: type[pydantic.BaseModel]
    printer_columns: tuple[PrinterColumn, ...]
    description: str
    categories: tuple[str, ...] = ("modelshield",)

    @property
    def crd_name(self) -> str:
        """The CustomResourceDefinition's metadata.name."""
        return f"{self.plural}.{GROUP}"

    @property
    def group(self) -> str:
        """The API group."""
        return GROUP

    @property
    def version(self) -> str:
        """The served API version."""
        return VERSION


def _ready_column() -> PrinterColumn:
    return PrinterColumn(
        name="Ready",
        json_path='.status.conditions[?(@.type=="Ready")].status',
        description="Whether the object is ready.",
    )


_POLICY_COLUMNS = (
    PrinterColumn("Enforcement", ".spec.enforcement", description="Enforce or Audit."),
    _ready_column(),
    PrinterColumn("Governed", ".status.governed", "integer", "Workloads governed."),
    PrinterColumn("Violating", ".status.violating", "integer", "Workloads violating."),
    PrinterColumn(
        "Pending", ".status.pending", "integer", "Workloads awaiting image verification."
    ),
    PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
)

MODEL_SECURITY_POLICY = Resource(
    kind="ModelSecurityPolicy",
    plural="modelsecuritypolicies",
    singular="modelsecuritypolicy",
    short_names=("msp",),
    namespaced=True,
    model=policies.ModelSecurityPolicy,
    printer_columns=_POLICY_COLUMNS,
    description=policies.ModelSecurityPolicy.__doc__ or "",
)

CLUSTER_MODEL_SECURITY_POLICY = Resource(
    kind="ClusterModelSecurityPolicy",
    plural="clustermodelsecuritypolicies",
    singular="clustermodelsecuritypolicy",
    short_names=("cmsp",),
    namespaced=False,
    model=policies.ClusterModelSecurityPolicy,
    printer_columns=_POLICY_COLUMNS,
    description=policies.ClusterModelSecurityPolicy.__doc__ or "",
)

MODEL_ARTIFACT = Resource(
    kind="ModelArtifact",
    plural="modelartifacts",
    singular="modelartifact",
    short_names=("mart",),
    namespaced=True,
    model=artifacts.ModelArtifact,
    printer_columns=(
        PrinterColumn("URI", ".spec.uri", description="Where the model lives."),
        PrinterColumn(
            "Verified",
            '.status.conditions[?(@.type=="Verified")].status',
            description="Signature verified.",
        ),
        PrinterColumn(
            "Scanned",
            '.status.conditions[?(@.type=="Scanned")].status',
            description="Scanned clean.",
        ),
        _ready_column(),
        PrinterColumn(
            "Serving",
            ".status.servedBy.total",
            "integer",
            description="Workloads serving it (for a Dataset, serving a model trained on it).",
        ),
        PrinterColumn("Signer", ".status.signer", description="Signer that matched.", priority=1),
        PrinterColumn("Type", ".spec.type", description="Model or Dataset.", priority=1),
        PrinterColumn(
            "Provenance",
            '.status.conditions[?(@.type=="Provenance")].status',
            description="Training provenance verified (when a policy asks for it).",
            priority=1,
        ),
        PrinterColumn(
            "Builder",
            ".status.provenance.builder",
            description="Trusted builder whose provenance signature verified.",
            priority=1,
        ),
        PrinterColumn(
            "Commit",
            ".status.provenance.commit",
            description="Code commit the model was trained from.",
            priority=1,
        ),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
    description=artifacts.ModelArtifact.__doc__ or "",
)

ALL = (MODEL_SECURITY_POLICY, CLUSTER_MODEL_SECURITY_POLICY, MODEL_ARTIFACT)
BY_KIND = {resource.kind: resource for resource in ALL}
