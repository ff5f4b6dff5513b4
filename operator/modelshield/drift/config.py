"""The drift monitor's configuration: a YAML or JSON file the operator mounts from a ConfigMap.

Keys are camelCase like the API; ``features``, ``statistic``, ``threshold`` and ``window``
carry the values of the policy's ``monitoring.drift`` block unchanged::

    profile: profile.json          # the reference profile; relative to this file
    features: [age, income]        # watched request features; empty = every column
    columns: []                    # the request's columns in order; empty = every profile
                                   # feature not listed in outputs
    outputs: [prediction]          # profile features compared with response events
    statistic: PSI                 # PSI | KolmogorovSmirnov | ChiSquare | JensenShannon | Wasserstein
    threshold: 0.2
    falseAlarmRate: 0.01           # optional: calibrated thresholds instead of `threshold`
    window: 1000                   # rows per tumbling window
    leastExpected: 10              # with falseAlarmRate: adjacent thin bins merged until
                                   # each expects this many rows of a window (0: none)
    categoricalStatistic: JensenShannon  # for categorical features when `statistic`
    categoricalThreshold: 0.1            # is numeric-only (KolmogorovSmirnov, Wasserstein)
    clearRatio: 0.8                # hysteresis: clear below threshold * clearRatio
    raiseAfter: 1                  # consecutive windows over the threshold to raise
    clearAfter: 1                  # consecutive windows under the clear level to clear
    queueSize: 1024                # parsed events waiting; beyond it: HTTP 429
    maxQueuedValues: 1000000       # values (rows x features) waiting, and at most in one
                                   # event; beyond it: HTTP 429 (413 for one event)
    maxBodyBytes: 4194304
    port: 8080
    workload:                      # where Kubernetes Events go (optional)
      apiVersion: serving.kserve.io/v1beta1
      kind: InferenceService
      name: sklearn-iris
      namespace: models            # default: the pod's own namespace

The environment can stand in for the file's workload: ``MODELSHIELD_DRIFT_WORKLOAD`` is
``<apiVersion>/<kind>/<name>`` (e.g. ``apps/v1/Deployment/iris``) and
``MODELSHIELD_DRIFT_NAMESPACE`` its namespace. ``MODELSHIELD_DRIFT_CONFIG`` names the file
when ``--config`` is not given.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

import pydantic
import yaml

from modelshield.api.v1alpha1 import common, policies

CONFIG_ENV = "MODELSHIELD_DRIFT_CONFIG"
WORKLOAD_ENV = "MODELSHIELD_DRIFT_WORKLOAD"
NAMESPACE_ENV = "MODELSHIELD_DRIFT_NAMESPACE"


class ConfigError(ValueError):
    """A configuration that cannot be read or does not make sense."""


class WorkloadReference(common.ApiModel):
    """The inference workload that drift Events are attached to."""

    api_version: str = pydantic.Field(default="", description="apiVersion of the workload.")
    kind: str = pydantic.Field(min_length=1, description="Kind of the workload.")
    name: str = pydantic.Field(min_length=1, description="Name of the workload.")
    namespace: str | None = pydantic.Field(
        default=None, description="Namespace; default: the monitor's own."
    )
    uid: str | None = pydantic.Field(default=None, description="UID, when known.")


class MonitorConfig(common.ApiModel):
    """Everything the monitor needs besides the profile itself."""

    profile: str = pydantic.Field(min_length=1, description="Path of the reference profile.")
    features: list[str] = pydantic.Field(default_factory=list)
    columns: list[str] = pydantic.Field(default_factory=list)
    outputs: list[str] = pydantic.Field(default_factory=list)
    statistic: policies.DriftStatistic = policies.DriftStatistic.PSI
    threshold: float = pydantic.Field(default=0.2, gt=0)
    false_alarm_rate: float | None = pydantic.Field(default=None, gt=0, le=0.5)
    """When set, per-feature thresholds are calibrated so that a clean window raises an alarm
    on any feature with at most this probability (``threshold`` and
    ``categoricalThreshold`` are then not used); see ``modelshield.drift.calibration``."""
    window: int = pydantic.Field(default=1000, ge=1, le=10_000_000)
    least_expected: float = pydantic.Field(default=10.0, ge=0, le=1_000_000)
    """With ``falseAlarmRate``: adjacent thin bins of numeric features are merged until each
    expects this many rows of a window (``modelshield.drift.binmerging``); 0 scores on the
    profile's bins, as a monitor with fixed thresholds always does."""
    categorical_statistic: policies.DriftStatistic = policies.DriftStatistic.JENSEN_SHANNON
    categorical_threshold: float = pydantic.Field(default=0.1, gt=0)
    clear_ratio: float = pydantic.Field(default=0.8, gt=0, le=1)
    raise_after: int = pydantic.Field(default=1, ge=1)
    clear_after: int = pydantic.Field(default=1, ge=1)
    queue_size: int = pydantic.Field(default=1024, ge=1)
    max_queued_values: int = pydantic.Field(default=1_000_000, ge=1)
    max_body_bytes: int = pydantic.Field(default=4 * 1024 * 1024, ge=1024)
    port: int = pydantic.Field(default=8080, ge=0, le=65535)
    host: str = "0.0.0.0"  # noqa: S104 -- a pod serves on its own network namespace
    workload: WorkloadReference | None = None

    @pydantic.field_validator("categorical_statistic")
    @classmethod
    def _applies_to_categories(cls, value: policies.DriftStatistic) -> policies.DriftStatistic:
        if value in (
            policies.DriftStatistic.KOLMOGOROV_SMIRNOV,
            policies.DriftStatistic.WASSERSTEIN,
        ):
            raise ValueError(f"{value} does not apply to categorical features")
        return value


def workload_from_env(environ: Mapping[str, str]) -> WorkloadReference | None:
    """The workload named by MODELSHIELD_DRIFT_WORKLOAD, if set."""
    text = environ.get(WORKLOAD_ENV, "").strip()
    if not text:
        return None
    parts = text.split("/")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"{WORKLOAD_ENV}={text!r}: expected <apiVersion>/<kind>/<name>")
    return WorkloadReference(
        api_version="/".join(parts[:-2]),
        kind=parts[-2],
        name=parts[-1],
        namespace=environ.get(NAMESPACE_ENV) or None,
    )


def parse(document: object, base: pathlib.Path, environ: Mapping[str, str]) -> MonitorConfig:
    """Validate a configuration document; relative profile paths are taken from base."""
    if not isinstance(document, dict):
        raise ConfigError("the configuration is a mapping of keys to values")
    try:
        config = MonitorConfig.model_validate(document)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigError(problems) from None
    profile = pathlib.Path(config.profile)
    if not profile.is_absolute():
        config = config.model_copy(update={"profile": str(base / profile)})
    if config.workload is None:
        try:
            workload = workload_from_env(environ)
        except pydantic.ValidationError as error:
            raise ConfigError(f"{WORKLOAD_ENV}: {error}") from None
        config = config.model_copy(update={"workload": workload})
    return config


def load(path: pathlib.Path | None, environ: Mapping[str, str] | None = None) -> MonitorConfig:
    """Read the configuration file (path, or $MODELSHIELD_DRIFT_CONFIG)."""
    environ = os.environ if environ is None else environ
    if path is None:
        if not environ.get(CONFIG_ENV):
            raise ConfigError(f"no configuration: pass --config or set {CONFIG_ENV}")
        path = pathlib.Path(environ[CONFIG_ENV])
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not YAML or JSON: {error}") from None
    return parse(document, path.parent, environ)
