"""Entry point of the ``modelshield`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modelshield import __version__
from modelshield.cli import crds, docs, drift, model, operator, policytest, verifyimage, webhook

# Each subcommand module exposes register(subparsers); its parser sets `handler`,
# a function taking the parsed arguments and returning the exit code.
SUBCOMMANDS = (crds, policytest, drift, webhook, docs, operator, verifyimage, model)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, for main() and for the docs."""
    parser = argparse.ArgumentParser(
        prog="modelshield",
        description="Enforce MLSecOps controls on Kubernetes model deployments.",
    )
    parser.add_argument("--version", action="version", version=f"modelshield {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command and return its exit code."""
    arguments = build_parser().parse_args(argv)
    exit_code: int = arguments.handler(arguments)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
