"""Secrets for admission: the TTL cache, secretRef signers made inline, pull secrets.

The Secrets come from an in-memory source (``InMemorySecretsForTests``): what is under
test is what the webhook does with them, not the API server's GET (the e2e tests read
real Secrets). Resolved keys are loaded by the real signer loader.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.cli import main as cli_main
from modelshield.engine import compiling, facts, workloads
from modelshield.supplychain.images import (
    credentials,
    gathering,
    secretreading,
    signerkeys,
    signers,
)
from modelshield_webhooks import metrics, reviewfacts
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts

OTHER_KEY = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
    "-----END PUBLIC KEY-----\n"
)


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


class InMemorySecretsForTests:
    """A SecretSource over a dict, counting reads; ``failing`` makes reads fail."""

    def __init__(self, secrets: Mapping[tuple[str, str], Mapping[str, str]] | None = None) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {
            key: {k: _b64(v) for k, v in data.items()} for key, data in (secrets or {}).items()
        }
        self.reads: list[tuple[str, str]] = []
        self.failing = False
        self.delay = 0.0

    async def read(self, namespace: str, name: str) -> secretreading.SecretData | None:
        self.reads.append((namespace, name))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failing:
            raise secretreading.SecretReadError(f"get Secret {namespace}/{name}: HTTP 503")
        return self.secrets.get((namespace, name))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


#: The fixed verdicts, recording what each verification was given (``calls``).
RecordingVerifierForTests = verdicts.FixedVerdictVerifierForTests


def _requirement(*, attestation_secret: bool = False) -> compiling.CompiledImages:
    spec: dict[str, Any] = {
        "signers": [
            {"name": scenarios.SIGNER, "secretRef": {"name": "cosign", "key": "cosign.pub"}},
            {"name": "inline", "publicKey": scenarios.PUBLIC_KEY},
        ]
    }
    if attestation_secret:
        spec["attestations"] = [
            {
                "name": "sbom",
                "predicateType": "https://spdx.dev/Document",
                "signers": [
                    {"name": "sbom-signer", "secretRef": {"name": "sbom", "key": "key.pub"}}
                ],
            }
        ]
    requirement = policies.ImageRequirements.model_validate(spec)
    policy = compiling.compile_policy(
        policies.ModelSecurityPolicy.model_validate(
            {
                "apiVersion": "modelshield.dev/v1alpha1",
                "kind": "ModelSecurityPolicy",
                "metadata": {"name": "p", "namespace": scenarios.ENFORCED},
                "spec": {
                    "selector": {"matchLabels": dict(scenarios.LABELS)},
                    "images": requirement.model_dump(by_alias=True, exclude_none=True),
                },
            }
        )
    )
    assert policy.images is not None
    return policy.images


def _cache(
    source: InMemorySecretsForTests, clock: Clock, ttl: float = 60.0
) -> secretreading.CachedSecrets:
    return secretreading.CachedSecrets(source, ttl_seconds=ttl, clock=clock)


# --- the cache ------------------------------------------------------------------------


async def test_a_secret_is_read_once_per_ttl_and_again_after_it() -> None:
    source = InMemorySecretsForTests({("ml", "cosign"): {"cosign.pub": "pem"}})
    clock = Clock()
    cache = _cache(source, clock)
    assert cache.data_now("ml", "cosign") == (False, None)
    assert await cache.get("ml", "cosign") == {"cosign.pub": _b64("pem")}
    assert await cache.get("ml", "cosign") == {"cosign.pub": _b64("pem")}
    assert cache.data_now("ml", "cosign")[0]
    assert source.reads == [("ml", "cosign")]
    clock.now += 61
    assert cache.data_now("ml", "cosign") == (False, None)
    await cache.get("ml", "cosign")
    assert source.reads == [("ml", "cosign")] * 2


async def test_a_missing_secret_is_cached_as_missing() -> None:
    source = InMemorySecretsForTests()
    cache = _cache(source, Clock())
    assert await cache.get("ml", "absent") is None
    assert cache.data_now("ml", "absent") == (True, None)
    assert len(source.reads) == 1


async def test_a_failed_read_is_remembered_briefly_and_a_failed_refresh_keeps_the_old_value() -> (
    None
):
    source = InMemorySecretsForTests({("ml", "cosign"): {"k": "v"}})
    clock = Clock()
    cache = _cache(source, clock)
    source.failing = True
    assert await cache.get("ml", "cosign") is None
    assert await cache.get("ml", "cosign") is None
    assert len(source.reads) == 1  # not one read per review while the API fails
    clock.now += secretreading.ERROR_TTL_SECONDS + 1
    source.failing = False
    assert await cache.get("ml", "cosign") == {"k": _b64("v")}
    source.failing = True
    await cache.refresh()
    assert cache.data_now("ml", "cosign") == (True, {"k": _b64("v")})
    clock.now += 61  # never refreshed since: expired, so nothing stale is trusted
    assert cache.data_now("ml", "cosign") == (False, None)


async def test_refresh_rereads_what_is_used_sees_changes_and_drops_idle_entries() -> None:
    source = InMemorySecretsForTests({("ml", "a"): {"k": "1"}, ("ml", "b"): {"k": "1"}})
    clock = Clock()
    cache = _cache(source, clock)
    await cache.get("ml", "a")
    await cache.get("ml", "b")
    version = cache.version
    source.secrets[("ml", "a")] = {"k": _b64("2")}
    await cache.refresh()
    assert cache.data_now("ml", "a") == (True, {"k": _b64("2")})
    assert cache.version > version
    clock.now += secretreading.IDLE_SECONDS - 10
    cache.data_now("ml", "a")  # used; b is not
    await cache.refresh()  # refreshing keeps a alive
    clock.now += 20
    await cache.refresh()
    assert len(cache) == 1
    assert cache.data_now("ml", "b") == (False, None)


# --- secretRef signers ----------------------------------------------------------------


async def test_secret_ref_signers_are_resolved_inline_and_load_as_real_keys() -> None:
    source = InMemorySecretsForTests(
        {
            ("ml", "cosign"): {"cosign.pub": scenarios.PUBLIC_KEY},
            ("ml", "sbom"): {"key.pub": OTHER_KEY},
        }
    )
    keys = signerkeys.SignerKeys(_cache(source, Clock()))
    requirement = _requirement(attestation_secret=True)
    assert signerkeys.secret_refs(requirement.source) == {
        ("cosign", "cosign.pub"),
        ("sbom", "key.pub"),
    }
    assert keys.resolved_now(requirement, "ml") is None  # not read yet: the cold path reads
    resolved = await keys.resolve(requirement, "ml")
    assert resolved.key != requirement.key
    assert signerkeys.secret_refs(resolved.source) == frozenset()
    loaded, problems = signers.compile_signers(resolved.source.signers)
    assert problems == []
    assert [s.name for s in loaded] == [scenarios.SIGNER, "inline"]
    loaded, problems = signers.compile_signers(resolved.source.attestations[0].signers)
    assert (problems, [s.name for s in loaded]) == ([], ["sbom-signer"])
    reads = len(source.reads)
    assert keys.resolved_now(requirement, "ml") is resolved
    assert len(source.reads) == reads  # the hot path reads nothing


async def test_the_key_depends_on_the_secrets_content_not_on_the_namespace() -> None:
    source = InMemorySecretsForTests(
        {
            ("ml", "cosign"): {"cosign.pub": scenarios.PUBLIC_KEY},
            ("team-b", "cosign"): {"cosign.pub": OTHER_KEY},
            ("team-c", "cosign"): {"cosign.pub": scenarios.PUBLIC_KEY},
        }
    )
    keys = signerkeys.SignerKeys(_cache(source, Clock()))
    requirement = _requirement()
    in_ml = await keys.resolve(requirement, "ml")
    in_b = await keys.resolve(requirement, "team-b")
    in_c = await keys.resolve(requirement, "team-c")
    assert in_ml.key != in_b.key  # different keys never share a verification result
    assert in_ml.key == in_c.key


async def test_a_missing_secret_or_key_leaves_the_signer_unresolved() -> None:
    source = InMemorySecretsForTests({("ml", "cosign"): {"other.pub": scenarios.PUBLIC_KEY}})
    keys = signerkeys.SignerKeys(_cache(source, Clock()))
    requirement = _requirement()
    for namespace in ("ml", "nowhere"):
        resolved = await keys.resolve(requirement, namespace)
        assert resolved.key == requirement.key
        _, problems = signers.compile_signers(resolved.source.signers, namespace=namespace)
        assert problems == [
            f"signer {scenarios.SIGNER}: Secret {namespace}/cosign key cosign.pub not found"
        ]


async def test_a_rotated_key_is_seen_after_refresh() -> None:
    source = InMemorySecretsForTests({("ml", "cosign"): {"cosign.pub": scenarios.PUBLIC_KEY}})
    cache = _cache(source, Clock())
    keys = signerkeys.SignerKeys(cache)
    requirement = _requirement()
    before = await keys.resolve(requirement, "ml")
    source.secrets[("ml", "cosign")] = {"cosign.pub": _b64(OTHER_KEY)}
    await cache.refresh()
    after = keys.resolved_now(requirement, "ml")
    assert after is not None
    assert after.key != before.key
    assert after.source.signers[0].public_key == OTHER_KEY


# --- gathering image facts ------------------------------------------------------------


async def _gather(
    verifier: RecordingVerifierForTests,
    requirement: compiling.CompiledImages,
    access: gathering.SecretAccess,
    pull_secret_names: Sequence[str] = (),
    namespace: str = "ml",
) -> dict[reviewfacts.ImageKey, facts.ImageFacts]:
    return await reviewfacts.gather_images(
        [(scenarios.SIGNED, requirement)],
        verifier,
        deadline_seconds=1.0,
        namespace=namespace,
        counters=metrics.Metrics(),
        access=access,
        pull_secret_names=pull_secret_names,
    )


async def test_gathering_verifies_the_resolved_requirement_once_then_serves_the_cache() -> None:
    source = InMemorySecretsForTests({("ml", "cosign"): {"cosign.pub": scenarios.PUBLIC_KEY}})
    access = gathering.SecretAccess(signer_keys=signerkeys.SignerKeys(_cache(source, Clock())))
    verifier = RecordingVerifierForTests()
    requirement = _requirement()
    found = await _gather(verifier, requirement, access)
    # The engine looks facts up under the policy's own requirement key.
    assert found[(scenarios.SIGNED, requirement.key)].signature.outcome == (facts.Outcome.VERIFIED)
    [call] = verifier.calls
    assert call["key"] != requirement.key
    assert call["requirement"].signers[0].public_key == scenarios.PUBLIC_KEY
    reads = len(source.reads)
    again = await _gather(verifier, requirement, access)
    assert again == found
    assert len(verifier.calls) == 1
    assert len(source.reads) == reads


async def test_without_the_flag_the_verifier_gets_the_unresolved_signer() -> None:
    verifier = RecordingVerifierForTests()
    requirement = _requirement()
    await _gather(verifier, requirement, gathering.NO_SECRETS, ["registry-auth"])
    [call] = verifier.calls
    assert call["key"] == requirement.key
    assert call["requirement"].signers[0].secret_ref is not None
    assert call["pull_secrets"] == []


def _docker_config(host: str) -> str:
    auth = base64.b64encode(b"puller:s3cret").decode()
    return json.dumps({"auths": {host: {"auth": auth}}})


async def test_pull_secrets_are_read_for_a_cold_verification_only() -> None:
    source = InMemorySecretsForTests(
        {("ml", "registry-auth"): {".dockerconfigjson": _docker_config("registry.example.com")}}
    )
    cache = _cache(source, Clock())
    access = gathering.SecretAccess(pull_secrets=cache)
    verifier = RecordingVerifierForTests()
    requirement = _requirement()
    await _gather(verifier, requirement, access, ["registry-auth", "absent"])
    [call] = verifier.calls
    found = credentials.from_pull_secrets(call["pull_secrets"])
    assert found["registry.example.com"].username == "puller"
    assert sorted(source.reads) == [("ml", "absent"), ("ml", "registry-auth")]
    await _gather(verifier, requirement, access, ["registry-auth", "absent"])
    assert len(verifier.calls) == 1
    assert len(source.reads) == 2  # a cached verification reads no Secret


def test_pull_secret_names_come_from_the_pod_template_in_order() -> None:
    obj = scenarios.workload(scenarios.KINDS[3])
    obj["spec"]["template"]["spec"]["imagePullSecrets"] = [
        {"name": "first"},
        {"name": "second"},
        {"name": "first"},
        {},
    ]
    workload = workloads.parse(copy.deepcopy(obj))
    assert secretreading.pull_secret_names(workload.containers) == ("first", "second")


# --- cluster policies -----------------------------------------------------------------


def test_a_cluster_policy_with_a_secret_ref_signer_is_broken() -> None:
    cluster = scenarios.policy("", name="baseline")
    cluster["kind"] = "ClusterModelSecurityPolicy"
    cluster["spec"]["namespaceSelector"] = {}
    cluster["spec"]["images"]["signers"] = [
        {"name": "k", "secretRef": {"name": "cosign", "key": "cosign.pub"}}
    ]
    state = scenarios.synced_state([cluster])
    [broken] = state.broken_for("anywhere")
    assert "secretRef" in broken.problem
    namespaced = scenarios.policy(scenarios.ENFORCED)
    namespaced["spec"]["images"]["signers"] = cluster["spec"]["images"]["signers"]
    state = scenarios.synced_state([namespaced])
    assert state.broken_for(scenarios.ENFORCED) == []
    assert state.counts()["policies"] == 1


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"\xff\xfe").decode()])
def test_an_undecodable_value_is_not_a_key(value: str) -> None:
    requirement = _requirement()
    resolved = signerkeys.inlined(requirement, {"cosign": {"cosign.pub": value}})
    assert resolved.source.signers[0].secret_ref is not None


async def test_concurrent_reviews_share_one_read_that_outlives_a_deadline() -> None:
    source = InMemorySecretsForTests({("ml", "cosign"): {"cosign.pub": scenarios.PUBLIC_KEY}})
    source.delay = 0.3
    cache = _cache(source, Clock())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(cache.get("ml", "cosign"), 0.05)
    found = await asyncio.gather(*(cache.get("ml", "cosign") for _ in range(5)))
    assert all(f == {"cosign.pub": _b64(scenarios.PUBLIC_KEY)} for f in found)
    assert len(source.reads) == 1  # the timed-out review did not cancel the shared read


async def test_a_slow_secret_read_ends_within_the_deadline_unresolved() -> None:
    source = InMemorySecretsForTests({("ml", "cosign"): {"cosign.pub": scenarios.PUBLIC_KEY}})
    source.delay = 5.0
    access = gathering.SecretAccess(signer_keys=signerkeys.SignerKeys(_cache(source, Clock())))
    verifier = RecordingVerifierForTests()
    requirement = _requirement()
    started = time.monotonic()
    await reviewfacts.gather_images(
        [(scenarios.SIGNED, requirement)],
        verifier,
        deadline_seconds=0.2,
        namespace="ml",
        counters=metrics.Metrics(),
        access=access,
    )
    assert time.monotonic() - started < 1.0
    [call] = verifier.calls
    assert call["key"] == requirement.key
    assert call["requirement"].signers[0].secret_ref is not None  # fails closed, named


# --- the command line -----------------------------------------------------------------


def test_the_flags_are_off_by_default_and_a_zero_ttl_is_refused(
    serving_files: tuple[pathlib.Path, pathlib.Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = serving_files
    parser = cli_main.build_parser()
    defaults = parser.parse_args(["webhook", f"--cert={cert}", f"--key={key}"])
    assert (defaults.read_signer_secrets, defaults.read_pull_secrets) == (False, False)
    assert defaults.secret_ttl_seconds == secretreading.DEFAULT_TTL_SECONDS
    arguments = parser.parse_args(
        ["webhook", f"--cert={cert}", f"--key={key}", "--read-signer-secrets"]
    )
    assert arguments.read_signer_secrets
    assert not arguments.read_pull_secrets
    assert (
        cli_main.main(["webhook", f"--cert={cert}", f"--key={key}", "--secret-ttl-seconds=0"]) == 2
    )
    assert "--secret-ttl-seconds must be positive" in capsys.readouterr().err
