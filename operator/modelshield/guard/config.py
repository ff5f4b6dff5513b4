"""The guard's configuration file, as the operator writes it (YAML or JSON).

::

    upstream: http://fraud-detector.ml-prod.svc:8080   # the model server
    port: 8443                 # where clients call (the guard's Service)
    managementPort: 9090       # /healthz, /readyz, /metrics: never the clients' port
    replicas: 2                # each replica enforces 1/replicas of every rate limit
    apiKeysDir: /etc/modelshield/api-keys   # one mounted Secret per directory
    apiServer: {url: ..., caFile: ..., tokenFile: ...}   # default: in-cluster, as client-go
    upstreamTimeoutSeconds: 30
    driftMonitor: http://ms-drift-deploy-fraud.ml-prod.svc.cluster.local:8080/   # optional
    policies:                  # the api block of each governing policy
      - {kind: ModelSecurityPolicy, namespace: ml-prod, name: fraud-api,
         enforcement: Enforce, api: {...}}
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pydantic
import yaml

from modelshield.api.v1alpha1 import apiprotection, policies
from modelshield.api.v1alpha1.common import ApiModel
from modelshield.engine import apiprotection as engine_api
from modelshield.engine import decisions

IN_CLUSTER_CA = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
IN_CLUSTER_TOKEN = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class GuardedPolicy(ApiModel):
    """One governing policy's api block, with the policy it comes from."""

    kind: str = pydantic.Field(description="ModelSecurityPolicy or ClusterModelSecurityPolicy.")
    namespace: str = pydantic.Field(default="", description="Empty for a cluster policy.")
    name: str = pydantic.Field(description="The policy's name.")
    enforcement: policies.Enforcement = pydantic.Field(description="Enforce or Audit.")
    api: apiprotection.ApiRequirements = pydantic.Field(description="The policy's api block.")


class ReferenceFeature(ApiModel):
    """One feature of the reference profile."""

    name: str = pydantic.Field(description="The feature's name.")
    type: str = pydantic.Field(description="numeric or categorical.")


class WorkloadReference(ApiModel):
    """The guarded workload, which probing Events are about."""

    api_version: str = pydantic.Field(default="", description="apiVersion of the workload.")
    kind: str = pydantic.Field(min_length=1, description="Kind of the workload.")
    namespace: str = pydantic.Field(min_length=1, description="Namespace of the workload.")
    name: str = pydantic.Field(min_length=1, description="Name of the workload.")
    uid: str = pydantic.Field(default="", description="UID of the workload.")


def in_cluster_url() -> str:
    """The API server as a pod reaches it: the address kubelet puts in every pod's
    environment (what client-go's in-cluster configuration uses), so no cluster DNS is
    needed; the Service's DNS name when those variables are not set."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "") or "443"
    if not host:
        return "https://kubernetes.default.svc"
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class ApiServerSettings(ApiModel):
    """Where TokenReviews go."""

    url: str = pydantic.Field(default_factory=in_cluster_url, description="API server.")
    ca_file: pathlib.Path | None = pydantic.Field(
        default=IN_CLUSTER_CA, description="CA bundle of the API server."
    )
    token_file: pathlib.Path = pydantic.Field(
        default=IN_CLUSTER_TOKEN, description="The guard's own ServiceAccount token."
    )


class GuardConfig(ApiModel):
    """Everything one guard process needs."""

    upstream: str = pydantic.Field(description="Base URL of the model server.")
    host: str = pydantic.Field(default="0.0.0.0", description="Address to listen on.")  # noqa: S104
    port: int = pydantic.Field(default=8443, ge=1, le=65535, description="Clients' port.")
    management_port: int = pydantic.Field(
        default=9090, ge=1, le=65535, description="Health and metrics port."
    )
    replicas: int = pydantic.Field(default=1, ge=1, description="Guard replicas sharing limits.")
    api_keys_dir: pathlib.Path = pydantic.Field(
        default=pathlib.Path("/etc/modelshield/api-keys"),
        description="One mounted Secret per sub-directory.",
    )
    api_server: ApiServerSettings = pydantic.Field(
        default_factory=ApiServerSettings, description="TokenReview target."
    )
    upstream_timeout_seconds: float = pydantic.Field(
        default=30.0, gt=0, le=600, description="Longest wait for the model server."
    )
    reference_features: list[ReferenceFeature] | None = pydantic.Field(
        default=None,
        description="The reference profile's features, in order (for matchReferenceProfile).",
    )
    outlier_model: dict[str, Any] | None = pydantic.Field(
        default=None,
        description=(
            "The reference profile's outlier model (its 'outliers' key), for the api "
            "blocks' outliers and probing defences."
        ),
    )
    workload: WorkloadReference | None = pydantic.Field(
        default=None,
        description="The guarded workload: probing alarms become Events on it (none if unset).",
    )
    drift_monitor: str | None = pydantic.Field(
        default=None, description="The drift monitor's URL: forwarded bodies are sent there too."
    )
    policies: list[GuardedPolicy] = pydantic.Field(
        min_length=1, description="The governing policies' api blocks."
    )

    def rules(self) -> engine_api.GuardRules:
        """The combined rules, each limit divided among the replicas."""
        return engine_api.combine(
            engine_api.compile_api(
                decisions.PolicyRef(p.kind, p.namespace, p.name),
                p.enforcement,
                p.api,
                replicas=self.replicas,
            )
            for p in self.policies
        )


def load(path: pathlib.Path) -> GuardConfig:
    """Read and validate a configuration file (ValueError names the field)."""
    document = yaml.safe_load(path.read_text())
    try:
        return GuardConfig.model_validate(document)
    except pydantic.ValidationError as error:
        raise ValueError(f"{path}: {error}") from error
