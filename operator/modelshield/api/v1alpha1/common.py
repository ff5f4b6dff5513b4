"""Building blocks shared by every kind: the base model, selectors, conditions, durations."""

from __future__ import annotations

import datetime
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

import pydantic
from pydantic.alias_generators import to_camel

from modelshield.api.v1alpha1 import syntax


class ApiModel(pydantic.BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields refused."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )


class Severity(StrEnum):
    """Ordered finding severities, shared by image vulnerability scans and model scans."""

    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"
    CRITICAL = "Critical"

    @property
    def rank(self) -> int:
        """Position in the order Low < Medium < High < Critical."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


LABEL_KEY_PATTERN = syntax.LABEL_KEY_PATTERN
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DURATION_PATTERN = r"^([0-9]+(s|m|h|d))+$"

ObjectName = Annotated[
    str,
    pydantic.Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN),
]
#: Label keys and values: checked by ``syntax`` (with its messages), shown to the API
#: server as the same pattern. A map key gets no pattern in the schema (pydantic would
#: turn it into patternProperties, which a structural schema cannot hold): the map's CEL
#: rule checks its keys instead.
LabelKey = Annotated[
    str,
    pydantic.AfterValidator(syntax.label_key),
    pydantic.WithJsonSchema(
        {
            "type": "string",
            "maxLength": syntax.LABEL_KEY_MAX_LENGTH,
            "pattern": syntax.LABEL_KEY_PATTERN,
            "x-kubernetes-validations": [
                {"rule": syntax.LABEL_PREFIX_LENGTH_RULE, "message": syntax.LABEL_KEY_MESSAGE}
            ],
        }
    ),
]
LabelMapKey = Annotated[
    str,
    pydantic.AfterValidator(syntax.label_key),
    pydantic.WithJsonSchema({"type": "string", "maxLength": syntax.LABEL_KEY_MAX_LENGTH}),
]
LabelValue = Annotated[
    str,
    pydantic.AfterValidator(syntax.label_value),
    pydantic.WithJsonSchema(
        {
            "type": "string",
            "maxLength": syntax.LABEL_VALUE_MAX_LENGTH,
            "pattern": syntax.LABEL_VALUE_PATTERN,
        }
    ),
]
#: Labels per selector; bounded so that the API server can cost the CEL rule on keys.
MAX_MATCH_LABELS = 64


class LabelSelectorRequirement(ApiModel):
    """One expression of a label selector, as in Kubernetes' metav1.LabelSelectorRequirement."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
                    "message": "In and NotIn need values; Exists and DoesNotExist take none",
                }
            ]
        }
    )

    key: LabelKey = pydantic.Field(description="The label key the expression applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = pydantic.Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] = pydantic.Field(
        default_factory=list,
        description="Values for In and NotIn (non-empty there); empty for Exists and DoesNotExist.",
        max_length=64,
    )

    @pydantic.model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        needs_values = self.operator in ("In", "NotIn")
        if needs_values != bool(self.values):
            raise ValueError("In and NotIn need values; Exists and DoesNotExist take none")
        return self


class LabelSelector(ApiModel):
    """A Kubernetes label selector; an empty selector matches everything."""

    match_labels: dict[LabelMapKey, LabelValue] = pydantic.Field(
        default_factory=dict,
        description="Labels that must all be present with exactly these values.",
        max_length=MAX_MATCH_LABELS,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": (
                        f"self.all(k, k.matches(r'{syntax.LABEL_KEY_PATTERN}') && "
                        f"k.{syntax.LABEL_PREFIX_LENGTH_RULE.removeprefix('self.')})"
                    ),
                    "message": f"every key {syntax.LABEL_KEY_MESSAGE}",
                }
            ]
        },
    )
    match_expressions: list[LabelSelectorRequirement] = pydantic.Field(
        default_factory=list,
        description="Expressions that must all hold.",
        max_length=32,
    )


class ConditionStatus(StrEnum):
    """Status of a condition, as Kubernetes API conventions spell it."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """One observation of the object's state, following Kubernetes API conventions."""

    type: str = pydantic.Field(
        description="Type of condition in CamelCase, e.g. Ready.", max_length=316
    )
    status: ConditionStatus = pydantic.Field(description="True, False or Unknown.")
    reason: str = pydantic.Field(
        description="A CamelCase, machine-readable reason for the last transition.",
        max_length=1024,
    )
    message: str = pydantic.Field(
        default="",
        description="A human-readable explanation of the last transition.",
        max_length=32768,
    )
    last_transition_time: datetime.datetime = pydantic.Field(
        description="When the status last changed."
    )
    observed_generation: int = pydantic.Field(
        default=0, ge=0, description="The .metadata.generation the condition was computed for."
    )


class ObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: ObjectName = pydantic.Field(description="Name of the referenced object.")


class KeyReference(ApiModel):
    """A reference to one key of a Secret or ConfigMap in the same namespace."""

    name: ObjectName = pydantic.Field(description="Name of the Secret or ConfigMap.")
    key: str = pydantic.Field(
        description="Key inside the object's data.",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
    )


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> datetime.timedelta:
    """Parse a duration such as ``90s``, ``24h`` or ``7d12h`` (the schema's pattern)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration like 30m, 24h or 7d")
    seconds = sum(
        int(amount) * _DURATION_UNITS[unit]
        for amount, unit in re.findall(r"([0-9]+)([smhd])", text)
    )
    return datetime.timedelta(seconds=seconds)


Duration = Annotated[
    str,
    pydantic.Field(pattern=DURATION_PATTERN, max_length=32),
]


def schema_extra(**extra: Any) -> dict[str, Any]:
    """Attach Kubernetes-only schema keywords (x-kubernetes-validations, ...) to a model."""
    return extra
