"""``modelshield operator`` registers the ungoverned-namespace handlers by default, after the
policy reconciler's (kopf runs an object's watch handlers in registration order: the
reconciler's records the object in the World the labeller then reads), and not with
--no-label-ungoverned-namespaces or --namespace.

Issue 17: the labeller kept kopf indices of namespaces and both policy kinds, a third copy
of what the World holds; it reads the World now and keeps no index."""

from __future__ import annotations

from collections.abc import Iterator

import kopf
import pytest
from kubernetes import client

from modelshield.cli import main
from modelshield.cli import operator as operator_cli


@pytest.fixture
def api_client() -> Iterator[client.ApiClient]:
    # Never connects: build() only wires handlers.
    made = client.ApiClient(client.Configuration())
    yield made
    made.close()  # type: ignore[no-untyped-call]  # unannotated upstream


def _registry(api_client: client.ApiClient, *flags: str) -> kopf.OperatorRegistry:
    arguments = main.build_parser("operator").parse_args(["operator", "--standalone", *flags])
    registry, _, kube = operator_cli.build(arguments, api_client)
    kube.close()
    return registry


def _watch_handler_ids(api_client: client.ApiClient, *flags: str) -> list[str]:
    return [
        str(handler.id) for handler in _registry(api_client, *flags)._watching.get_all_handlers()
    ]


@pytest.mark.parametrize(
    ("plural", "feeder", "reader"),
    [
        ("modelsecuritypolicies", "modelsecuritypolicies-event", "ungoverned-policy"),
        (
            "clustermodelsecuritypolicies",
            "clustermodelsecuritypolicies-event",
            "ungoverned-cluster",
        ),
        ("namespaces", "namespace_event", "ungoverned-namespace"),
    ],
)
def test_registered_by_default_after_the_handler_that_feeds_the_world(
    api_client: client.ApiClient, plural: str, feeder: str, reader: str
) -> None:
    # Of one resource's event handlers, kopf calls each in this order.
    ids = [
        str(handler.id)
        for handler in _registry(api_client)._watching.get_all_handlers()
        if handler.selector is not None and handler.selector.any_name == plural
    ]
    [feeding] = [position for position, id_ in enumerate(ids) if id_.endswith(feeder)]
    assert feeding < ids.index(reader)


def test_the_labeller_keeps_no_index_of_its_own(api_client: client.ApiClient) -> None:
    indices = [str(h.id) for h in _registry(api_client)._indexing.get_all_handlers()]
    assert not [i for i in indices if "ungoverned" in i], indices


@pytest.mark.parametrize(
    "flags", [("--no-label-ungoverned-namespaces",), ("--namespace", "team-a")]
)
def test_not_registered_when_switched_off_or_watching_some_namespaces(
    api_client: client.ApiClient, flags: tuple[str, ...]
) -> None:
    assert not [i for i in _watch_handler_ids(api_client, *flags) if i.startswith("ungoverned")]
