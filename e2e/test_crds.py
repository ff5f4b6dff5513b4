"""The generated CRDs, as a real API server sees them.

The schema in crds/ is what the API server enforces before our webhook is
ever called, so every policy fixture is sent to the server (server-side dry
run, so nothing is stored): the valid ones must be accepted, the invalid ones
rejected for the reason the fixture names.

Fixture contract (tests/fixtures/policies/):
- valid/*.yaml: accepted as they are.
- invalid/*.yaml: full-line comments carry the expectation:
    # expect-error: <substring of our own validation message>
    # expect-server-error: <substring of the API server's message>  (wins when present)
    # client-only: <why>   (a semantic check only our webhook makes: skipped here)
  The server's message must contain the expected substrings, and also the
  field path that starts an expect-error ("spec.x[0].y: ...").
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.clients import REPOSITORY_ROOT, Cluster, Kubectl

POLICY_FIXTURES_DIR = REPOSITORY_ROOT / "tests" / "fixtures" / "policies"
VALID_FIXTURES = sorted((POLICY_FIXTURES_DIR / "valid").glob("*.yaml"))
INVALID_FIXTURES = sorted((POLICY_FIXTURES_DIR / "invalid").glob("*.yaml"))
OPENAPI_PUBLISH_SECONDS = 30.0

DIRECTIVE = re.compile(r"^#\s*(expect-error|expect-server-error|client-only)\b\s*:?\s*(.*?)\s*$")


# "spec.images.signers[0].keyless: set exactly one ..." -> the field path.
FIELD_PATH_PREFIX = re.compile(r"^((?:spec|metadata)(?:\.[A-Za-z0-9_]+|\[[0-9]+\])*):\s")


@dataclass(frozen=True)
class InvalidFixture:
    path: Path
    expected_errors: tuple[str, ...]
    expected_server_errors: tuple[str, ...]
    # None when the API server must refuse it; else why only our webhook can.
    client_only_reason: str | None

    @classmethod
    def read(cls, path: Path) -> InvalidFixture:
        expected_errors: list[str] = []
        expected_server_errors: list[str] = []
        client_only_reason: str | None = None
        for line in path.read_text().splitlines():
            match = DIRECTIVE.match(line.strip())
            if match is None:
                continue
            directive, value = match.groups()
            if directive == "client-only":
                client_only_reason = value or "a check that only modelshield's webhook makes"
            elif directive == "expect-server-error":
                expected_server_errors.append(value)
            else:
                expected_errors.append(value)
        return cls(path, tuple(expected_errors), tuple(expected_server_errors), client_only_reason)

    def expected_field_paths(self) -> list[str]:
        """The field paths our own messages name. The API server words its
        messages differently (hence expect-server-error) but must blame the
        same field."""
        paths = []
        for expected in self.expected_errors:
            match = FIELD_PATH_PREFIX.match(expected)
            if match:
                paths.append(match.group(1))
        return paths


def fixture_id(path: Path) -> str:
    return path.stem


def manifest_for_namespace(path: Path) -> str:
    """The fixture's YAML with metadata.namespace removed, so `kubectl -n` puts
    namespaced objects in the test's own namespace (cluster-scoped ones ignore
    it). A file that is not even YAML is sent as it is: the server (or kubectl)
    must refuse it all the same."""
    text = path.read_text()
    try:
        documents = [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError:
        return text
    for document in documents:
        if isinstance(document, dict) and isinstance(document.get("metadata"), dict):
            document["metadata"].pop("namespace", None)
    return yaml.safe_dump_all(documents, sort_keys=False)


def server_dry_run(kubectl: Kubectl, path: Path, namespace: str) -> tuple[int, str]:
    completed = kubectl(
        "create",
        "--dry-run=server",
        "--validate=strict",
        f"--namespace={namespace}",
        "--filename=-",
        input_text=manifest_for_namespace(path),
        check=False,
    )
    return completed.returncode, completed.stderr + completed.stdout


def document_kinds(path: Path) -> list[str]:
    return [
        str(document.get("kind"))
        for document in yaml.safe_load_all(path.read_text())
        if isinstance(document, dict)
    ]


def crd_for_kind(crds: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    for crd in crds:
        if crd["spec"]["names"]["kind"] == kind:
            return crd
    pytest.fail(f"crds/ has no CustomResourceDefinition for kind {kind}")


def test_every_crd_is_established(cluster: Cluster, modelshield_crds: list[dict[str, Any]]) -> None:
    extensions = client.ApiextensionsV1Api(cluster.api_client)
    for manifest in modelshield_crds:
        served = extensions.read_custom_resource_definition(manifest["metadata"]["name"])
        assert served.status is not None
        conditions = {
            condition.type: condition.status for condition in served.status.conditions or []
        }
        assert conditions.get("Established") == "True", manifest["metadata"]["name"]
        assert conditions.get("NamesAccepted") == "True", manifest["metadata"]["name"]


def test_policy_fixtures_exist() -> None:
    # An empty parameter list would turn the tests below into a quiet skip.
    assert VALID_FIXTURES, f"no valid policy fixtures in {POLICY_FIXTURES_DIR / 'valid'}"
    assert INVALID_FIXTURES, f"no invalid policy fixtures in {POLICY_FIXTURES_DIR / 'invalid'}"


@pytest.mark.parametrize("fixture_path", VALID_FIXTURES, ids=fixture_id)
def test_valid_policy_is_accepted(
    fixture_path: Path, modelshield_crds: list[dict[str, Any]], kubectl: Kubectl, namespace: str
) -> None:
    exit_code, output = server_dry_run(kubectl, fixture_path, namespace)
    assert exit_code == 0, f"the API server refused {fixture_path}:\n{output}"


@pytest.mark.parametrize("fixture_path", INVALID_FIXTURES, ids=fixture_id)
def test_invalid_policy_is_rejected_at_the_expected_field(
    fixture_path: Path, modelshield_crds: list[dict[str, Any]], kubectl: Kubectl, namespace: str
) -> None:
    fixture = InvalidFixture.read(fixture_path)
    if fixture.client_only_reason is not None:
        pytest.skip(f"client-only: {fixture.client_only_reason}")
    expected = fixture.expected_server_errors or fixture.expected_errors
    assert expected, f"{fixture_path} names no expect-error or expect-server-error"

    exit_code, output = server_dry_run(kubectl, fixture_path, namespace)
    assert exit_code != 0, f"the API server accepted {fixture_path}"
    missing = [substring for substring in expected if substring not in output]
    assert not missing, (
        f"the API server refused {fixture_path}, but its message lacks {missing} "
        f"(add `# expect-server-error: ...` if only the wording differs):\n{output}"
    )
    wrong_field = [path for path in fixture.expected_field_paths() if path not in output]
    assert not wrong_field, (
        f"the API server refused {fixture_path}, but did not name the field {wrong_field} "
        f"that the fixture's expect-error names:\n{output}"
    )


def test_kubectl_explain_shows_field_descriptions(
    modelshield_crds: list[dict[str, Any]], kubectl: Kubectl
) -> None:
    # The CRD's schema reaches the OpenAPI document a moment after it is
    # Established.
    deadline = time.monotonic() + OPENAPI_PUBLISH_SECONDS
    while True:
        explained = kubectl("explain", "modelsecuritypolicy.spec.images", check=False)
        if explained.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert explained.returncode == 0, explained.stderr
    text = explained.stdout
    assert "DESCRIPTION:" in text
    assert "FIELDS:" in text
    # kubectl prints <empty> for a schema node without a description.
    assert "<empty>" not in text, text


def test_kubectl_get_shows_printer_columns(
    modelshield_crds: list[dict[str, Any]], kubectl: Kubectl, namespace: str
) -> None:
    crd = crd_for_kind(modelshield_crds, "ModelSecurityPolicy")
    assert "msp" in crd["spec"]["names"].get("shortNames", [])
    storage_version = next(version for version in crd["spec"]["versions"] if version["storage"])
    columns = [column["name"] for column in storage_version.get("additionalPrinterColumns", [])]
    assert columns, "ModelSecurityPolicy has no printer columns"

    policy_fixture = next(
        (path for path in VALID_FIXTURES if "ModelSecurityPolicy" in document_kinds(path)),
        None,
    )
    assert policy_fixture is not None, "no valid ModelSecurityPolicy fixture to list"
    kubectl(
        "create",
        f"--namespace={namespace}",
        "--filename=-",
        input_text=manifest_for_namespace(policy_fixture),
    )
    listed = kubectl("get", "msp", f"--namespace={namespace}", "--output=wide").stdout
    header = listed.splitlines()[0]
    for column in columns:
        assert column.upper() in header, f"column {column} missing from:\n{listed}"
