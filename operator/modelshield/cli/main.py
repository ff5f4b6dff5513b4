"""Entry point of the ``modelshield`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from modelshield import __version__

# Command name → the module that registers it (``register(subparsers)``; its parser sets
# `handler`, a function of the parsed arguments returning the exit code). Only the module
# of the command being run is imported, so that `modelshield drift-monitor` or `test` does
# not load kopf and the Kubernetes client (about 0.5 s and 35 MiB).
COMMANDS = {
    "test": "modelshield.cli.policytest",
    "crds": "modelshield.cli.crds",
    "docs": "modelshield.cli.docs",
    "verify-image": "modelshield.cli.verifyimage",
    "model": "modelshield.cli.model",
    "drift": "modelshield.cli.drift",
    "drift-monitor": "modelshield.cli.drift",
    "guard": "modelshield.cli.guard",
    "webhook": "modelshield.cli.webhook",
    "operator": "modelshield.cli.operator",
    "rbac": "modelshield.cli.operator",
    "lineage": "modelshield.cli.lineage",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line: every command, or only the one named (and those of its module)."""
    parser = argparse.ArgumentParser(
        prog="modelshield",
        description="Enforce MLSecOps controls on Kubernetes model deployments.",
    )
    parser.add_argument("--version", action="version", version=f"modelshield {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[only]] if only in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command and return its exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = arguments[0] if arguments else None
    parsed = build_parser(command).parse_args(arguments)
    exit_code: int = parsed.handler(parsed)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
