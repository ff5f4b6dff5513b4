"""AdmissionReview v1 responses: allow, deny with a message a person can act on, warn, patch."""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypedDict

from modelshield.engine import decisions
from modelshield_webhooks import reviews

#: kubectl prints each warning on its own line; the API server truncates long ones and
#: drops warnings past a total of 4 KiB, so each is kept whole up to this size and the
#: count is bounded (the rest are summarised in one last warning).
MAX_WARNING_LENGTH = 512
MAX_WARNINGS = 8
#: The denial message names every violation; past this size it is cut with a note.
MAX_MESSAGE_LENGTH = 16_384

FORBIDDEN = 403
BAD_REQUEST = 400
INTERNAL_ERROR = 500


class Status(TypedDict, total=False):
    """The ``metav1.Status`` of a denial."""

    code: int
    reason: str
    message: str


class ResponseBody(TypedDict, total=False):
    """``response`` of an AdmissionReview."""

    uid: str
    allowed: bool
    status: Status
    warnings: list[str]
    patchType: str
    patch: str


class ReviewResponse(TypedDict):
    """The AdmissionReview the webhook answers with."""

    apiVersion: str
    kind: str
    response: ResponseBody


def _optional_dumps() -> Callable[[Any], bytes] | None:
    try:
        dumps: Callable[[Any], bytes] = importlib.import_module("orjson").dumps
    except ImportError:
        return None
    return dumps


_FAST_DUMPS = _optional_dumps()


def _valid_text(text: str) -> str:
    # Lone surrogates become U+FFFD (as Go's decoder in the API server would read them);
    # a pair that Python holds as two code points becomes the one character it encodes.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def encode(document: Any) -> bytes:
    """Compact UTF-8 JSON bytes (orjson when installed); never raises.

    orjson refuses what json accepts (lone surrogates, integers past 64 bits), and an
    answer that cannot be written is an HTTP 500 where a well-formed denial belongs.
    """
    if _FAST_DUMPS is not None:
        try:
            return _FAST_DUMPS(document)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            pass
    text = json.dumps(
        document,
        separators=(",", ":"),
        ensure_ascii=False,
        default=repr,  # a value no JSON type fits is shown, not fatal
        skipkeys=True,
    )
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _valid_text(text).encode()


def _review(response: ResponseBody) -> ReviewResponse:
    return {"apiVersion": reviews.API_VERSION, "kind": reviews.KIND, "response": response}


def _bounded(message: str, limit: int) -> str:
    if len(message) <= limit:
        return message
    return message[: limit - 40] + " ... (message truncated)"


def bounded_warnings(lines: Iterable[str]) -> list[str]:
    """Warnings as the API server will pass them on: bounded in size and number."""
    every = [_bounded(line.replace("\n", " "), MAX_WARNING_LENGTH) for line in lines]
    if len(every) <= MAX_WARNINGS:
        return every
    kept = every[: MAX_WARNINGS - 1]
    kept.append(f"... and {len(every) - len(kept)} more modelshield warnings")
    return kept


def allow(
    uid: str, *, warnings: Sequence[str] = (), patches: Sequence[dict[str, Any]] = ()
) -> ReviewResponse:
    """Admit, with warnings shown by kubectl and a JSONPatch when there is one."""
    response: ResponseBody = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = bounded_warnings(warnings)
    if patches:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(encode(list(patches))).decode()
    return _review(response)


def deny(
    uid: str,
    message: str,
    *,
    code: int = FORBIDDEN,
    reason: str = "Forbidden",
    warnings: Sequence[str] = (),
) -> ReviewResponse:
    """Refuse, with a message kubectl shows after "admission webhook ... denied the request:"."""
    response: ResponseBody = {
        "uid": uid,
        "allowed": False,
        "status": {
            "code": code,
            "reason": reason,
            "message": _bounded(message, MAX_MESSAGE_LENGTH),
        },
    }
    if warnings:
        response["warnings"] = bounded_warnings(warnings)
    return _review(response)


def malformed(error: reviews.MalformedReviewError) -> ReviewResponse:
    """The well-formed denial of a review that could not be read."""
    return deny(
        error.uid,
        f"modelshield could not read the AdmissionReview: {error.problem}; "
        "the API server sent something unexpected, check its version and the webhook configuration",
        code=BAD_REQUEST,
        reason="BadRequest",
    )


def internal_error(uid: str, what: str) -> ReviewResponse:
    """Fail closed: an error inside the webhook denies, it never admits."""
    return deny(
        uid,
        f"modelshield could not decide ({what}), so the request is denied (fail closed); "
        "retry, and if it persists read the modelshield webhook's log",
        code=INTERNAL_ERROR,
        reason="InternalError",
    )


def from_decision(uid: str, decision: decisions.Decision, *, subject: str) -> ReviewResponse:
    """The answer to a workload review: denial naming policy, container and fix; or warnings."""
    warnings = [f"modelshield (Audit) {violation.describe()}" for violation in decision.warnings]
    if decision.allowed:
        return allow(uid, warnings=warnings)
    count = len(decision.violations)
    head = f"{subject} violates {count} modelshield requirement{'s' if count != 1 else ''}:\n"
    return deny(uid, head + decision.message(), warnings=warnings)
