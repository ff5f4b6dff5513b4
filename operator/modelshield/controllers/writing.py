"""The only module of the reconcilers that talks to the Kubernetes API.

Requests go through the ``kubernetes`` package's ApiClient (its authentication, TLS and
connection pool) but carry plain JSON both ways: no model classes, which is faster and
lets the comparison code work on the same dicts it builds. The synchronous client runs in
a bounded thread pool, so the event loop never blocks. Every verb used here is listed in
``rbac``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from kubernetes import client

FIELD_MANAGER = "modelshield"
MERGE_PATCH = "application/merge-patch+json"
ApiException = client.exceptions.ApiException

#: Collection paths of the kinds the operator reads and writes, by kind.
_COLLECTIONS: Mapping[str, str] = {
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies",
    "ConfigMap": "/api/v1/namespaces/{namespace}/configmaps",
    "Service": "/api/v1/namespaces/{namespace}/services",
    "Secret": "/api/v1/namespaces/{namespace}/secrets",
    "ServiceAccount": "/api/v1/namespaces/{namespace}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments",
    "Event": "/api/v1/namespaces/{namespace}/events",
    "PolicyReport": "/apis/wgpolicyk8s.io/v1alpha2/namespaces/{namespace}/policyreports",
    "ModelSecurityPolicy": "/apis/modelshield.dev/v1alpha1/namespaces/{namespace}/modelsecuritypolicies",
    "ClusterModelSecurityPolicy": "/apis/modelshield.dev/v1alpha1/clustermodelsecuritypolicies",
    "InferenceService": "/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices",
    "ModelArtifact": "/apis/modelshield.dev/v1alpha1/namespaces/{namespace}/modelartifacts",
    "ValidatingWebhookConfiguration": "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
    "MutatingWebhookConfiguration": "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
    "ClusterKopfPeering": "/apis/kopf.dev/v1/clusterkopfpeerings",
}


def describe(error: ApiException) -> str:
    """An API error in a line: status, reason and the server's own message when it sent one
    (a 422's field errors, an admission policy's denial)."""
    text = f"{error.status} {error.reason}"
    try:
        message = json.loads(error.body or "{}").get("message")
    except (ValueError, AttributeError, TypeError):
        return text
    return f"{text}: {message}" if isinstance(message, str) and message else text


def object_path(kind: str, namespace: str, name: str = "") -> str:
    """The API path of a collection (name empty) or of one object."""
    path = _COLLECTIONS[kind].format(namespace=quote(namespace, safe=""))
    return f"{path}/{quote(name, safe='')}" if name else path


class Kube:
    """Async access to the few kinds the operator reads and writes."""

    def __init__(self, api_client: client.ApiClient, *, max_workers: int = 16) -> None:
        self.api_client = api_client
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="modelshield-kube"
        )

    def close(self) -> None:
        """Stop the thread pool (the API client belongs to the caller)."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _request_sync(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Sequence[tuple[str, str]] = (),
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*serialized)
        response.read()  # type: ignore[no-untyped-call]  # unannotated upstream
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        document: dict[str, Any] = json.loads(response.data) if response.data else {}
        return document

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Sequence[tuple[str, str]] = (),
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One API request off the event loop; raises ApiException on a non-2xx answer."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor,
            functools.partial(self._request_sync, method, path, body, query, content_type),
        )

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object; returns it as stored."""
        metadata = body["metadata"]
        path = object_path(str(body["kind"]), str(metadata.get("namespace", "")))
        return await self.request("POST", path, dict(body), [("fieldManager", FIELD_MANAGER)])

    async def replace(self, body: Mapping[str, Any], resource_version: str) -> dict[str, Any]:
        """Replace an object as a whole (hand edits included) if it is still at that version."""
        metadata = {**body["metadata"], "resourceVersion": resource_version}
        path = object_path(str(body["kind"]), str(metadata.get("namespace", "")), metadata["name"])
        return await self.request(
            "PUT", path, {**body, "metadata": metadata}, [("fieldManager", FIELD_MANAGER)]
        )

    async def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete an object, only if it is still the one seen (same uid); gone is fine."""
        options = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        try:
            await self.request("DELETE", object_path(kind, namespace, name), options)
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object as stored, or None."""
        try:
            return await self.request("GET", object_path(kind, namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def patch(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch an object."""
        return await self.request(
            "PATCH",
            object_path(kind, namespace, name),
            dict(patch),
            [("fieldManager", FIELD_MANAGER)],
            MERGE_PATCH,
        )

    async def config_map_key(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a ConfigMap, or None when the ConfigMap or the key is missing."""
        found = await self.get("ConfigMap", namespace, name)
        value = ((found or {}).get("data") or {}).get(key)
        return value if isinstance(value, str) else None

    async def patch_policy_status(self, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """Merge-patch a policy's status subresource (only modelshield writes it)."""
        metadata = body["metadata"]
        path = object_path(
            str(body["kind"]), str(metadata.get("namespace") or ""), metadata["name"]
        )
        await self.request(
            "PATCH",
            f"{path}/status",
            {"status": dict(status)},
            [("fieldManager", FIELD_MANAGER)],
            MERGE_PATCH,
        )

    async def event(
        self, involved: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        """Record an Event about an object; failing to is never fatal."""
        metadata = involved.get("metadata") or {}
        namespace = metadata.get("namespace") or "default"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {
                "generateName": f"{metadata.get('name', 'modelshield')}.",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": metadata.get("name"),
                "namespace": metadata.get("namespace"),
                "uid": metadata.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "modelshield"},
            "reportingComponent": "modelshield",
            "reportingInstance": "modelshield-operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        with contextlib.suppress(ApiException):
            await self.request("POST", object_path("Event", namespace), body)

    async def list_all(self, path: str, label_selector: str = "") -> list[dict[str, Any]]:
        """Every object at a list path (e.g. /apis/apps/v1/deployments), kind and apiVersion set.

        A missing kind (its CRD not installed) is an empty list.
        """
        query = [("labelSelector", label_selector)] if label_selector else []
        try:
            document = await self.request("GET", path, query=query)
        except ApiException as error:
            if error.status == 404:
                return []
            raise
        kind = str(document.get("kind", "")).removesuffix("List")
        api_version = document.get("apiVersion", "")
        items: list[dict[str, Any]] = document.get("items") or []
        for item in items:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        return items
