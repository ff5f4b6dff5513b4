"""The init container that re-verifies the model at pod start."""

from __future__ import annotations

import re

import pytest

from modelshield.cli import main
from modelshield.modelartifacts import startup

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
