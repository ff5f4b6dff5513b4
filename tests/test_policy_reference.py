"""docs/policy-reference.md is generated from the CRD schemas and must be current."""

from __future__ import annotations

import pathlib

from modelshield.api import crdgen
from modelshield.cli import docs, main

REFERENCE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "policy-reference.md"


def test_committed_reference_is_current() -> None:
    assert REFERENCE.is_file(), "run `modelshield docs policy-reference > docs/policy-reference.md`"
    assert REFERENCE.read_text() == docs.render(), (
        "docs/policy-reference.md is stale: run "
        "`modelshield docs policy-reference > docs/policy-reference.md`"
    )


def test_every_schema_field_with_a_description_has_a_row() -> None:
    # Walk the CRD schemas independently of the renderer: each described field under
    # spec/status must appear in the reference with its description.
    text = docs.render()

    def walk(node: dict[str, object], path: str) -> list[tuple[str, str]]:
        found = []
        description = node.get("description")
        if isinstance(description, str):
            found.append((path, " ".join(description.split())))
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, child in properties.items():
                found += walk(child, f"{path}.{name}")
        items = node.get("items")
        if isinstance(items, dict) and "properties" in items:
            found += walk({"properties": items["properties"]}, f"{path}[]")
        return found

    checked = 0
    for definition in crdgen.all_definitions():
        schema = definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        kind = definition["spec"]["names"]["kind"]
        section = text.split(f"\n## {kind}\n", 1)[1].split("\n## ", 1)[0].splitlines()
        for top in ("spec", "status"):
            for path, description in walk(schema["properties"][top], top):
                row = next((line for line in section if line.startswith(f"| `{path}` |")), None)
                assert row is not None, f"{definition['metadata']['name']}: no row for {path}"
                assert description.replace("|", "\\|") in row, f"{path}: description missing"
                checked += 1
    assert checked > 100


def test_rows_show_defaults_enums_and_rules() -> None:
    text = docs.render()
    assert "| `spec.enforcement` | string |  | `Enforce` | one of `Enforce`, `Audit` |" in text
    assert "rule: set exactly one of publicKey, secretRef and keyless" in text


def test_stale_file_is_detected(tmp_path: pathlib.Path) -> None:
    stale = tmp_path / "policy-reference.md"
    stale.write_text(docs.render().replace("Enforce denies", "Enforce refuses"))
    assert docs.stale(stale)
    assert main.main(["docs", "policy-reference", "--check", str(stale)]) == 1
    assert main.main(["docs", "policy-reference", "--check", str(REFERENCE)]) == 0


def test_type_names() -> None:
    assert docs.type_name({"type": "array", "items": {"type": "string"}}) == "[]string"
    assert (
        docs.type_name({"type": "object", "additionalProperties": {"type": "string"}})
        == "map[string]string"
    )
    assert docs.type_name({"type": "string", "format": "date-time"}) == "string (date-time)"
