"""The KServe bypass corpus on a cluster: its objects in the test namespace, the namespace
prepared for KServe, and labels spelled as KServe spells them.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from e2e.clients import Kubectl
from e2e.kserve_objects import (
    SELECTED,
    apply_artifact,
    serving_runtime,
)
from e2e.webhooks import Images
from tests.support import kservecorpus as corpus


def in_namespace(namespace: str, images: Images, body: dict[str, Any]) -> str:
    """The corpus object in the test namespace, running the registry's real images."""
    text = json.dumps({**body, "metadata": {**body["metadata"], "namespace": namespace}})
    for written, real in (
        (corpus.SIGNED_IMAGE, images.signed),
        (corpus.UNSIGNED_IMAGE, images.unsigned),
        (corpus.STORAGE_INITIALIZER_IMAGE, images.signed),
    ):
        text = text.replace(json.dumps(written)[1:-1], real)
    return text


#: An entry of KServe's storage Secret: the server it names is where the storage
#: initializer downloads from, and admission never reads it.
_MINIO_ENTRY = json.dumps(
    {
        "type": "s3",
        "bucket": "models",
        "endpoint_url": "http://127.0.0.1:9",
        "access_key_id": "e2e",
        "secret_access_key": "e2e",
    }
)

#: The storage Secret KServe reads a `storage.key` from (its ConfigMap's
#: storageSpecSecretName), with the bucket the storage-key trick leaves out, and the
#: `default_s3` entry KServe hands over for a storage spec that names no key.
STORAGE_SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "storage-config"},
    "stringData": {"localMinIO": _MINIO_ENTRY, "default_s3": _MINIO_ENTRY},
}


def _as_kserve_labels_it(text: str) -> str:
    """The corpus selects on `app`, which KServe overwrites on the pods it makes
    (app: isvc.<name>-<component>); select on a label KServe copies instead."""
    written = json.dumps(corpus.LABELS)[1:-1]
    return text.replace(written, json.dumps(SELECTED)[1:-1])


def _prepare(kubectl: Kubectl, namespace: str, images: Images) -> None:
    for name, uri in corpus.ARTIFACTS.items():
        apply_artifact(kubectl, namespace, name, uri, images.public_key)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=serving_runtime(images))
    kubectl("apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(STORAGE_SECRET))
