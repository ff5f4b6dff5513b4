"""The request budget: every wait of a review fits in timeoutSeconds with a margin left."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelshield.cli import main
from modelshield_webhooks import caches, contexts, reviewfacts
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts
from tests.support.httpsclient import HttpsClient

TIMEOUTS = range(contexts.MIN_TIMEOUT_SECONDS, contexts.MAX_TIMEOUT_SECONDS + 1)


@pytest.mark.parametrize("timeout", TIMEOUTS)
def test_every_accepted_timeout_leaves_the_margin(timeout: int) -> None:
    budget = contexts.request_budget(timeout)
    waits = budget.namespace_wait_seconds + budget.verify_deadline_seconds
    waits += budget.hard_stop_seconds
    margin = timeout - waits
    assert margin >= max(0.5, 0.3 * timeout) - 1e-9
    assert budget.margin_seconds == pytest.approx(margin)
    # Nothing given away either: the rounding leaves at most a few hundredths unused.
    assert margin <= max(0.5, 0.3 * timeout) + 0.05
    assert 0 < budget.namespace_wait_seconds <= 1.0
    assert budget.verify_deadline_seconds > 0
    assert budget.hard_stop_seconds == reviewfacts.hard_stop_seconds(budget.verify_deadline_seconds)
    # The default deadline is the longest that fits.
    with pytest.raises(contexts.BudgetError):
        contexts.request_budget(timeout, budget.verify_deadline_seconds + 0.01)


def test_the_default_timeout_and_the_context_defaults() -> None:
    budget = contexts.request_budget(10)
    assert budget == contexts.DEFAULT_BUDGET
    assert (budget.namespace_wait_seconds, budget.verify_deadline_seconds) == (1.0, 5.75)
    assert budget.hard_stop_seconds == 0.25
    assert budget.margin_seconds == pytest.approx(3.0)
    context = contexts.AdmissionContext(
        state=caches.ClusterState(), verifier=verdicts.FixedVerdictVerifierForTests()
    )
    assert context.verify_deadline_seconds == budget.verify_deadline_seconds
    assert context.namespace_wait_seconds == budget.namespace_wait_seconds


def test_the_smallest_timeout_still_keeps_half_a_second() -> None:
    budget = contexts.request_budget(1)
    assert budget.longest_wait_seconds == pytest.approx(0.5)
    assert budget.verify_deadline_seconds == 0.32
    assert budget.hard_stop_seconds == 0.08
    assert budget.namespace_wait_seconds == 0.1


def test_a_given_deadline_that_fits_is_kept() -> None:
    budget = contexts.request_budget(10, 3.0)
    assert budget.verify_deadline_seconds == 3.0
    assert budget.margin_seconds > 3.0


@pytest.mark.parametrize(
    ("timeout", "deadline", "said"),
    [
        (10, 9.0, "at most 5.75s is left"),
        (10, 7.0, "the 3s kept for the answer"),  # the old default: timeout - 3
        (2, 1.5, "at most 0.96s is left"),
        (10, 0.0, "does not fit"),
        (10, -1.0, "does not fit"),
    ],
)
def test_a_deadline_that_does_not_fit_is_refused(timeout: int, deadline: float, said: str) -> None:
    with pytest.raises(contexts.BudgetError, match=said):
        contexts.request_budget(timeout, deadline)


@pytest.mark.parametrize("timeout", [0, 0.5, 31, -3])
def test_a_timeout_the_api_server_refuses_is_refused(timeout: float) -> None:
    with pytest.raises(contexts.BudgetError, match="1-30s"):
        contexts.request_budget(timeout)


@pytest.mark.parametrize(
    ("deadline", "grace"), [(0.0, 0.0), (-1.0, 0.0), (0.4, 0.1), (1.0, 0.25), (20.0, 0.25)]
)
def test_the_hard_stop_is_a_quarter_of_the_deadline_at_most_a_quarter_second(
    deadline: float, grace: float
) -> None:
    assert reviewfacts.hard_stop_seconds(deadline) == pytest.approx(grace)


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--timeout-seconds", "2", "--verify-deadline", "1.5"], "at most 0.96s is left"),
        (["--verify-deadline", "8"], "at most 5.75s is left"),
        (["--timeout-seconds", "31"], "1-30s"),
        (["--verify-deadline", "0"], "does not fit"),
    ],
)
def test_the_server_refuses_a_budget_that_does_not_fit(
    capsys: pytest.CaptureFixture[str], arguments: list[str], said: str
) -> None:
    # Refused before anything is read or served: the certificate files need not exist.
    code = main.main(["webhook", "--cert", "absent.crt", "--key", "absent.key", *arguments])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --timeout-seconds/--verify-deadline: ")
    assert said in error


def test_a_deadline_that_fits_passes_the_check(capsys: pytest.CaptureFixture[str]) -> None:
    # Past the budget check, the next one fails: the certificate file does not exist.
    code = main.main(["webhook", "--cert", "absent.crt", "--key", "absent.key"])
    assert code == 2
    assert "absent.crt: no such file" in capsys.readouterr().err


def _cluster_policy() -> dict[str, Any]:
    policy = scenarios.policy(scenarios.ENFORCED, name="everywhere")
    policy["kind"] = "ClusterModelSecurityPolicy"
    del policy["metadata"]["namespace"]
    policy["spec"]["namespaceSelector"] = {}
    return policy


@pytest.mark.integration
@pytest.mark.parametrize("endpoint", ["/validate", "/mutate"])
async def test_a_one_second_timeout_is_answered_in_time_through_every_wait(
    client: HttpsClient, context: contexts.AdmissionContext, endpoint: str
) -> None:
    # The worst case: a namespace that reaches the cache at the end of the wait, then a
    # verifier that ignores its deadline. The API server would give up after 1 s.
    budget = contexts.request_budget(1)
    context.verify_deadline_seconds = budget.verify_deadline_seconds
    context.namespace_wait_seconds = budget.namespace_wait_seconds
    context.verifier = verdicts.FixedVerdictVerifierForTests(delay=30.0, honours_deadline=False)
    cluster = _cluster_policy()
    cluster["spec"]["images"]["mutateToDigest"] = True
    context.state.apply(caches.CLUSTER_POLICIES, "ADDED", cluster)
    late = "arrives-late"
    info = scenarios.BY_LABEL["Deployment"]
    obj = scenarios.workload(info, [scenarios.SIGNED_BY_TAG], namespace=late)
    loop = asyncio.get_running_loop()

    def namespace_arrives() -> None:
        context.state.apply(caches.NAMESPACES, "ADDED", scenarios.namespace(late))

    arrival = budget.namespace_wait_seconds * 0.8
    loop.call_later(arrival, namespace_arrives)
    started = loop.time()
    answer = await client.review(endpoint, scenarios.review(info, "CREATE", obj))
    elapsed = loop.time() - started
    assert elapsed < budget.timeout_seconds, elapsed
    # It did wait: for the namespace, then for the verification up to the hard stop.
    assert elapsed >= arrival + budget.verify_deadline_seconds + budget.hard_stop_seconds
    if endpoint == "/validate":
        assert answer["allowed"] is False
        message = answer["status"]["message"]
        assert "could not be verified in time (verification did not finish within 0.32s)" in (
            message
        )
        assert "not a verdict on the image: retry" in message
    else:
        assert answer["allowed"] is True  # the mutating webhook only patches
        assert "patch" not in answer


@pytest.mark.integration
async def test_an_unknown_namespace_is_denied_within_the_namespace_wait(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    budget = contexts.request_budget(1)
    context.namespace_wait_seconds = budget.namespace_wait_seconds
    context.state.apply(caches.CLUSTER_POLICIES, "ADDED", _cluster_policy())
    info = scenarios.BY_LABEL["Pod"]
    obj = scenarios.workload(info, namespace="never-seen")
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await client.review("/validate", scenarios.review(info, "CREATE", obj))
    elapsed = loop.time() - started
    assert answer["allowed"] is False
    assert "is not in the modelshield webhook's cache yet" in answer["status"]["message"]
    assert budget.namespace_wait_seconds <= elapsed < budget.timeout_seconds
