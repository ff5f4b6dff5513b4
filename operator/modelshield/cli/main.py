"""Entry point of the ``modelshield`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeAlias

from modelshield import __version__

# Each command's module is imported inside the function that registers it (``register``
# sets the parser's `handler`, a function of the parsed arguments returning the exit
# code), so that only the module of the command being run is loaded: `modelshield
# drift-monitor` or `test` does not load kopf and the Kubernetes client (about 0.5 s and
# 35 MiB). Plain imports, not module names in strings, so that a reader and mypy follow
# each command to its module.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _register_policytest(subparsers: Subparsers) -> None:
    from modelshield.cli import policytest

    policytest.register(subparsers)


def _register_crds(subparsers: Subparsers) -> None:
    from modelshield.cli import crds

    crds.register(subparsers)


def _register_docs(subparsers: Subparsers) -> None:
    from modelshield.cli import docs

    docs.register(subparsers)


def _register_verifyimage(subparsers: Subparsers) -> None:
    from modelshield.cli import verifyimage

    verifyimage.register(subparsers)


def _register_model(subparsers: Subparsers) -> None:
    from modelshield.cli import model

    model.register(subparsers)


def _register_drift(subparsers: Subparsers) -> None:
    from modelshield.cli import drift

    drift.register(subparsers)


def _register_guard(subparsers: Subparsers) -> None:
    from modelshield.cli import guard

    guard.register(subparsers)


def _register_webhook(subparsers: Subparsers) -> None:
    from modelshield.cli import webhook

    webhook.register(subparsers)


def _register_operator(subparsers: Subparsers) -> None:
    from modelshield.cli import operator

    operator.register(subparsers)


def _register_lineage(subparsers: Subparsers) -> None:
    from modelshield.cli import lineage

    lineage.register(subparsers)


#: Command name → the function that registers it (and the other commands of its module).
COMMANDS: dict[str, Callable[[Subparsers], None]] = {
    "test": _register_policytest,
    "crds": _register_crds,
    "docs": _register_docs,
    "verify-image": _register_verifyimage,
    "model": _register_model,
    "drift": _register_drift,
    "drift-monitor": _register_drift,
    "guard": _register_guard,
    "webhook": _register_webhook,
    "operator": _register_operator,
    "rbac": _register_operator,
    "lineage": _register_lineage,
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line: every command, or only the one named (and those of its module)."""
    parser = argparse.ArgumentParser(
        prog="modelshield",
        description="Enforce MLSecOps controls on Kubernetes model deployments.",
    )
    parser.add_argument("--version", action="version", version=f"modelshield {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    registrars = [COMMANDS[only]] if only in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for register in registrars:
        register(subparsers)
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
