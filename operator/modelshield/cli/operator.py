"""``modelshield operator`` runs the reconcile loops; ``modelshield rbac`` prints their RBAC."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
import sys
from typing import Any, cast

import kopf
import yaml
from kubernetes import client, config

from modelshield import __version__
from modelshield.api.v1alpha1 import policies as api_policies
from modelshield.cli import modelstoreflags, verifierflags
from modelshield.controllers import (
    artifacts,
    auditing,
    caches,
    certificates,
    guardbindings,
    imageverdicts,
    kubesecrets,
    leadership,
    modelkeypublishing,
    namespacelabelling,
    planning,
    policies,
    rbac,
    reconciling,
    servingindex,
    settings,
    writing,
)
from modelshield.controllers.builders import driftmonitors, networkpolicies, tokenreviewers
from modelshield.engine import modelchecks, scopes, startup
from modelshield.supplychain.images import verifiersettings

LOGGER = logging.getLogger("modelshield.operator")
IMAGE_ENV = "MODELSHIELD_IMAGE"


def _label(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected key=value")
    return key, value


def _scraper_peers(arguments: argparse.Namespace) -> tuple[networkpolicies.Peer, ...]:
    pod_selector = (
        {"matchLabels": dict(arguments.scraper_pod_label)} if arguments.scraper_pod_label else None
    )
    return tuple(
        networkpolicies.from_api_peer(
            api_policies.Peer.model_validate(
                {
                    "namespaceSelector": {
                        "matchLabels": {networkpolicies.NAMESPACE_NAME_LABEL: namespace}
                    },
                    **({"podSelector": pod_selector} if pod_selector else {}),
                }
            )
        )
        for namespace in arguments.scraper_namespace
    )


def _scope(arguments: argparse.Namespace) -> scopes.Scope:
    """The namespaces the operator may govern: the webhooks' scope (the same flags' values)."""
    return scopes.Scope.of(
        arguments.webhook_namespace,
        arguments.exclude_namespace,
        require_opt_in=arguments.require_opt_in,
    )


def _api_client(kubeconfig: str | None, pool_size: int) -> client.ApiClient:
    """Load credentials (in-cluster, else kubeconfig) into the default client configuration."""
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    else:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the client configuration loaded by ``_api_client``."""
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def verifications(
    settings: verifiersettings.VerifierSettings, kube: writing.Kube
) -> imageverdicts.Verifications:
    """Image verdicts for status and audit, verified as the webhook verifies (same settings)."""
    return imageverdicts.Verifications(
        verifiersettings.build_verifier(settings),
        secrets=verifiersettings.secret_access(settings, kubesecrets.KubeSecrets(kube)),
    )


def build(
    arguments: argparse.Namespace, api_client: client.ApiClient
) -> tuple[kopf.OperatorRegistry, reconciling.Controller, writing.Kube]:
    """The registry with every handler, and the reconciler behind them."""
    registry = kopf.OperatorRegistry()
    kube = writing.Kube(api_client, max_workers=arguments.workers * 2)
    monitor = driftmonitors.MonitorSettings(
        image=arguments.image, service_account=arguments.drift_monitor_service_account
    )
    scope = _scope(arguments)
    world = caches.World(scope=scope)
    leader = leadership.Leadership(
        kube,
        identity=arguments.identity,
        priority=arguments.priority,
        peering_name=settings.PEERING_NAME,
        standalone=arguments.standalone,
    )
    guard_binding = (
        guardbindings.GuardBinding(
            kube,
            world,
            name=arguments.guard_binding,
            role=arguments.guard_binding,
            leadership=leader,
        )
        if arguments.guard_binding
        else None
    )
    controller = reconciling.Controller(
        world,
        kube,
        planning.Settings(
            monitor=monitor,
            scraper_peers=_scraper_peers(arguments),
            scraper_ports=frozenset((port, "TCP") for port in arguments.scraper_port),
        ),
        verifications=verifications(verifierflags.settings_from(arguments), kube),
        startup=modelchecks.StartupCheck(image=arguments.startup_image),
        workers=arguments.workers,
        guard_binding=guard_binding,
        store=modelstoreflags.store_from(arguments),
    )

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(api_client.configuration)

    policies.register(
        registry, controller, leadership=leader, resync_interval=arguments.resync_interval
    )
    if arguments.label_ungoverned_namespaces and not arguments.namespace:
        # After the policy reconciler: its handlers record a policy or namespace in the
        # World (kopf runs them first), and the label is judged on that World.
        namespacelabelling.register(
            registry,
            kube=kube,
            world=controller.world,
            excluded=scope.excluded_names,
            leadership=leader,
        )
    elif arguments.label_ungoverned_namespaces:
        # Policies outside the watched namespaces are invisible: no namespace may be judged.
        LOGGER.warning("--namespace given: namespaces are not labelled modelshield.dev/ungoverned")
    auditor = auditing.register(registry, controller=controller, arguments=arguments, leader=leader)
    # status.servedBy of every ModelArtifact: where each model and dataset version runs.
    servingindex.register(
        registry, kube=kube, leader=leader, resync_interval=arguments.resync_interval
    )
    certificates.register(registry, kube=kube, arguments=arguments)
    # The ModelArtifact controllers read policies and namespace labels from the policy
    # reconciler's World, kept current by handlers registered above (kopf runs them first).
    artifacts.register(
        registry,
        world=controller.world,
        kube=kube,
        arguments=arguments,
        metrics=auditor.metrics.registry,
    )
    # The public keys of verified artifacts, for the startup re-verification.
    modelkeypublishing.register(registry, world=controller.world, kube_source=lambda: kube)
    return registry, controller, kube


def _run_operator(arguments: argparse.Namespace) -> int:
    for problem in [
        *verifierflags.settings_from(arguments).problems(),
        *modelstoreflags.problems(arguments),
    ]:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    conflict = modelstoreflags.environment_conflict(modelstoreflags.store_from(arguments))
    if conflict is not None:
        print(f"error: {conflict}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, arguments.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per watch event at INFO would drown everything else.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, logging.getLogger().level))
    api_client = _api_client(arguments.kubeconfig, arguments.workers * 2)
    if arguments.priority is None:
        # Replicas with equal priorities would all pause (kopf's rule): draw one.
        arguments.priority = secrets.randbelow(1_000_000) + 1
    registry, _, kube = build(arguments, api_client)
    operator_settings = kopf.OperatorSettings()
    settings.configure(
        operator_settings, standalone=arguments.standalone, priority=arguments.priority
    )
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                settings=operator_settings,
                standalone=arguments.standalone,
                priority=arguments.priority,
                identity=cast(Any, arguments.identity),
                clusterwide=not arguments.namespace,
                namespaces=arguments.namespace,
                liveness_endpoint=arguments.liveness or None,
            )
        )
    except KeyboardInterrupt:
        return 130
    finally:
        kube.close()
    return 0


def _run_rbac(arguments: argparse.Namespace) -> int:
    documents = rbac.manifests(
        name=arguments.name,
        namespace=arguments.namespace,
        service_account=arguments.service_account,
        webhook_configurations=arguments.webhook_configuration
        or rbac.DEFAULT_WEBHOOK_CONFIGURATIONS,
        guard_binding=arguments.guard_binding,
    )
    sys.stdout.write(yaml.safe_dump_all(documents, sort_keys=False))
    return 0


def _add_artifact_arguments(parser: argparse.ArgumentParser) -> None:
    """Limits and confinement of the ModelArtifact checks (defaults from MODELSHIELD_*)."""
    parser.add_argument(
        "--file-root",
        action="append",
        default=None,
        help="a directory under which ModelArtifact file:// URIs may point (repeatable; "
        "default MODELSHIELD_FILE_ROOTS, else none: file:// is refused)",
    )
    parser.add_argument(
        "--artifact-max-bytes",
        type=int,
        default=None,
        help="bytes one model may have (default MODELSHIELD_ARTIFACT_MAX_BYTES, else 256 GiB)",
    )
    parser.add_argument(
        "--artifact-max-files",
        type=int,
        default=None,
        help="files one model may have (default MODELSHIELD_ARTIFACT_MAX_FILES, else 10000)",
    )
    parser.add_argument(
        "--artifact-deadline-seconds",
        type=float,
        default=None,
        help="seconds one model's fetch may take; the whole check is stopped at twice this "
        "(default MODELSHIELD_ARTIFACT_DEADLINE_SECONDS, else 3600)",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``operator`` and ``rbac`` commands."""
    parser = subparsers.add_parser("operator", help="run the operator (kopf reconcile loops)")
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)"
    )
    parser.add_argument(
        "--namespace", action="append", default=[], help="watch only this namespace (repeatable)"
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no peering: run even if another instance is active",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; the highest is active (default: drawn at random per instance)",
    )
    parser.add_argument(
        "--identity",
        default=os.environ.get("POD_ID") or f"modelshield-{socket.gethostname()}-{os.getpid()}",
        help="this instance's peering identity (default: $POD_ID, else host and pid)",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=600.0,
        help="seconds between full re-reads; 0 disables",
    )
    parser.add_argument(
        "--image",
        default=os.environ.get(IMAGE_ENV, f"modelshield:{__version__}"),
        help=f"image of drift monitors (default: ${IMAGE_ENV})",
    )
    parser.add_argument(
        "--startup-image",
        default=startup.DEFAULT_IMAGE,
        help="image of the model re-verification init container the mutating webhook injects "
        "(the webhook's --startup-image): status and audit exempt exactly that container from "
        "image requirements, as admission does",
    )
    parser.add_argument(
        "--drift-monitor-service-account",
        default="",
        help="ServiceAccount of drift monitors (needs create on events); default: none, no token",
    )
    parser.add_argument(
        "--scraper-namespace",
        action="append",
        default=[],
        help="namespace of the metrics scraper allowed into governed pods (repeatable)",
    )
    parser.add_argument(
        "--scraper-pod-label",
        action="append",
        default=[],
        type=_label,
        help="key=value of scraper pods",
    )
    parser.add_argument(
        "--scraper-port",
        action="append",
        default=[],
        type=int,
        help="TCP port of governed pods the scraper may reach (repeatable), besides the ports "
        "a workload declares (container ports named metrics or http-metrics, the "
        "prometheus.io/port annotation); no port known: the scraper is not let in",
    )
    verifierflags.add_arguments(parser)
    modelstoreflags.add_arguments(parser)
    parser.add_argument("--workers", type=int, default=8, help="concurrent reconciles")
    parser.add_argument(
        "--audit-interval", type=float, default=300.0, help="seconds between audits; 0 disables"
    )
    parser.add_argument(
        "--audit-max-results", type=int, default=200, help="results kept per PolicyReport"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=8080, help="Prometheus metrics port; 0 disables"
    )
    parser.add_argument(
        "--liveness", default="", help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz"
    )
    parser.add_argument(
        "--manage-certificates",
        action="store_true",
        help="create and rotate the webhook certificate (when cert-manager is absent)",
    )
    parser.add_argument(
        "--webhook-namespace",
        default="modelshield-system",
        help="namespace of the webhook Service and Secret",
    )
    parser.add_argument(
        "--exclude-namespace",
        action="append",
        default=[],
        help="namespace never governed, like kube-system, kube-public, kube-node-lease and "
        "--webhook-namespace (repeatable; the webhooks' excluded namespaces)",
    )
    parser.add_argument(
        "--require-opt-in",
        action="store_true",
        help="govern only namespaces labelled modelshield.dev/enforce=true (the webhooks' "
        "opt-in mode)",
    )
    parser.add_argument(
        "--webhook-service", default="modelshield-webhook", help="name of the webhook Service"
    )
    parser.add_argument(
        "--webhook-secret",
        default=rbac.DEFAULT_CERTIFICATE_SECRET,
        help="Secret for the webhook certificate",
    )
    parser.add_argument(
        "--webhook-configuration",
        action="append",
        default=[],
        help="webhook configuration whose caBundle is kept in sync (repeatable; default: modelshield)",
    )
    parser.add_argument(
        "--label-ungoverned-namespaces",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="label namespaces no policy could govern modelshield.dev/ungoverned=true, so the "
        "webhooks skip them and a dead admission server blocks only governed namespaces "
        "(needs patch on namespaces; ignored with --namespace)",
    )
    parser.add_argument(
        "--guard-binding",
        default=tokenreviewers.DEFAULT_NAME,
        help="the ClusterRoleBinding (and the ClusterRole it grants, named alike: create "
        "tokenreviews) whose subjects the operator keeps equal to the inference guards' "
        "ServiceAccounts; '' leaves it alone (then bind them by hand)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    _add_artifact_arguments(parser)
    parser.set_defaults(handler=_run_operator)

    rbac_parser = subparsers.add_parser(
        "rbac", help="print the operator's RBAC (ClusterRole, Role, bindings)"
    )
    rbac_parser.add_argument(
        "--name", default="modelshield-operator", help="name of the roles and bindings"
    )
    rbac_parser.add_argument(
        "--namespace", default="modelshield-system", help="the operator's namespace"
    )
    rbac_parser.add_argument(
        "--service-account", default="modelshield-operator", help="the operator's ServiceAccount"
    )
    rbac_parser.add_argument(
        "--webhook-configuration",
        action="append",
        default=[],
        help="webhook configuration names (repeatable)",
    )
    rbac_parser.add_argument(
        "--guard-binding",
        default=tokenreviewers.DEFAULT_NAME,
        help="name of the inference guards' ClusterRole and of its ClusterRoleBinding",
    )
    rbac_parser.set_defaults(handler=_run_rbac)
