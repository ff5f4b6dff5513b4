"""The init container that re-verifies the model at pod start."""

from __future__ import annotations

import re

import pytest

from modelshield.cli import main
from modelshield.engine import startup

DIGEST = "sha256:" + "ab" * 32


def test_init_container_runs_verify_with_digest_and_signer_key() -> None:
    container = startup.build_init_container(
        image="ghcr.io/example/modelshield:0.1.0",
        model_volume="model",
        model_mount_path="/mnt/models",
        model_sub_path="fraud/v1",
        digest=DIGEST,
        artifact="fraud-v1",
        signer="release-2026",
        keys_volume="modelshield-model-keys",
    )

    assert container["command"] == [
        "modelshield",
        "model",
        "verify",
        "/mnt/models/fraud/v1",
        "--digest",
        DIGEST,
        "--key",
        f"{startup.KEYS_MOUNT}/fraud-v1.release-2026.pub",
    ]
    assert all(mount["readOnly"] for mount in container["volumeMounts"])
    context = container["securityContext"]
    assert context["runAsNonRoot"]
    assert context["readOnlyRootFilesystem"]
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert "limits" in container["resources"]


def test_key_file_is_per_artifact_and_signer_and_fits_a_config_map_key() -> None:
    assert startup.key_file_name("fraud-v1", "release") == "fraud-v1.release.pub"
    assert startup.key_file_name("fraud-v2", "release") != startup.key_file_name(
        "fraud-v1", "release"
    )
    longest = startup.key_file_name("a" * 253, "s" * 63)
    assert len(longest) <= 253
    assert re.fullmatch(r"[-._a-zA-Z0-9]+", longest)
    assert longest != startup.key_file_name("a" * 252, "s" * 63)


def test_command_parses_with_the_real_cli() -> None:
    command = startup.verify_command("/m", DIGEST, policy_path="/p.yaml")

    arguments = main.build_parser().parse_args(command[1:])

    assert (arguments.directory, arguments.digest, arguments.policy) == ("/m", DIGEST, "/p.yaml")


def test_exactly_one_trust_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        startup.verify_command("/m", DIGEST)


def _kserve_pod_spec(server_mounts: list[dict[str, object]]) -> dict[str, object]:
    """A predictor pod as modelshield's mutating webhook sees it: the API server's
    ServiceAccount admission has mounted the token, KServe's pod mutator has injected its
    storage initializer and appended the model volume to the server container."""
    token = {
        "name": "kube-api-access-x7k2p",
        "mountPath": startup.SERVICE_ACCOUNT_MOUNT,
        "readOnly": True,
    }
    location = {"name": startup.KSERVE_MODEL_VOLUME, "mountPath": "/mnt/models"}
    return {
        "initContainers": [{"name": "storage-initializer", "volumeMounts": [token, location]}],
        "containers": [
            {
                "name": "kserve-container",
                "volumeMounts": [*server_mounts, token, {**location, "readOnly": True}],
            }
        ],
    }


def test_a_kserve_predictor_is_verified_in_kserve_s_model_volume_not_the_token() -> None:
    # The token first, as the webhook sees it: picked before, so the check verified the
    # token's directory and every KServe pod under verifyAtStartup failed to start.
    spec = _kserve_pod_spec([])
    spec["containers"][0]["volumeMounts"].reverse()  # type: ignore[index]
    mount = startup.model_mount(spec)
    assert mount is not None
    assert (mount["name"], mount["mountPath"]) == (startup.KSERVE_MODEL_VOLUME, "/mnt/models")
    built = startup.for_pod(spec, image="i", digest="sha256:" + "a" * 64, artifact="a", signer="s")
    assert built is not None
    assert built["command"][3] == "/mnt/models"


def test_kserve_s_model_volume_is_preferred_over_another_mount_of_the_runtime() -> None:
    spec = _kserve_pod_spec([{"name": "dshm", "mountPath": "/dev/shm"}])
    mount = startup.model_mount(spec)
    assert mount is not None
    assert mount["name"] == startup.KSERVE_MODEL_VOLUME


def test_a_container_mounting_only_the_token_has_no_model_mount() -> None:
    spec = {
        "containers": [
            {
                "name": "server",
                "volumeMounts": [
                    {"name": "kube-api-access-1", "mountPath": startup.SERVICE_ACCOUNT_MOUNT}
                ],
            }
        ]
    }
    assert startup.model_mount(spec) is None
