"""The node tests' model store: moto's S3 server (the one the other e2e tests use) on the
node's address, which pods reach over the pod network. The operator pod fetches from it to
verify and scan; a model server's download init container fetches from it into its volume.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

from e2e import nodeconfig
from tests.support import artifactservers as servers

BUCKET = "models"
#: The Secret (in the release namespace and in each model server's) holding the store's keys.
CREDENTIALS_SECRET = "model-store"
#: Listened on by moto: pods reach the node's address (the API server's too).
HOST = str(nodeconfig.NODE_IP)


@dataclass(frozen=True)
class ModelStore:
    server: servers.S3Server

    def put_model(self, prefix: str, model: pathlib.Path) -> str:
        """Upload every file of the model directory under the prefix; its s3:// URI."""
        for path in sorted(p for p in model.rglob("*") if p.is_file()):
            self.put(f"{prefix}/{path.relative_to(model).as_posix()}", path.read_bytes())
        return f"s3://{BUCKET}/{prefix}/"

    def put(self, key: str, data: bytes) -> None:
        servers.s3_put(self.server, f"{BUCKET}/{key}", data)

    def credentials_secret(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": CREDENTIALS_SECRET},
            "stringData": {
                "AWS_ACCESS_KEY_ID": self.server.access_key,
                "AWS_SECRET_ACCESS_KEY": self.server.secret_key,
            },
        }

    def environment(self) -> list[dict[str, Any]]:
        """Container env that points modelshield's fetcher (fetching.Settings) at the store,
        its keys read from CREDENTIALS_SECRET in the pod's namespace."""
        keys = [
            {
                "name": name,
                "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": name}},
            }
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
        return [{"name": "AWS_ENDPOINT_URL", "value": self.server.endpoint}, *keys]
