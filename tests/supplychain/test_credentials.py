"""Docker config and pull-secret parsing, and WWW-Authenticate challenges."""

from __future__ import annotations

import base64
import json

from modelshield.supplychain.images import credentials


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_docker_config_forms() -> None:
    found = credentials.from_docker_config(
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": _auth("hub", "p1")},
                "registry.example.com": {"username": "u", "password": "p:2"},
                "tokens.example.com": {"identitytoken": "tok"},
                "broken.example.com": {"auth": "%%%"},
                "empty.example.com": {},
            }
        }
    )
    assert found == {
        "docker.io": credentials.Credential("hub", "p1"),
        "registry.example.com": credentials.Credential("u", "p:2"),
        "tokens.example.com": credentials.Credential("<token>", "tok"),
    }
    assert "p1" not in repr(found["docker.io"])


def test_pull_secrets_encoded_decoded_and_legacy_first_wins() -> None:
    config = {"auths": {"r.example.com": {"auth": _auth("first", "x")}}}
    encoded = base64.b64encode(json.dumps(config).encode()).decode()
    legacy = {
        "r.example.com": {"auth": _auth("second", "y")},
        "old.example.com": {"auth": _auth("old", "z")},
    }
    found = credentials.from_pull_secrets(
        [
            {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": encoded}},
            {"data": {".dockercfg": json.dumps(legacy)}},
            {"data": {".dockerconfigjson": "not json, not base64 either!"}},
        ]
    )
    assert found["r.example.com"].username == "first"
    assert found["old.example.com"].username == "old"


def test_parse_challenge() -> None:
    challenge = credentials.parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:ml/server:pull"'
    )
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert challenge.parameters == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:ml/server:pull",
    }
    basic = credentials.parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None
    assert basic.scheme == "basic"
    assert basic.parameters == {"realm": "Registry Realm"}
    assert credentials.parse_challenge("") is None
    assert credentials.Credential("a", "b").basic_header() == "Basic " + _auth("a", "b")
