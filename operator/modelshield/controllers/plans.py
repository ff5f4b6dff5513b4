"""What a plan of one workload's owned objects is made of, and the policies behind it. Pure.

``planning.plan`` fills a ``Plan`` with the help of one module per concept
(``guardplans``, ``monitorplans``, ``networkplans``); they share these types. The
reconciler keeps each workload's ``Outcome`` (its plan carried out), which ``observing``
reads for the policies' status.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from modelshield.controllers import caches
from modelshield.controllers.builders import driftmonitors, networkpolicies, ownership
from modelshield.engine import compiling


@dataclasses.dataclass(frozen=True)
class Settings:
    """Operator-wide settings the builders need."""

    monitor: driftmonitors.MonitorSettings
    scraper_peers: tuple[networkpolicies.Peer, ...] = ()
    #: Ports the scraper may reach on every governed pod (with the workload's own metrics ports).
    scraper_ports: frozenset[tuple[int, str]] = frozenset()
    #: Replicas of each inference guard; each enforces its share of every rate limit.
    guard_replicas: int = 2


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something that keeps a policy from being fully in force on a workload."""

    reason: str
    message: str


@dataclasses.dataclass
class Plan:
    """The desired state next to one workload."""

    workload: caches.Key
    governing: tuple[ownership.ObjectRef, ...] = ()
    desired: dict[caches.Key, dict[str, Any]] = dataclasses.field(default_factory=dict)
    logger_patch: dict[str, Any] | None = None
    #: Problems, per policy that caused them.
    problems: dict[ownership.ObjectRef, list[Problem]] = dataclasses.field(default_factory=dict)
    #: What to write instead of a desired object that the API server refuses (deny-all).
    fallbacks: dict[caches.Key, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: The policies the NetworkPolicy is written for (they hear of a fallback).
    network_policies: tuple[ownership.ObjectRef, ...] = ()
    #: Audit policies' network blocks: what Enforce would write instead (not Degraded).
    notes: dict[ownership.ObjectRef, list[Problem]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Outcome:
    """What the last pass over a workload found, per policy: its plan's governing
    policies, problems and notes, and the writes that failed (the status reads these)."""

    governing: tuple[ownership.ObjectRef, ...] = ()
    problems: dict[ownership.ObjectRef, list[Problem]] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)
    #: What Audit policies' network blocks would change under Enforce (reported, not applied).
    notes: dict[ownership.ObjectRef, list[Problem]] = dataclasses.field(default_factory=dict)


def policy_ref(entry: caches.PolicyEntry) -> ownership.ObjectRef:
    """The owner reference target of a policy."""
    return ownership.ObjectRef.of(entry.body)


def governing_refs(
    world: caches.World, key: caches.Key
) -> list[tuple[ownership.ObjectRef, compiling.AnyPolicy]]:
    """The readable policies that govern a workload now, with their references."""
    found = []
    for compiled in world.governing(key):
        entry = world.policies.get((compiled.ref.kind, compiled.ref.namespace, compiled.ref.name))
        if entry is not None and entry.model is not None:
            found.append((policy_ref(entry), entry.model))
    return found
