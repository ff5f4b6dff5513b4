"""The committed CRDs are what the models generate, and they are structural."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from modelshield.api import crdgen, resources
from modelshield.cli import crds
from tests.support.paths import REPOSITORY


def test_committed_crds_are_not_stale() -> None:
    stale = crds.stale_files(REPOSITORY)
    assert not stale, "run `modelshield crds generate`:\n" + "\n".join(stale.values())


def test_generation_into_a_fresh_directory_matches(tmp_path: pathlib.Path) -> None:
    crds.generate(tmp_path)
    for relative, content in crds.rendered_files().items():
        assert (tmp_path / relative).read_text() == content
        assert (REPOSITORY / relative).read_text() == content


def test_a_changed_file_is_reported_stale(tmp_path: pathlib.Path) -> None:
    crds.generate(tmp_path)
    target = tmp_path / "crds" / "modelartifacts.modelshield.dev.yaml"
    target.write_text(target.read_text().replace("Where the model files are", "Where models are"))
    assert set(crds.stale_files(tmp_path)) == {
        pathlib.Path("crds/modelartifacts.modelshield.dev.yaml")
    }


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)] if isinstance(node, dict) else []
    if isinstance(node, dict):
        for key, child in node.get("properties", {}).items():
            found += _walk(child, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            found += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_schemas_are_structural_and_described() -> None:
    for resource in resources.ALL:
        schema = crdgen.openapi_schema(resource)
        for path, node in _walk(schema):
            assert "type" in node, f"{resource.kind}{path} has no type"
            assert not {"$ref", "anyOf", "allOf", "oneOf", "title"} & node.keys(), path
            described_by_parent = path.endswith(("[]", "{}")) and "properties" not in node
            if path.startswith((".spec", ".status")) and not described_by_parent:
                assert node.get("description"), f"{resource.kind}{path} has no description"


def test_printer_columns_and_short_names() -> None:
    documents = {d["spec"]["names"]["kind"]: d for d in crdgen.all_definitions()}
    policy = documents["ModelSecurityPolicy"]
    assert policy["spec"]["names"]["shortNames"] == ["msp"]
    columns = [c["name"] for c in policy["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:4] == ["Enforcement", "Ready", "Governed", "Violating"]
    assert documents["ClusterModelSecurityPolicy"]["spec"]["scope"] == "Cluster"


def test_chart_crds_are_templated_behind_install_and_keep() -> None:
    chart_file = (
        REPOSITORY / crds.DEFAULT_CHART_CRD_DIR / "modelsecuritypolicies.modelshield.dev.yaml"
    )
    text = chart_file.read_text()
    assert "{{- if .Values.crds.install }}" in text
    assert "helm.sh/resource-policy: keep" in text
    untemplated = "\n".join(line for line in text.splitlines() if "{{" not in line)
    assert yaml.safe_load(untemplated)["kind"] == "CustomResourceDefinition"
