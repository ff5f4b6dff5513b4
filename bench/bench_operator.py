"""Operator convergence: 1,000 governed Deployments across 20 namespaces, on a real control plane.

Starts the local control plane (etcd, kube-apiserver, kube-controller-manager, built by
e2e/tools/build-tools.sh), creates the Deployments (replicas 0: the objects are what is
governed; no node runs pods here anyway), starts ``modelshield operator`` as a
subprocess, and once it has primed applies one ClusterModelSecurityPolicy with network
requirements. Measured in the same run:

1. operator: from applying the policy to all 1,000 NetworkPolicies present (a watch
   counts them), and then to the policy's status reporting all 1,000 governed;
2. baseline: creating the same 1,000 NetworkPolicies (the same builder's manifests,
   other names) directly with the kubernetes client, one after another, as a script
   would; and with as many threads as the operator has workers.

Ratio operator / direct (sequential), goal <= 2.

    .venv/bin/python bench/bench_operator.py [--namespaces 20] [--per-namespace 50] [--workers 8]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPOSITORY_ROOT / "operator"), str(REPOSITORY_ROOT)]

import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402

from e2e.cluster import LocalControlPlane  # noqa: E402
from e2e.toolcache import ControlPlaneBinaries  # noqa: E402
from modelshield.api.v1alpha1 import policies  # noqa: E402
from modelshield.controllers.builders import networkpolicies, ownership  # noqa: E402

NETWORK = {
    "ingress": [
        {
            "peers": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}
            ],
            "ports": [{"port": 8080}],
        }
    ],
    "egress": [{"peers": [{"cidr": "10.0.0.0/8"}], "ports": [{"port": 443}]}],
}


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name, "bench": "governed"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "model", "image": "registry.example/model:1"}]},
            },
        },
    }


def _create_workloads(
    api_client: client.ApiClient, namespaces: list[str], per_namespace: int
) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    for namespace in namespaces:
        core.create_namespace({"metadata": {"name": namespace, "labels": {"bench": "yes"}}})  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                # The client takes plain dicts at run time; its annotations say model classes.
                lambda job: apps.create_namespaced_deployment(job[0], _deployment(job[1])),  # type: ignore[arg-type]
                [(ns, f"model-{i:03}") for ns in namespaces for i in range(per_namespace)],
            )
        )


def _count(api_client: client.ApiClient) -> int:
    """NetworkPolicies made by modelshield, from the API server's watch cache, metadata only."""
    serialized = api_client.param_serialize(
        method="GET",
        resource_path="/apis/networking.k8s.io/v1/networkpolicies",
        query_params=[("labelSelector", ownership.MANAGED_SELECTOR), ("resourceVersion", "0")],
        header_params={
            "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
        },
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(*serialized)
    response.read()  # type: ignore[no-untyped-call]  # unannotated upstream
    if response.status != 200:
        return 0
    return len(json.loads(response.data or b"{}").get("items") or [])


def _until_all(api_client: client.ApiClient, total: int, timeout: float = 600) -> float:
    """Poll every 50 ms; the moment the total-th NetworkPolicy is seen."""
    deadline = time.monotonic() + timeout
    while _count(api_client) < total:
        if time.monotonic() > deadline:
            raise SystemExit("the operator did not converge")
        time.sleep(0.05)
    return time.monotonic()


def _direct_manifests(namespaces: list[str], per_namespace: int) -> list[dict[str, Any]]:
    requirement = policies.NetworkRequirements.model_validate(NETWORK)
    return [
        networkpolicies.build(
            name=f"direct-{i:03}",
            namespace=namespace,
            pod_selector={"matchLabels": {"app": f"model-{i:03}"}},
            requirements=[requirement],
        )
        for namespace in namespaces
        for i in range(per_namespace)
    ]


def _create_direct(
    api_client: client.ApiClient, manifests: list[dict[str, Any]], threads: int
) -> float:
    networking = client.NetworkingV1Api(api_client)
    started = time.monotonic()
    if threads == 1:
        for manifest in manifests:
            networking.create_namespaced_network_policy(manifest["metadata"]["namespace"], manifest)  # type: ignore[arg-type]
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda m: networking.create_namespaced_network_policy(
                        m["metadata"]["namespace"],
                        m,
                    ),
                    manifests,
                )
            )
    return time.monotonic() - started


def _policy_status(api_client: client.ApiClient) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api_client).get_cluster_custom_object(  # type: ignore[assignment]
        "modelshield.dev", "v1alpha1", "clustermodelsecuritypolicies", "bench"
    )
    status: dict[str, Any] = found.get("status") or {}
    return status


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--per-namespace", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8)
    arguments = parser.parse_args()
    total = arguments.namespaces * arguments.per_namespace
    namespaces = [f"bench-{n:02}" for n in range(arguments.namespaces)]

    with LocalControlPlane(ControlPlaneBinaries.locate()) as control_plane:
        kubeconfig = control_plane.kubeconfig_path
        api_client: client.ApiClient = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        api_client.configuration.connection_pool_maxsize = 16
        kubectl = [str(control_plane.binaries.kubectl), f"--kubeconfig={kubeconfig}"]
        subprocess.run(
            [*kubectl, "apply", "--server-side", "-f", str(REPOSITORY_ROOT / "crds")],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*kubectl, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
            check=True,
            capture_output=True,
        )
        started = time.monotonic()
        _create_workloads(api_client, namespaces, arguments.per_namespace)
        print(
            f"created {total} Deployments in {len(namespaces)} namespaces in {time.monotonic() - started:.1f} s"
        )

        log_path = pathlib.Path(tempfile.mkdtemp(prefix="bench-operator-")) / "operator.log"
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                str(REPOSITORY_ROOT / p) for p in ("operator", "webhooks", ".")
            ),
        }
        with log_path.open("wb") as log:
            operator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modelshield.cli.main",
                    "operator",
                    f"--kubeconfig={kubeconfig}",
                    "--standalone",
                    "--metrics-port=0",
                    "--audit-interval=0",
                    f"--workers={arguments.workers}",
                    "--log-level=warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        try:
            # Settled: kopf's initial listing done (nothing governed yet, so nothing to do).
            time.sleep(5)
            cluster_policy = {
                "apiVersion": "modelshield.dev/v1alpha1",
                "kind": "ClusterModelSecurityPolicy",
                "metadata": {"name": "bench"},
                "spec": {
                    "namespaceSelector": {"matchLabels": {"bench": "yes"}},
                    "selector": {"matchLabels": {"bench": "governed"}},
                    "network": NETWORK,
                },
            }
            applied = time.monotonic()
            subprocess.run(
                [*kubectl, "apply", "-f", "-"],
                input=yaml.safe_dump(cluster_policy).encode(),
                check=True,
                capture_output=True,
            )
            converged = _until_all(api_client, total) - applied
            while _policy_status(api_client).get("governed") != total:
                time.sleep(0.1)
            status_done = time.monotonic() - applied
        finally:
            operator.terminate()
            operator.wait(timeout=30)

        manifests = _direct_manifests(namespaces, arguments.per_namespace)
        sequential = _create_direct(api_client, manifests, threads=1)
        for manifest in manifests:
            manifest["metadata"]["name"] += "-t"
        threaded = _create_direct(api_client, manifests, threads=arguments.workers)
        api_client.close()  # type: ignore[no-untyped-call]

    print(
        f"operator: all {total} NetworkPolicies present {converged:7.2f} s after the policy was applied"
    )
    print(
        f"operator: status governed={total} written     {status_done:7.2f} s after the policy was applied"
    )
    print(f"direct:   client creates, sequential          {sequential:7.2f} s")
    print(f"direct:   client creates, {arguments.workers} threads            {threaded:7.2f} s")
    print(f"ratio operator / direct sequential: {converged / sequential:.2f} (goal <= 2)")
    print(f"ratio operator / direct {arguments.workers} threads:  {converged / threaded:.2f}")


if __name__ == "__main__":
    main()
