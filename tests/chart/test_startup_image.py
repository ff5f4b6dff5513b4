"""The webhook and the operator get the same ``--startup-image`` from one value.

The mutating webhook injects an init container running that image; the validating webhook
and the operator's status and audit exempt exactly that container from image requirements.
Were the operator given another image, it would report every pod (or template) carrying
the injected container as violating while admission admits it.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest

from modelshield.cli import main
from tests.support import chartrendering as rendering

CUSTOM = "registry.example/ml/modelshield-verify:1.2"


def _startup_images(manifests: list[rendering.Manifest]) -> dict[str, str]:
    found = {}
    for component in ("webhook", "operator"):
        name = f"{rendering.RELEASE}-{component}"
        deployment = rendering.one(manifests, "Deployment", name)
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        with contextlib.redirect_stderr(io.StringIO()):
            parsed = main.build_parser(args[0]).parse_args(args)
        found[component] = parsed.startup_image
    return found


def _render(values: dict[str, Any]) -> list[rendering.Manifest]:
    return rendering.parse(rendering.render_text(values))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, "ghcr.io/modelshield/modelshield:"),
        ({"image": {"digest": "sha256:" + "ab" * 32}}, "ghcr.io/modelshield/modelshield@sha256:"),
        ({"webhook": {"startupImage": CUSTOM}}, CUSTOM),
    ],
)
def test_webhook_and_operator_get_the_same_startup_image(
    values: dict[str, Any], expected: str
) -> None:
    images = _startup_images(_render(values))
    assert images["webhook"] == images["operator"], images
    assert images["operator"].startswith(expected)
