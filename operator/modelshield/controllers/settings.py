"""kopf's settings for modelshield: bookkeeping in annotations, one active instance.

- kopf's progress and diff-base go to annotations under ``modelshield.dev``, so the
  ``status`` of our resources holds only modelshield's own fields (the CRD schemas are
  strict and would prune anything else).
- Peering: several replicas may run; one is active (``peering_name``); the others wait.
- The watch streams of the kinds the operator owns are filtered by label on the server,
  so it never lists every ConfigMap, Service or NetworkPolicy of the cluster.
"""

from __future__ import annotations

import logging

import kopf

from modelshield.controllers.builders import ownership

ANNOTATION_PREFIX = "modelshield.dev"
PEERING_NAME = "modelshield"
#: Owned kinds watched with a label selector (Deployments are watched whole: workloads).
OWNED_FILTERED = (
    "networkpolicies",
    "services",
    "configmaps",
    "serviceaccounts",
    "roles",
    "rolebindings",
)


def configure(
    settings: kopf.OperatorSettings,
    *,
    standalone: bool,
    peering_name: str = PEERING_NAME,
    priority: int = 0,
) -> None:
    """Apply modelshield's choices to kopf's settings (in a startup handler)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    # kopf would post every handler's log line as an Event on the object: only problems.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "modelshield"
    settings.posting.event_name_prefix = "modelshield-"
    settings.peering.standalone = standalone
    settings.peering.name = peering_name
    settings.peering.priority = priority
    settings.peering.clusterwide = True
    settings.peering.mandatory = False
    for plural in OWNED_FILTERED:
        settings.watching.label_selectors[plural] = ownership.MANAGED_SELECTOR
    # A quiet watch stream is reopened rather than trusted forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
