"""Image references read as the runtime reads them: distribution's reference grammar.

The cases are distribution/reference's own (normalize_test.go: TestValidateReferenceName,
TestValidateRemoteName, TestNormalizedSplitHostname, TestParseDockerRef), so a rule that
drifts from the grammar kubelet's runtime uses fails here.
"""

from __future__ import annotations

import pytest

from modelshield.engine import compiling, imagechecks, references
from modelshield.supplychain.images import references as image_references
from tests.support import workloadbuilders as b

DIGEST = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"

VALID_NAMES = [
    "docker/docker",
    "library/debian",
    "debian",
    "localhost/library/debian",
    "localhost/debian",
    "LOCALDOMAIN/library/debian",
    "LOCALDOMAIN/debian",
    "docker.io/docker/docker",
    "docker.io/library/debian",
    "docker.io/debian",
    "index.docker.io/docker/docker",
    "index.docker.io/library/debian",
    "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian",
    "192.168.0.1",
    "192.168.0.1:80",
    "192.168.0.1:8/debian",
    "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "Docker/docker",
    "DOCKER/docker",
    # TestValidateRemoteName
    "docker-rules/docker",
    "docker---rules/docker",
    "doc/docker",
    "d/docker",
    "jess/t",
    "dock__er/docker",
]

INVALID_NAMES = [
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker/Docker",
    "docker.io/docker///docker",
    "[fc00::1]",
    "[fc00::1]:5000",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    # TestValidateRemoteName
    "docker-/docker",
    "-docker-/docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_" * 4 + "/docker",
    # a digest the runtime cannot check
    "busybox@md5:" + "a" * 32,
    "busybox@sha256:" + "A" * 64,
    "busybox@sha256:" + "a" * 63,
    "",
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names_parse(name: str) -> None:
    assert references.normalized(name) is not None


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(references.InvalidReferenceError):
        references.parse(name)
    assert references.normalized(name) is None


@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("foo", "docker.io", "library/foo"),
        ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ("docker.io/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        # The rule this module exists for: an upper-case first component is a host.
        ("Evil/server", "Evil", "server"),
        ("EVIL/ml/server", "EVIL", "ml/server"),
        ("localhost/server", "localhost", "server"),
    ],
)
def test_the_registry_host_is_split_as_the_runtime_splits_it(
    text: str, domain: str, path: str
) -> None:
    parsed = references.parse(text)
    assert (parsed.domain, parsed.path) == (domain, path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:latest", "docker.io/library/busybox:latest"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox:latest", "docker.io/library/busybox:latest"),
        ("library/busybox:latest", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
        ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
        (f"gcr.io/library/busybox:latest@{DIGEST}", f"gcr.io/library/busybox@{DIGEST}"),
        ("Evil/server:latest", "Evil/server:latest"),
    ],
)
def test_parse_docker_ref(text: str, expected: str) -> None:
    assert references.normalized(text) == expected


def _images(*prefixes: str) -> compiling.CompiledImages:
    policy = compiling.compile_policy(b.policy(images={"allowedRegistries": list(prefixes)}))
    assert policy.images is not None
    return policy.images


def test_an_upper_case_first_component_is_not_docker_hub_for_the_allow_list() -> None:
    """Regression: 'Evil/server' was judged as docker.io/Evil/server; the runtime pulls
    it from the host 'Evil'."""
    hub = _images("docker.io/")
    assert not imagechecks.allows_registry(hub, "Evil/server:latest")
    assert imagechecks.allows_registry(hub, "evil/server:latest")
    assert imagechecks.allows_registry(_images("Evil/"), "Evil/server:latest")


def test_the_verifier_fetches_from_the_host_the_runtime_pulls_from() -> None:
    """The verifier's reference parser splits the registry by the same rule."""
    parsed = image_references.parse("Evil/server:latest")
    assert (parsed.registry, parsed.repository) == ("Evil", "server")
    assert image_references.parse("evil/server").registry == "docker.io"
