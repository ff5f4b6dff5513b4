"""The chart's rendered workloads parsed: the operator's Deployment, as the scope tests read it."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from modelshield.cli import main
from tests.support import chartrendering as rendering

OPERATOR = f"{rendering.RELEASE}-operator"


def _parsed(args: list[str]) -> argparse.Namespace:
    parser = main.build_parser()
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            return parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"`modelshield {' '.join(args)}` is refused: {errors.getvalue()}")
