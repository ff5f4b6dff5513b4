"""A guard in front of a real model server: keys, policies, the guard's configuration, and
calls through it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from modelshield.guard import config, server
from tests.support import modelserver

KEY = "batch-key-0123456789"

OTHER_MODEL_KEY = "other-model-key-0123"

ROWS = modelserver.sample_rows(3)

PREDICT = json.dumps({"instances": ROWS}).encode()


def write_secret(root: pathlib.Path, name: str, keys: dict[str, str]) -> None:
    """A Secret mounted the kubelet's way: ..data symlink to a timestamped directory."""
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
    for client, key in keys.items():
        (directory / client).write_text(hashlib.sha256(key.encode()).hexdigest())


def guard_config(
    upstream: str, keys_dir: pathlib.Path, *policies: dict[str, Any], **extra: Any
) -> config.GuardConfig:
    """A guard configuration with these policies (namespaced, Enforce unless given)."""
    return config.GuardConfig.model_validate(
        {
            "upstream": upstream,
            "apiKeysDir": str(keys_dir),
            "policies": [
                {
                    "kind": "ModelSecurityPolicy",
                    "namespace": "ml",
                    "name": f"p{i}",
                    "enforcement": "Enforce",
                    **p,
                }
                for i, p in enumerate(policies)
            ],
            **extra,
        }
    )


KEYS_POLICY: dict[str, Any] = {
    "api": {
        "authentication": {"apiKeys": {"secretRef": {"name": "fraud-keys"}}},
        "authorization": {"allow": [{"apiKeyClients": ["batch"], "models": ["fraud"]}]},
        "requests": {"maxBodyBytes": 65536, "maxInstances": 100},
    }
}


class Stack:
    """A model server and a guard in front of it, both on real sockets."""

    def __init__(
        self, model: modelserver.ModelServer, upstream: str, guard: str, pipeline: server.Pipeline
    ) -> None:
        self.model = model
        self.upstream = upstream
        self.url = guard
        self.pipeline = pipeline


@pytest.fixture(scope="module")
def trained() -> Any:
    """The classifier, trained once."""
    return modelserver.train()


@pytest.fixture
def keys_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """Two Secrets: this model's keys and another model's."""
    root = tmp_path / "api-keys"
    write_secret(root, "fraud-keys", {"batch": KEY})
    write_secret(root, "other-keys", {"batch": OTHER_MODEL_KEY})
    return root


@contextlib.asynccontextmanager
async def _stack(
    trained: Any,
    keys_dir: pathlib.Path,
    *policies: dict[str, Any],
    delay: float = 0.0,
    **extra: Any,
) -> AsyncIterator[Stack]:
    model = modelserver.ModelServer(trained, delay=delay)
    async with modelserver.serving(model.app()) as upstream:
        settings = guard_config(upstream, keys_dir, *policies, **extra)
        pipeline = server.pipeline_from_config(settings)
        async with serving_guard(pipeline) as guard:
            yield Stack(model, upstream, guard, pipeline)


#: Which server the guard's tests serve the clients' port with: the guard's own (what
#: ``modelshield guard`` runs by default) unless GUARD_HTTP_SERVER=aiohttp.
HTTP_SERVER = os.environ.get("GUARD_HTTP_SERVER", "own")


@contextlib.asynccontextmanager
async def serving_guard(pipeline: server.Pipeline, http_server: str = "") -> AsyncIterator[str]:
    """Serve a pipeline's clients' port on 127.0.0.1 as ``modelshield guard
    --http-server`` does (default ``HTTP_SERVER``); yields its base URL. The pipeline is
    closed afterwards."""
    if (http_server or HTTP_SERVER) == "aiohttp":
        async with modelserver.serving(server.build_app(pipeline)) as url:
            yield url
        return
    serving = server.build_server(pipeline)
    port = await serving.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await serving.close()
        await pipeline.close()


@contextlib.asynccontextmanager
async def guarded_model(
    trained: Any,
    keys_dir: pathlib.Path,
    http_server: str = "",
    policy: dict[str, Any] = KEYS_POLICY,
) -> AsyncIterator[tuple[int, modelserver.ModelServer]]:
    """A guard with this policy, on this server (``serving_guard``'s choice), in front of a
    real scikit-learn model server: the guard's port, and the model server (what it saw)."""
    model = modelserver.ModelServer(trained)
    async with modelserver.serving(model.app()) as upstream:
        pipeline = server.pipeline_from_config(guard_config(upstream, keys_dir, policy))
        async with serving_guard(pipeline, http_server) as url:
            yield int(url.rsplit(":", 1)[1]), model


async def call(
    url: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    """One request with aiohttp (paths that a client would not normalise)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, data=body, headers=sent) as response,
    ):
        return response.status, dict(response.headers), await response.read()
