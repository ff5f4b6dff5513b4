"""Namespaces no policy governs keep working when the admission server is down.

The operator (``modelshield operator``, under exactly its RBAC) labels namespaces that no
policy could govern ``modelshield.dev/ungoverned=true``; the workload webhooks'
namespaceSelector skips them. With the server killed (``failurePolicy: Fail``), creates in
a governed namespace fail closed while creates in an ungoverned one go through. The chart's
ValidatingAdmissionPolicy, installed from its rendered template, keeps anyone but the
operator from setting that label to true (taking it off stays open to anyone who may patch
the namespace: that direction fails closed), and anyone but the configured editors from
changing ``modelshield.dev/ignore`` (evaluated by the real API server).
"""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e import operators
from e2e.clients import Cluster, Kubectl, token_kubeconfig
from e2e.webhooks import (
    Images,
    WebhookProcess,
    apply_policy,
    images,
    wait_for,
    webhook,
    workload,
)
from modelshield.controllers.builders import ungoverned
from tests.support import chartrendering as rendering

__all__ = ["images", "webhook"]  # module-scoped fixtures, shared by name

LABEL = ungoverned.LABEL
IGNORE_LABEL = "modelshield.dev/ignore"
OPERATOR_REFUSAL = "may set the modelshield.dev/ungoverned label to true"
IGNORE_REFUSAL = "the modelshield.dev/ignore label switches modelshield's admission off"


def _labels(core: client.CoreV1Api, name: str) -> dict[str, str]:
    found = core.read_namespace(name)
    return dict((found.metadata.labels if found.metadata else None) or {})


def _labelled(core: client.CoreV1Api, name: str) -> Callable[[], bool]:
    return lambda: _labels(core, name).get(LABEL) == "true"


def _unlabelled(core: client.CoreV1Api, name: str) -> Callable[[], bool]:
    return lambda: LABEL not in _labels(core, name)


@contextlib.contextmanager
def _fresh_namespace(core: client.CoreV1Api, prefix: str) -> Iterator[str]:
    created = core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(generate_name=prefix))
    )
    assert created.metadata is not None
    name = str(created.metadata.name)
    try:
        wait_for(
            f"{name}'s default ServiceAccount",
            lambda: (
                core.list_namespaced_service_account(
                    name, field_selector="metadata.name=default"
                ).items
            ),
        )
        yield name
    finally:
        with contextlib.suppress(Exception):
            core.delete_namespace(name)


@pytest.fixture
def no_labels_left(kubectl: Kubectl) -> Iterator[None]:
    """Leave no label behind for later tests, whose namespaces no operator judges (set up
    first, so torn down after the operator stopped and the admission policy went)."""
    yield
    kubectl("label", "namespaces", "--all", f"{LABEL}-")


def test_a_dead_server_blocks_only_governed_namespaces(
    no_labels_left: None,
    webhook: WebhookProcess,
    kubectl: Kubectl,
    namespace: str,
    images: Images,
    cluster: Cluster,
    start_operator: Callable[..., operators.OperatorProcess],
) -> None:
    core = client.CoreV1Api(cluster.api_client)
    operator = start_operator()
    try:
        # (a) No policy anywhere near `namespace`: the operator labels it.
        wait_for(
            f"{LABEL}=true on {namespace}; operator log:\n{operator.tail()}",
            _labelled(core, namespace),
        )
        with _fresh_namespace(core, "e2e-governed-") as governed:
            wait_for(f"{LABEL}=true on {governed}", _labelled(core, governed))
            # (b) A policy in a labelled namespace: the label goes (apply_policy waits until
            # the webhook judges a dry run there, which it cannot while the label stays).
            apply_policy(kubectl, governed, images)
            assert LABEL not in _labels(core, governed)
            assert _labels(core, namespace).get(LABEL) == "true"

            webhook.kill()
            try:
                refused = kubectl(
                    "apply",
                    "-n",
                    governed,
                    "-f",
                    "-",
                    input_text=workload("Pod", "governed", images.signed),
                    check=False,
                )
                assert refused.returncode != 0
                assert "failed calling webhook" in refused.stderr
                # Unsigned, and no webhook running: admitted all the same, because no
                # policy could have refused it there.
                kubectl(
                    "apply",
                    "-n",
                    namespace,
                    "-f",
                    "-",
                    input_text=workload("Pod", "free", images.unsigned),
                )
                kubectl("get", "pod/free", "-n", namespace)
            finally:
                webhook.start()

            # Deleting the policy makes the namespace ungoverned again.
            kubectl("delete", "-n", governed, "modelsecuritypolicy", "fraud-model")
            wait_for(f"{LABEL}=true back on {governed}", _labelled(core, governed))
    finally:
        operator.stop()


def test_a_cluster_policy_takes_the_label_off_the_namespaces_it_selects(
    no_labels_left: None,
    kubectl: Kubectl,
    namespace: str,
    cluster: Cluster,
    start_operator: Callable[..., operators.OperatorProcess],
) -> None:
    core = client.CoreV1Api(cluster.api_client)
    operator = start_operator()
    name = "e2e-ungoverned-" + uuid.uuid4().hex[:6]
    team = name  # a label value only this test uses
    try:
        wait_for(f"{LABEL}=true on {namespace}", _labelled(core, namespace))
        kubectl("label", "namespace", namespace, f"team={team}")
        cluster_policy = {
            "apiVersion": f"{operators.GROUP}/{operators.VERSION}",
            "kind": "ClusterModelSecurityPolicy",
            "metadata": {"name": name},
            "spec": {
                "namespaceSelector": {"matchLabels": {"team": team}},
                "selector": {"matchLabels": {"app": "nothing-here"}},
                "runtime": {},
            },
        }
        kubectl("apply", "-f", "-", input_text=yaml.safe_dump(cluster_policy))
        wait_for(f"{LABEL} removed from {namespace}", _unlabelled(core, namespace))
        # The namespace leaves the selector: ungoverned again.
        kubectl("label", "namespace", namespace, "team-")
        wait_for(f"{LABEL}=true back on {namespace}", _labelled(core, namespace))
    finally:
        kubectl("delete", "clustermodelsecuritypolicy", name, "--ignore-not-found")
        operator.stop()


def _assert_refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr


def _admission_policy(suffix: str) -> list[dict[str, Any]]:
    """The chart's ValidatingAdmissionPolicy and binding, as rendered for a release whose
    operator ServiceAccount is the one the e2e operator runs as, under a unique name."""
    manifests = rendering.parse(
        rendering.render_text({}, release="modelshield", namespace=operators.OPERATOR_NAMESPACE)
    )
    policy = rendering.one(manifests, "ValidatingAdmissionPolicy")
    binding = rendering.one(manifests, "ValidatingAdmissionPolicyBinding")
    name = f"{policy['metadata']['name']}-{suffix}"
    policy["metadata"]["name"] = name
    binding["metadata"]["name"] = name
    binding["spec"]["policyName"] = name
    return [policy, binding]


@pytest.fixture
def admission_policy(kubectl: Kubectl) -> Iterator[str]:
    documents = _admission_policy(uuid.uuid4().hex[:6])
    name = documents[0]["metadata"]["name"]
    kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(documents))
    try:
        yield name
    finally:
        kubectl(
            "delete",
            "--ignore-not-found",
            f"validatingadmissionpolicybinding/{name}",
            f"validatingadmissionpolicy/{name}",
        )


@pytest.fixture
def labeller_token(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    """A ServiceAccount that may get and patch every namespace (in no admin group)."""
    name = "e2e-labeller-" + uuid.uuid4().hex[:6]
    kubectl("-n", namespace, "create", "serviceaccount", "labeller")
    kubectl("create", "clusterrole", name, "--verb=get,patch", "--resource=namespaces")
    kubectl(
        "create",
        "clusterrolebinding",
        name,
        f"--clusterrole={name}",
        f"--serviceaccount={namespace}:labeller",
    )
    try:
        yield kubectl("-n", namespace, "create", "token", "labeller").stdout.strip()
    finally:
        kubectl("delete", "--ignore-not-found", f"clusterrolebinding/{name}", f"clusterrole/{name}")


def test_the_admission_policy_leaves_the_labels_to_the_operator_and_the_listed_admins(
    no_labels_left: None,
    kubectl: Kubectl,
    namespace: str,
    cluster: Cluster,
    admission_policy: str,
    labeller_token: str,
    start_operator: Callable[..., operators.OperatorProcess],
    tmp_path: pathlib.Path,
) -> None:
    core = client.CoreV1Api(cluster.api_client)
    labeller = Kubectl(
        kubectl.kubectl_path,
        token_kubeconfig(cluster.kubeconfig_path, labeller_token, tmp_path / "labeller.kubeconfig"),
        kubectl.cache_dir,
    )

    def as_labeller(*arguments: str) -> Any:
        return labeller(*arguments, check=False)

    # The API server type-checked every expression and found nothing to warn about.
    checked = wait_for(
        "the policy's type checking",
        lambda: yaml.safe_load(
            kubectl("get", f"validatingadmissionpolicy/{admission_policy}", "-o", "json").stdout
        ).get("status"),
    )
    assert not (checked.get("typeChecking") or {}).get("expressionWarnings"), checked

    # Policies reach the API server's admission a moment after they are created.
    wait_for(
        "the ValidatingAdmissionPolicy to refuse a dry-run label",
        lambda: (
            OPERATOR_REFUSAL
            in as_labeller(
                "label", "--dry-run=server", "namespace", namespace, f"{LABEL}=true"
            ).stderr
        ),
    )
    refused = as_labeller("label", "namespace", namespace, f"{LABEL}=true")
    _assert_refused(refused, OPERATOR_REFUSAL)
    refused = as_labeller("label", "namespace", namespace, f"{IGNORE_LABEL}=true")
    _assert_refused(refused, IGNORE_REFUSAL)
    # The same identity may change other labels: the policy is that narrow.
    as_labeller("label", "namespace", namespace, "team=fraud").check_returncode()
    # A Namespace created with the label is refused too, even to the admin.
    new_namespace = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "e2e-sneaky", "labels": {LABEL: "true"}},
        }
    )
    created = kubectl(
        "create", "--dry-run=server", "-f", "-", input_text=new_namespace, check=False
    )
    _assert_refused(created, OPERATOR_REFUSAL)

    # The harness's admin (system:masters here, kubeadm:cluster-admins on kind) may opt a
    # namespace out and back in ...
    kubectl("label", "namespace", namespace, f"{IGNORE_LABEL}=true")
    kubectl("label", "namespace", namespace, f"{IGNORE_LABEL}-")
    # ... but is not the operator.
    refused = kubectl("label", "namespace", namespace, f"{LABEL}=true", check=False)
    _assert_refused(refused, OPERATOR_REFUSAL)

    # The operator's own ServiceAccount gets through. Anyone who may patch the namespace
    # may take the label off or change it (that only puts the namespace back in the
    # webhooks' reach); the operator, watching, puts it back.
    operator = start_operator()
    try:
        wait_for(
            f"the operator to label {namespace}; log:\n{operator.tail()}",
            _labelled(core, namespace),
        )
        as_labeller("label", "namespace", namespace, f"{LABEL}-").check_returncode()
        wait_for(f"the operator to label {namespace} again", _labelled(core, namespace))
        kubectl("label", "--overwrite", "namespace", namespace, f"{LABEL}=false")
        wait_for(f"the operator to set {LABEL}=true again", _labelled(core, namespace))
        # With the operator stopped, what someone else does sticks, and true stays refused.
        operator.stop()
        as_labeller(
            "label", "--overwrite", "namespace", namespace, f"{LABEL}=no"
        ).check_returncode()
        refused = as_labeller("label", "--overwrite", "namespace", namespace, f"{LABEL}=true")
        _assert_refused(refused, OPERATOR_REFUSAL)
        assert _labels(core, namespace).get(LABEL) == "no"
    finally:
        operator.stop()
