"""What the modelshield-model-keys ConfigMap holds, and what is done to the live one."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.controllers.builders import modelkeys
from modelshield.engine import startup
from tests.support import signingkeys as keys


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("keys")
    return {name: keys.key_pair(directory, name).public_pem.decode() for name in ("a", "b")}


def _requirements(*signers: dict[str, Any]) -> policies.ModelRequirements:
    return policies.ModelRequirements.model_validate({"signers": list(signers)})


def _verified(name: str, signer: str | None) -> modelkeys.Artifact:
    return modelkeys.Artifact(name=name, uid=f"uid-{name}", signer=signer)


def test_each_artifact_gets_its_own_file_with_its_signers_public_key(
    pems: dict[str, str],
) -> None:
    known = modelkeys.signer_keys([_requirements({"name": "release", "publicKey": pems["a"]})], {})

    result = modelkeys.contents(
        [_verified("fraud-v1", "release"), _verified("fraud-v2", "release")], known
    )

    assert result.data == {"fraud-v1.release.pub": pems["a"], "fraud-v2.release.pub": pems["a"]}
    assert result.problems == ()


def test_unverified_artifacts_get_no_file(pems: dict[str, str]) -> None:
    known = modelkeys.signer_keys([_requirements({"name": "release", "publicKey": pems["a"]})], {})

    assert modelkeys.contents([_verified("pending", None)], known).data == {}


def test_artifact_of_reads_the_signer_only_when_verified() -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "m", "uid": "u"},
        "status": {
            "signer": "release",
            "conditions": [{"type": "Verified", "status": "True"}],
        },
    }
    assert modelkeys.artifact_of(body) == modelkeys.Artifact("m", "u", "release")
    body["status"]["conditions"][0]["status"] = "False"
    assert modelkeys.artifact_of(body).signer is None
    assert modelkeys.artifact_of({"metadata": {"name": "new"}}).signer is None


def test_secret_ref_contributes_only_the_canonical_public_key(
    pems: dict[str, str], tmp_path: pathlib.Path
) -> None:
    requirement = _requirements(
        {"name": "release", "secretRef": {"name": "signing", "key": "release.pub"}}
    )
    # Extra text around the PEM (comments, a trailing certificate...) never reaches the map.
    value = b"# rotated 2026-11\n" + pems["a"].encode() + b"\n\n"

    known = modelkeys.signer_keys([requirement], {("signing", "release.pub"): value})
    result = modelkeys.contents([_verified("m", "release")], known)

    assert result.data == {"m.release.pub": pems["a"]}


def test_a_private_key_in_the_secret_is_never_published(tmp_path: pathlib.Path) -> None:
    pair = keys.key_pair(tmp_path, "leaked")
    requirement = _requirements(
        {"name": "release", "secretRef": {"name": "signing", "key": "release.key"}}
    )

    known = modelkeys.signer_keys(
        [requirement], {("signing", "release.key"): pair.private_path.read_bytes()}
    )
    result = modelkeys.contents([_verified("m", "release")], known)

    assert result.data == {}
    (problem,) = result.problems
    assert problem.reason == modelkeys.UNAVAILABLE
    assert "does not hold a PEM public key" in problem.message
    assert "PRIVATE" not in problem.message


def test_an_unreadable_secret_is_reported() -> None:
    requirement = _requirements({"name": "release", "secretRef": {"name": "gone", "key": "k"}})

    result = modelkeys.contents(
        [_verified("m", "release")], modelkeys.signer_keys([requirement], {})
    )

    assert result.data == {}
    assert "Secret gone key k could not be read" in result.problems[0].message


def test_one_name_with_two_keys_is_ambiguous_and_publishes_nothing(
    pems: dict[str, str],
) -> None:
    # A namespaced policy and a cluster policy may both name a signer "release".
    known = modelkeys.signer_keys(
        [
            _requirements({"name": "release", "publicKey": pems["a"]}),
            _requirements({"name": "release", "publicKey": pems["b"]}),
        ],
        {},
    )

    result = modelkeys.contents([_verified("m", "release")], known)

    assert result.data == {}
    assert [p.reason for p in result.problems] == [modelkeys.AMBIGUOUS]


def test_the_same_key_given_twice_under_one_name_is_not_ambiguous(
    pems: dict[str, str],
) -> None:
    known = modelkeys.signer_keys(
        [
            _requirements({"name": "release", "publicKey": pems["a"]}),
            _requirements({"name": "release", "publicKey": "\n" + pems["a"]}),
        ],
        {},
    )

    assert modelkeys.contents([_verified("m", "release")], known).data == {
        "m.release.pub": pems["a"]
    }


def test_keyless_and_unknown_signers_are_reported() -> None:
    known = modelkeys.signer_keys(
        [
            _requirements(
                {
                    "name": "ci",
                    "keyless": {"issuer": "https://issuer.example", "subject": "ci@example.com"},
                }
            )
        ],
        {},
    )

    result = modelkeys.contents([_verified("a", "ci"), _verified("b", "removed")], known)

    assert result.data == {}
    messages = {p.artifact: p.message for p in result.problems}
    assert "keyless identity" in messages["a"]
    assert "names that signer any more" in messages["b"]


def test_key_file_names_cannot_collide_across_artifacts_and_signers() -> None:
    # "a.b" signed by "c" and "a" signed by "b.c" cannot both exist: signers hold no dot.
    assert startup.key_file_name("a.b", "c") == "a.b.c.pub"
    long = "m" * 253
    name = startup.key_file_name(long, "release-2026")
    assert len(name) <= 253
    assert name.endswith(".release-2026.pub")
    assert name != startup.key_file_name("m" * 252, "release-2026")


def test_a_crafted_name_that_clashes_publishes_neither(pems: dict[str, str]) -> None:
    long = "m" * 253
    crafted = startup.key_file_name(long, "release").removesuffix(".release.pub")
    known = modelkeys.signer_keys([_requirements({"name": "release", "publicKey": pems["a"]})], {})

    result = modelkeys.contents([_verified(long, "release"), _verified(crafted, "release")], known)

    assert result.data == {}
    assert {p.reason for p in result.problems} == {modelkeys.NAME_CLASH}
    assert {p.artifact for p in result.problems} == {long, crafted}


ARTIFACTS = [_verified("m", "release")]


def test_plan_creates_a_labelled_config_map_owned_by_the_artifacts() -> None:
    action = modelkeys.plan("ml", None, ARTIFACTS, {"m.release.pub": "PEM"})

    assert action.verb == "create"
    assert action.body is not None
    metadata = action.body["metadata"]
    assert metadata["name"] == startup.KEYS_CONFIG_MAP
    assert metadata["labels"]["app.kubernetes.io/managed-by"] == "modelshield"
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "modelshield.dev/v1alpha1",
            "kind": "ModelArtifact",
            "name": "m",
            "uid": "uid-m",
        }
    ]
    assert action.body["data"] == {"m.release.pub": "PEM"}


def _live(data: dict[str, str], *, managed: bool = True) -> dict[str, Any]:
    body = modelkeys.build("ml", data, ARTIFACTS)
    body["metadata"].update(uid="cm-uid", resourceVersion="7")
    if not managed:
        body["metadata"]["labels"] = {"team": "ml"}
    return body


def test_plan_leaves_an_up_to_date_config_map_alone() -> None:
    assert modelkeys.plan("ml", _live({"k": "v"}), ARTIFACTS, {"k": "v"}).verb == "none"


def test_plan_replaces_changed_content_at_the_seen_version_keeping_others_labels() -> None:
    live = _live({"k": "old", "stale.pub": "x"})
    live["metadata"]["labels"]["team"] = "ml"

    action = modelkeys.plan("ml", live, ARTIFACTS, {"k": "new"})

    assert (action.verb, action.resource_version) == ("replace", "7")
    assert action.body is not None
    assert action.body["data"] == {"k": "new"}
    assert action.body["metadata"]["labels"]["team"] == "ml"


def test_plan_deletes_the_config_map_with_the_last_artifact() -> None:
    action = modelkeys.plan("ml", _live({}), [], {})

    assert (action.verb, action.uid) == ("delete", "cm-uid")
    assert modelkeys.plan("ml", None, [], {}).verb == "none"


def test_plan_never_touches_a_config_map_modelshield_does_not_manage() -> None:
    unmanaged = _live({"release.pub": "theirs"}, managed=False)

    assert modelkeys.plan("ml", unmanaged, ARTIFACTS, {"k": "v"}).verb == "conflict"
    assert modelkeys.plan("ml", unmanaged, [], {}).verb == "none"
    (problem,) = modelkeys.conflict_problems(ARTIFACTS)
    assert problem.reason == modelkeys.CONFLICT
