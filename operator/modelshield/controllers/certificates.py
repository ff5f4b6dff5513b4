"""Webhook certificates when cert-manager is absent (``--manage-certificates``).

At startup and then every ``CHECK_INTERVAL``: read the Secret; issue a new CA and serving
certificate when there is none or less than a third of its validity is left
(``webhookcerts.rotation_due``); then make the caBundle of each of modelshield's webhook
configurations match the Secret's. The admission server reloads the certificate from the
mounted Secret when it changes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import logging
from typing import Any

import kopf

from modelshield.controllers import writing
from modelshield.controllers.builders import ownership, webhookcerts

LOGGER = logging.getLogger("modelshield.certificates")
CHECK_INTERVAL = 3600.0
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the certificate lives and whom it serves."""

    namespace: str
    service: str
    secret: str
    webhook_configurations: tuple[str, ...]
    validity: datetime.timedelta = webhookcerts.DEFAULT_VALIDITY


class CertificateManager:
    """Keeps the Secret current and the caBundles in sync with it."""

    def __init__(self, kube: writing.Kube, target: Target) -> None:
        self.kube = kube
        self.target = target

    async def ensure(self, now: datetime.datetime | None = None) -> webhookcerts.Bundle:
        """One pass: rotate if due, then sync every caBundle. Returns the bundle in force."""
        now = now or datetime.datetime.now(datetime.UTC)
        target = self.target
        secret = await self.kube.get("Secret", target.namespace, target.secret)
        bundle = webhookcerts.from_secret(secret)
        reason = webhookcerts.rotation_due(bundle, target.service, target.namespace, now)
        if reason is not None:
            LOGGER.info("issuing the webhook certificate: %s", reason)
            bundle = webhookcerts.issue(
                target.service,
                target.namespace,
                now,
                validity=target.validity,
                previous_ca=bundle.ca_bundle if bundle else "",
            )
            manifest = webhookcerts.secret_manifest(
                target.secret,
                target.namespace,
                bundle,
                {ownership.MANAGED_BY_LABEL: ownership.MANAGED_BY},
            )
            if secret is None:
                await self.kube.create(manifest)
            else:
                await self.kube.replace(
                    manifest, str(secret["metadata"].get("resourceVersion", ""))
                )
        assert bundle is not None
        await self.sync_ca_bundles(bundle.ca_bundle)
        return bundle

    async def sync_ca_bundles(self, ca_bundle: str) -> None:
        """Set the caBundle of every webhook of modelshield's configurations."""
        for kind in WEBHOOK_KINDS:
            for name in self.target.webhook_configurations:
                configuration = await self.kube.get(kind, "", name)
                if configuration is None:
                    continue
                webhooks = webhookcerts.with_ca_bundle(
                    configuration.get("webhooks") or [], ca_bundle
                )
                if webhooks is None:
                    continue
                # The resourceVersion makes the patch fail rather than undo a concurrent edit.
                await self.kube.patch(
                    kind,
                    "",
                    name,
                    {
                        "metadata": {
                            "resourceVersion": configuration["metadata"]["resourceVersion"]
                        },
                        "webhooks": webhooks,
                    },
                )
                LOGGER.info("caBundle of %s %s updated", kind, name)

    async def run_forever(self, interval: float = CHECK_INTERVAL) -> None:
        """Check at once, then every interval; failures are retried sooner."""
        delay = 0.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self.ensure()
                delay = interval
            except writing.ApiException as error:
                LOGGER.warning("webhook certificate: %s %s", error.status, error.reason)
                delay = min(interval, 30.0)


def register(
    registry: kopf.OperatorRegistry, *, kube: writing.Kube, arguments: argparse.Namespace
) -> CertificateManager | None:
    """Run the certificate manager with the operator when asked to."""
    if not arguments.manage_certificates:
        return None
    manager = CertificateManager(
        kube,
        Target(
            namespace=arguments.webhook_namespace,
            service=arguments.webhook_service,
            secret=arguments.webhook_secret,
            webhook_configurations=tuple(arguments.webhook_configuration or ("modelshield",)),
        ),
    )
    state: dict[str, Any] = {}

    @kopf.on.startup(registry=registry)
    async def start_certificates(**_: Any) -> None:
        state["task"] = asyncio.get_running_loop().create_task(manager.run_forever())

    @kopf.on.cleanup(registry=registry)
    async def stop_certificates(**_: Any) -> None:
        task = state.pop("task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return manager
