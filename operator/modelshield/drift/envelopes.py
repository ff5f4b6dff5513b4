"""The CloudEvent envelope: which stream an HTTP request feeds, and its JSON payload.

- **Binary** content mode (what the KServe payload logger sends): ``ce-specversion``,
  ``ce-type``, ``ce-id``, ``ce-source`` and KServe's extensions as headers, the inference
  payload as the body.
- **Structured** mode: ``Content-Type: application/cloudevents+json``, the payload under
  ``data`` or base64 under ``data_base64``.
- No CloudEvent headers: a plain JSON request batch.

``type`` ending in ``.request`` (``org.kubeflow.serving.inference.request``) feeds the
input windows, ``.response`` the prediction windows. Batched mode is refused (415).
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Stream = Literal["request", "response"]

# orjson parses inference payloads (mostly floats) about ten times faster than the standard
# library, which is most of the monitor's cost per row; the standard library still works.
try:
    _json_loads: Callable[[bytes | str], Any] = importlib.import_module("orjson").loads
except ImportError:  # pragma: no cover - depends on the installation
    _json_loads = json.loads

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
SPEC_VERSION = "1.0"


class PayloadError(ValueError):
    """A payload the monitor cannot use: reason is a short label for metrics, status an HTTP code."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Event:
    """What the envelope said: the stream and the inference payload."""

    stream: Stream
    data: Any


def _loads(body: bytes | str, what: str) -> Any:
    try:
        return _json_loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise PayloadError("invalid-json", f"{what} is not JSON: {error}") from None


def _stream_of(event_type: object) -> Stream:
    if isinstance(event_type, str):
        if event_type.endswith(".request"):
            return "request"
        if event_type.endswith(".response"):
            return "response"
    raise PayloadError(
        "unknown-event-type",
        f"CloudEvent type {event_type!r} is neither an inference request nor a response "
        "(expected a type ending in .request or .response)",
    )


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json", "text/json") or media.endswith("+json")


def unwrap(headers: Mapping[str, str], body: bytes) -> Event:
    """Take the CloudEvent envelope off (if any): which stream, which payload.

    headers must look names up case-insensitively (aiohttp's are; tests use CIMultiDict).
    """
    content_type = headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == BATCH_CONTENT_TYPE:
        raise PayloadError(
            "unsupported-content-mode",
            "batched CloudEvents are not accepted; send binary or structured mode",
            415,
        )
    if media == STRUCTURED_CONTENT_TYPE:
        document = _loads(body, "the structured CloudEvent")
        if not isinstance(document, dict):
            raise PayloadError("invalid-cloudevent", "a structured CloudEvent is a JSON object")
        if document.get("specversion") != SPEC_VERSION:
            raise PayloadError(
                "invalid-cloudevent",
                f"specversion {document.get('specversion')!r} is not {SPEC_VERSION!r}",
            )
        stream = _stream_of(document.get("type"))
        if not _is_json(str(document.get("datacontenttype", "application/json"))):
            raise PayloadError(
                "unsupported-media-type",
                f"datacontenttype {document.get('datacontenttype')!r} is not JSON",
                415,
            )
        if "data_base64" in document:
            try:
                raw = base64.b64decode(str(document["data_base64"]), validate=True)
            except (binascii.Error, ValueError):
                raise PayloadError("invalid-cloudevent", "data_base64 is not base64") from None
            return Event(stream, _loads(raw, "the event's data"))
        if "data" not in document:
            raise PayloadError("invalid-cloudevent", "the CloudEvent carries no data")
        data = document["data"]
        if isinstance(data, str):
            data = _loads(data, "the event's data")
        return Event(stream, data)
    specversion = headers.get("ce-specversion")
    if specversion is not None:
        if specversion != SPEC_VERSION:
            raise PayloadError(
                "invalid-cloudevent", f"ce-specversion {specversion!r} is not {SPEC_VERSION!r}"
            )
        stream = _stream_of(headers.get("ce-type"))
        return Event(stream, _loads(body, "the event's data"))
    return Event("request", _loads(body, "the body"))
