"""`modelshield test` on the examples: exit codes, readable violations, every output format."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from xml.etree import ElementTree

import pytest

from modelshield.cli import main
from tests.support.paths import FIXTURES, REPOSITORY

EXAMPLES = REPOSITORY / "examples"
NOW = ["--now", "2026-11-26T00:00:00Z"]


def _run(*arguments: str) -> int:
    return main.main(["test", *arguments])


def _examples(workload: str, *extra: str) -> list[str]:
    return [
        str(EXAMPLES / "policies"),
        "--resources",
        str(EXAMPLES / "workloads" / workload),
        str(EXAMPLES / "workloads" / "namespace.yaml"),
        str(EXAMPLES / "workloads" / "model-artifacts.yaml"),
        "--facts",
        str(EXAMPLES / "facts.yaml"),
        *NOW,
        *extra,
    ]


def test_compliant_example_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(*_examples("compliant.yaml")) == 0
    out = capsys.readouterr().out
    assert "PASS  Deployment ml-prod/fraud-detector" in out


def test_noncompliant_example_fails_with_readable_violations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _run(*_examples("noncompliant.yaml")) == 1
    out = capsys.readouterr().out
    assert "FAIL  Deployment ml-prod/fraud-detector-experiment" in out
    assert "ImageUnsigned: [ModelSecurityPolicy ml-prod/fraud-model]" in out
    assert "spec.template.spec.containers[0].image" in out
    assert "RuntimeRunAsRoot: [ClusterModelSecurityPolicy platform-baseline]" in out
    assert "ModelScanFindings" in out
    assert "model.pkl" in out


def test_attestation_age_depends_on_now(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = _examples("compliant.yaml")
    arguments[arguments.index("--now") + 1] = "2026-12-24T00:00:00Z"
    assert _run(*arguments) == 1
    assert "AttestationTooOld" in capsys.readouterr().out


def test_output_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    _run(*_examples(".", "--output", "json"))
    first = capsys.readouterr().out
    _run(*_examples(".", "--output", "json"))
    assert capsys.readouterr().out == first


def test_json_junit_and_sarif(capsys: pytest.CaptureFixture[str]) -> None:
    _run(*_examples(".", "--output", "json"))
    results = json.loads(capsys.readouterr().out)
    assert {r["verdict"] for r in results} == {"PASS", "FAIL"}

    _run(*_examples(".", "--output", "junit"))
    suite = ElementTree.fromstring(capsys.readouterr().out.split("?>", 1)[1])
    assert suite.get("tests") == "2"
    assert suite.get("failures") == "1"

    _run(*_examples(".", "--output", "sarif"))
    sarif = json.loads(capsys.readouterr().out)
    levels = {r["level"] for r in sarif["runs"][0]["results"]}
    assert levels == {"error"}
    assert "ImageUnsigned" in {rule["id"] for rule in sarif["runs"][0]["tool"]["driver"]["rules"]}


def test_broken_policy_exits_2_naming_file_document_and_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = FIXTURES / "policies" / "invalid" / "bad-max-age.yaml"
    assert _run(str(broken), "--resources", str(EXAMPLES / "workloads")) == 2
    error = capsys.readouterr().err
    assert str(broken) in error
    assert "document 1" in error
    assert "spec.images.attestations[0].maxAge" in error


@pytest.mark.parametrize(
    ("content", "expected"),
    [("key: [unclosed", "not readable YAML"), ("- just\n- a list\n", "not a mapping")],
)
def test_unreadable_yaml_exits_2(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    assert _run(str(bad), "--resources", str(EXAMPLES / "workloads")) == 2
    assert expected in capsys.readouterr().err


def test_missing_path_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("does/not/exist.yaml", "--resources", str(EXAMPLES)) == 2
    assert "no such file" in capsys.readouterr().err


def test_bad_facts_file_exits_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    facts = tmp_path / "facts.yaml"
    facts.write_text("images:\n  - image: x\n    signature: {outcome: Maybe}\n")
    arguments = _examples("compliant.yaml")
    arguments[arguments.index("--facts") + 1] = str(facts)
    assert _run(*arguments) == 2
    assert "images[0].signature.outcome" in capsys.readouterr().err


def test_every_workload_fixture_kind_is_evaluated(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(str(EXAMPLES / "policies"), "--resources", str(FIXTURES / "workloads"), *NOW) == 1
    out = capsys.readouterr().out
    for kind in ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
                 "ReplicationController", "Job", "CronJob", "InferenceService"):  # fmt: skip
        assert f"  {kind} ml-prod/" in out, kind


def test_the_installed_console_script_runs() -> None:
    script = pathlib.Path(sys.executable).parent / "modelshield"
    result = subprocess.run(
        [str(script), *["test", *_examples("noncompliant.yaml")]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "ImageUnsigned" in result.stdout


def test_a_manifest_without_a_namespace_is_named_with_the_namespace_assumed(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compliant = (EXAMPLES / "workloads" / "compliant.yaml").read_text()
    unnamespaced = tmp_path / "deploy.yaml"
    unnamespaced.write_text(compliant.replace("  namespace: ml-prod\n", "", 1))
    assert "namespace: ml-prod" not in unnamespaced.read_text().split("spec:")[0]
    arguments = _examples("compliant.yaml", "--namespace", "ml-prod", "--output", "json")
    arguments[arguments.index(str(EXAMPLES / "workloads" / "compliant.yaml"))] = str(unnamespaced)
    assert _run(*arguments) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # the notice stays off stdout, which remains machine-readable
    assert f"note: {unnamespaced}: document 1 (Deployment fraud-detector)" in captured.err
    assert "evaluated in namespace 'ml-prod'" in captured.err


def test_manifests_that_name_their_namespace_get_no_notice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _run(*_examples("compliant.yaml")) == 0
    assert "note:" not in capsys.readouterr().err
