"""``modelshield operator`` registers the ungoverned-namespace handlers by default, before the
policy reconciler's (kopf runs an object's watch handlers in registration order), and not
with --no-label-ungoverned-namespaces or --namespace."""

from __future__ import annotations

from collections.abc import Iterator

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


def _watch_handler_ids(api_client: client.ApiClient, *flags: str) -> list[str]:
    arguments = main.build_parser("operator").parse_args(["operator", "--standalone", *flags])
    registry, _, kube = operator_cli.build(arguments, api_client)
    try:
        return [str(handler.id) for handler in registry._watching.get_all_handlers()]
    finally:
        kube.close()


def test_registered_by_default_and_before_the_policy_reconciler(
    api_client: client.ApiClient,
) -> None:
    ids = _watch_handler_ids(api_client)
    for handler_id in ("ungoverned-policy", "ungoverned-cluster", "ungoverned-namespace"):
        assert handler_id in ids
    assert ids.index("ungoverned-policy") < ids.index("modelsecuritypolicies-event")
    assert ids.index("ungoverned-cluster") < ids.index("clustermodelsecuritypolicies-event")


@pytest.mark.parametrize(
    "flags", [("--no-label-ungoverned-namespaces",), ("--namespace", "team-a")]
)
def test_not_registered_when_switched_off_or_watching_some_namespaces(
    api_client: client.ApiClient, flags: tuple[str, ...]
) -> None:
    assert not [i for i in _watch_handler_ids(api_client, *flags) if i.startswith("ungoverned")]
