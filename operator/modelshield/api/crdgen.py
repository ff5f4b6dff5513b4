"""Generate CustomResourceDefinitions from the pydantic models.

pydantic writes JSON Schema 2020-12 with ``$ref``s and ``anyOf: [X, null]`` for optional
fields; the API server wants a *structural* OpenAPI v3 schema: every node typed, no
references, no ``additionalProperties: false`` beside ``properties``. This module does
that translation and nothing else, so the models stay the single source of truth.
"""

from __future__ import annotations

import copy
from typing import Any

from modelshield.api import resources

JsonSchema = dict[str, Any]

# Keywords the structural schema keeps; everything else pydantic emits is dropped.
_KEPT_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "properties",
        "required",
        "items",
        "enum",
        "default",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "maxProperties",
        "format",
        "additionalProperties",
        "x-kubernetes-validations",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
    }
)


def _resolve(node: JsonSchema, definitions: dict[str, JsonSchema]) -> JsonSchema:
    """Inline ``$ref`` and collapse ``anyOf: [X, {type: null}]`` into X."""
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, definitions)
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", "") is None:
            del rest["default"]
        return _resolve({**options[0], **rest}, definitions)
    return node


def structural(node: JsonSchema, definitions: dict[str, JsonSchema]) -> JsonSchema:
    """Translate one pydantic JSON Schema node into a structural OpenAPI v3 node."""
    node = _resolve(node, definitions)
    out: JsonSchema = {}
    for key, value in node.items():
        if key not in _KEPT_KEYWORDS:
            continue
        if key == "properties":
            out[key] = {name: structural(child, definitions) for name, child in value.items()}
        elif key == "items":
            out[key] = structural(value, definitions)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = structural(value, definitions)
            # `false` is pydantic's extra="forbid": the API server prunes unknown fields and
            # kubectl's strict field validation reports them, so it is dropped here.
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema 2020 puts the bound in exclusiveMinimum; OpenAPI v3 wants a flag.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = copy.deepcopy(value)
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    if (
        out.get("type") == "array"
        and out.get("items", {}).get("properties", {}).get("type")
        and ("lastTransitionTime" in out["items"]["properties"])
    ):
        out["x-kubernetes-list-type"] = "map"
        out["x-kubernetes-list-map-keys"] = ["type"]
    return out


def openapi_schema(resource: resources.Resource) -> JsonSchema:
    """The structural schema of a kind, with metadata left to the API server."""
    raw = resource.model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.get("$defs", {})
    schema = structural(raw, definitions)
    schema["properties"]["metadata"] = {"type": "object"}
    for field in ("apiVersion", "kind"):
        schema["properties"][field].pop("default", None)
    schema["description"] = " ".join(resource.description.split())
    return schema


def custom_resource_definition(resource: resources.Resource) -> JsonSchema:
    """The whole CustomResourceDefinition object for one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": resource.crd_name,
            "labels": {"app.kubernetes.io/part-of": "modelshield"},
        },
        "spec": {
            "group": resource.group,
            "scope": "Namespaced" if resource.namespaced else "Cluster",
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.singular,
                "shortNames": list(resource.short_names),
                "categories": list(resource.categories),
            },
            "versions": [
                {
                    "name": resource.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": column.name,
                            "type": column.type,
                            "jsonPath": column.json_path,
                            **({"description": column.description} if column.description else {}),
                            **({"priority": column.priority} if column.priority else {}),
                        }
                        for column in resource.printer_columns
                    ],
                    "schema": {"openAPIV3Schema": openapi_schema(resource)},
                }
            ],
        },
    }


def all_definitions() -> list[JsonSchema]:
    """Every CRD modelshield ships, in a stable order."""
    return [custom_resource_definition(resource) for resource in resources.ALL]
