"""Where the repository and its test fixtures are, for tests that read files of the project."""

from __future__ import annotations

import pathlib

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPOSITORY / "tests" / "fixtures"
