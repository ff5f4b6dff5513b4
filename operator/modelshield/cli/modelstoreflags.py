"""``--s3-endpoint``: the S3 server of ModelArtifacts, one flag for the webhook and operator.

The operator fetches ``s3://`` ModelArtifacts from it; admission admits a KServe storage
initializer that downloads from it and refuses one sent anywhere else. Both commands add
the flag here and read it into one ``s3endpoints.ModelStore``, so that the two processes
cannot disagree on which server a verified model lives on (the chart passes the value
``modelStore.s3Endpoint`` to both).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from modelshield.engine import s3endpoints

#: The operator's fetch read these before the flag existed (``transfers.Settings``).
ENVIRONMENT = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--s3-endpoint``."""
    parser.add_argument(
        "--s3-endpoint",
        default=None,
        metavar="URL",
        help="the S3 server s3:// ModelArtifacts are fetched from (http(s)://host[:port], "
        "a host name by its full name or an IP address); admission refuses pods whose "
        "storage initializer downloads from any other (default: AWS S3)",
    )


def problems(arguments: argparse.Namespace) -> list[str]:
    """What makes the flag unusable, as the flag names it; empty when none."""
    text = arguments.s3_endpoint
    if not text:
        return []
    problem = s3endpoints.setting_problem(text)
    return [] if problem is None else [f"--s3-endpoint {problem}"]


def store_from(arguments: argparse.Namespace) -> s3endpoints.ModelStore:
    """The model store the flag names (call ``problems`` first: raises EndpointError)."""
    return s3endpoints.ModelStore.configured(arguments.s3_endpoint)


def environment_conflict(
    store: s3endpoints.ModelStore, environ: Mapping[str, str] = os.environ
) -> str | None:
    """Why the operator's AWS_ENDPOINT_URL(_S3) contradicts ``--s3-endpoint``, or None.

    The flag wins for the fetch; an environment naming another server means the
    installation meant something else, so the operator refuses to start. An endpoint in
    the environment without the flag is refused too: the operator would verify models on
    that server while admission, told nothing, judges downloads as AWS S3's, and a pod
    naming no endpoint would load the same bucket and key from AWS (bucket names there
    are anyone's to take).
    """
    for name in ENVIRONMENT:
        value = environ.get(name)
        if not value:
            continue
        if store.s3_endpoint is None:
            return (
                f"{name} names an S3 server but --s3-endpoint is not set; set "
                "--s3-endpoint (the chart's modelStore.s3Endpoint) to that server so "
                "that admission judges downloads against the server models are verified on"
            )
        if not store.serves(value):
            return (
                f"{name} names another S3 server than --s3-endpoint {store.s3_endpoint!r}; "
                "remove it (the flag is the one setting the webhook shares)"
            )
    return None
