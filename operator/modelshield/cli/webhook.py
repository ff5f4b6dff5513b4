"""``modelshield webhook``: run the admission server; ``webhook configuration``: print its registration.

The server reads policies, ModelArtifacts and namespaces through list+watch (it needs
get/list/watch on them), verifies images with the image verifier and answers over HTTPS
with the certificate and key given, reloading them when they change.

With ``--read-signer-secrets`` it resolves ``secretRef`` image and attestation signers
from the policy's namespace, and with ``--read-pull-secrets`` it uses the pod's
``imagePullSecrets`` for registry auth on cold verifications: both read Secrets with a
``get`` by name (RBAC: ``get`` on ``secrets``), cached for ``--secret-ttl-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import signal
import ssl
import sys

import yaml

from modelshield.cli import modelstoreflags, verifierflags
from modelshield.supplychain.images import verifiersettings
from modelshield_webhooks import (
    apisecrets,
    caches,
    certificates,
    configurations,
    connections,
    contexts,
    eventloops,
    server,
    watching,
)

_logger = logging.getLogger("modelshield.webhook")


async def _serve(arguments: argparse.Namespace) -> int:
    # Checked by _run; every wait on the request path comes from this one budget.
    budget = contexts.request_budget(arguments.timeout_seconds, arguments.verify_deadline)
    settings = verifierflags.settings_from(arguments)
    verifier = verifiersettings.build_verifier(settings)
    context = contexts.AdmissionContext(
        state=caches.ClusterState(),
        verifier=verifier,
        verify_deadline_seconds=budget.verify_deadline_seconds,
        namespace_wait_seconds=budget.namespace_wait_seconds,
        startup_image=arguments.startup_image,
        store=modelstoreflags.store_from(arguments),
    )
    certificate = certificates.ReloadingCertificate(
        pathlib.Path(arguments.cert), pathlib.Path(arguments.key)
    )
    connection = connections.connect(arguments.kubeconfig)
    session, informers = watching.start(
        connection, context.state, resync_seconds=arguments.resync_seconds
    )
    context.secrets = verifiersettings.secret_access(
        settings, apisecrets.KubernetesSecrets(connection, session)
    )
    for cache in context.secrets.caches():
        informers.append(asyncio.create_task(cache.keep_fresh(), name="secret-refresh"))
    running = await server.start(context, certificate, host=arguments.host, port=arguments.port)
    print(f"modelshield webhook listening on https://{arguments.host}:{running.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    # Fail readiness first and keep serving a while: the API server still sends reviews
    # to this pod until its endpoint is gone, and a refused call would be a denial.
    context.draining = True
    _logger.info("draining for %.1fs, then stopping", arguments.shutdown_delay)
    await asyncio.sleep(arguments.shutdown_delay)
    await running.stop()
    for task in informers:
        task.cancel()
    await asyncio.gather(*informers, return_exceptions=True)
    await session.close()
    await verifier.close()
    return 0


def _webhook_timeout(text: str) -> int:
    """A webhook configuration's timeoutSeconds: the API server accepts 1 to 30."""
    seconds = int(text)
    if not 1 <= seconds <= 30:
        raise argparse.ArgumentTypeError(f"must be 1 to 30 (the API server's bounds), not {text}")
    return seconds


def _run(arguments: argparse.Namespace) -> int:
    if not arguments.cert or not arguments.key:
        print("error: --cert and --key are required to serve", file=sys.stderr)
        return 2
    for problem in [
        *verifierflags.settings_from(arguments).problems(),
        *modelstoreflags.problems(arguments),
    ]:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        contexts.request_budget(arguments.timeout_seconds, arguments.verify_deadline)
    except contexts.BudgetError as error:
        print(f"error: --timeout-seconds/--verify-deadline: {error}", file=sys.stderr)
        return 2
    for path in (arguments.cert, arguments.key):
        if not certificates.exists(path):
            print(f"error: {path}: no such file", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=arguments.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return eventloops.run(_serve(arguments), arguments.event_loop)
    except eventloops.UnavailableLoopError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except connections.ConfigurationError as error:
        print(f"error: cannot reach the Kubernetes API: {error}", file=sys.stderr)
        return 2
    except (OSError, ssl.SSLError) as error:
        # A certificate and key that do not match, or a port already taken.
        print(f"error: {error}", file=sys.stderr)
        return 2


def _print_configuration(arguments: argparse.Namespace) -> int:
    ca_bundle = pathlib.Path(arguments.ca_bundle).read_bytes()
    if arguments.url:
        endpoint = configurations.Endpoint(ca_bundle=ca_bundle, url=arguments.url)
    else:
        namespace, _, name = arguments.service.partition("/")
        endpoint = configurations.Endpoint(
            ca_bundle=ca_bundle,
            service_namespace=namespace,
            service_name=name or configurations.DEFAULT_NAME,
            service_port=arguments.service_port,
        )
    options = {
        "name": arguments.name,
        "own_namespace": arguments.namespace,
        "timeout_seconds": arguments.timeout_seconds,
    }
    documents = [
        configurations.mutating_configuration(endpoint, **options),
        configurations.validating_configuration(endpoint, **options),
    ]
    sys.stdout.write(yaml.safe_dump_all(documents, sort_keys=False))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``webhook`` command."""
    parser = subparsers.add_parser(
        "webhook",
        help="run the admission webhook server (or print its configuration)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cert", help="PEM serving certificate (reloaded when it changes)")
    parser.add_argument("--key", help="PEM private key of the serving certificate")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    parser.add_argument("--port", type=int, default=8443, help="port to listen on (8443)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster)")
    parser.add_argument(
        "--timeout-seconds",
        type=int,
        default=contexts.WEBHOOK_TIMEOUT_SECONDS,
        help="the webhook configurations' timeoutSeconds; verification stops well before it",
    )
    parser.add_argument(
        "--verify-deadline",
        type=float,
        default=None,
        help="deadline of a cold image verification in seconds (default and maximum: what "
        "the timeout leaves after the namespace wait, the hard stop and a margin of "
        "max(0.5, 0.3 x timeout) for the answer)",
    )
    verifierflags.add_arguments(parser)
    modelstoreflags.add_arguments(parser)
    parser.add_argument(
        "--startup-image",
        default=contexts.AdmissionContext.startup_image,
        help="image of the injected model re-verification init container",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=watching.DEFAULT_RESYNC_SECONDS,
        help="how often every cache is listed again from scratch",
    )
    parser.add_argument(
        "--shutdown-delay",
        type=float,
        default=5.0,
        help="seconds to keep serving, not ready, after SIGTERM (endpoints catch up)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument(
        "--event-loop",
        default=eventloops.UVLOOP,
        choices=eventloops.CHOICES,
        help="asyncio event loop implementation (uvloop: faster; asyncio: the standard one)",
    )
    parser.set_defaults(handler=_run)

    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    configuration = actions.add_parser(
        "configuration",
        help="print the Mutating- and ValidatingWebhookConfiguration as YAML",
    )
    target = configuration.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="base URL the API server calls, e.g. https://127.0.0.1:8443")
    target.add_argument("--service", help="NAMESPACE/NAME of the webhook's Service")
    configuration.add_argument("--service-port", type=int, default=443)
    configuration.add_argument(
        "--ca-bundle", required=True, help="PEM CA that signed the serving cert"
    )
    configuration.add_argument("--name", default=configurations.DEFAULT_NAME)
    configuration.add_argument(
        "--namespace",
        default=configurations.DEFAULT_NAMESPACE,
        help="modelshield's own namespace, never intercepted",
    )
    configuration.add_argument(
        "--timeout-seconds",
        type=_webhook_timeout,
        default=contexts.WEBHOOK_TIMEOUT_SECONDS,
        help="seconds the API server waits for an answer (the API server accepts 1-30)",
    )
    configuration.set_defaults(handler=_print_configuration)
