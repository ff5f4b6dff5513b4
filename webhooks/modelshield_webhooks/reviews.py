"""AdmissionReview v1 requests: the wire shape and its parsing into a value object.

Parsing never raises anything but ``MalformedReviewError``, which carries the request
uid when one could be read, so that even a broken review gets a well-formed answer.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypedDict, cast

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
OPERATIONS: frozenset[str] = frozenset(("CREATE", "UPDATE", "DELETE", "CONNECT"))


class GroupVersionKind(TypedDict):
    """``request.kind``: what the object is."""

    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    """``request.resource``: which REST resource was called."""

    group: str
    version: str
    resource: str


class UserInfo(TypedDict, total=False):
    """Who made the request."""

    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class RequestBody(TypedDict, total=False):
    """``request`` of an AdmissionReview, as the API server sends it."""

    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    subResource: str
    requestKind: GroupVersionKind
    requestResource: GroupVersionResource
    requestSubResource: str
    name: str
    namespace: str
    operation: Operation
    userInfo: UserInfo
    object: dict[str, Any] | None
    oldObject: dict[str, Any] | None
    dryRun: bool
    options: dict[str, Any] | None


class ReviewBody(TypedDict, total=False):
    """An AdmissionReview document."""

    apiVersion: str
    kind: str
    request: RequestBody


class MalformedReviewError(ValueError):
    """The body is not an AdmissionReview v1 the server can decide on."""

    def __init__(self, problem: str, uid: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        #: The request uid if it could be read, so the denial can still be matched.
        self.uid = uid


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """The parts of an admission request the handlers use."""

    uid: str
    group: str
    version: str
    kind: str
    resource: str
    sub_resource: str
    operation: Operation
    namespace: str
    name: str
    username: str
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None
    dry_run: bool

    @property
    def describe(self) -> str:
        """kind namespace/name for log lines."""
        where = f"{self.namespace}/" if self.namespace else ""
        sub = f" ({self.sub_resource})" if self.sub_resource else ""
        return f"{self.operation} {self.kind}{sub} {where}{self.name}"


# JSON objects arrive as dicts: `isinstance(x, dict)` is several times cheaper than the
# Mapping ABC check, and this runs on every review.
def _text(node: Mapping[str, Any], key: str) -> str:
    value = node.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(key)
    return value


def _object(node: Mapping[str, Any], key: str, uid: str) -> Mapping[str, Any] | None:
    value = node.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedReviewError(f"request.{key} is not an object", uid)
    return cast(Mapping[str, Any], value)


def _optional_loads() -> Callable[[bytes], Any] | None:
    try:
        loads: Callable[[bytes], Any] = importlib.import_module("orjson").loads
    except ImportError:
        return None
    return loads


# orjson decodes a 6 KB review in a fifth of json's time, a third of what the whole
# handler spends on a governed review; the standard library is the fallback.
_FAST_LOADS = _optional_loads()


#: A lone surrogate can only come from a \uD800-\uDFFF escape or from raw bytes
#: ED A0-BF (which json.loads decodes with surrogatepass); a body without either has none,
#: so the exact check runs only when this matches.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _utf8_encodable(value: Any) -> bool:
    # A stack, not recursion: json.loads accepts nesting deeper than a recursive walk could.
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


class NotUtf8Error(ValueError):
    """The JSON holds a lone surrogate: no UTF-8 text, so nothing a review can carry."""

    def __init__(self, document: Any) -> None:
        super().__init__("a string holds a lone UTF-16 surrogate (not encodable as UTF-8)")
        #: What was decoded, so that a uid that is itself valid can still be echoed.
        self.document = document


def loads(body: bytes) -> Any:
    """Decode JSON; ValueError or RecursionError when it is not JSON of UTF-8 text.

    ``NotUtf8Error`` (a ValueError) when a string holds a lone surrogate: orjson refuses
    those, json accepts them, and no answer quoting one could be encoded.
    """
    if _FAST_LOADS is not None:
        try:
            return _FAST_LOADS(body)
        except ValueError:
            # orjson is stricter (integers past 64 bits, nesting depth): let json decide,
            # so that what is malformed does not depend on which parser is installed.
            pass
    document = json.loads(body)
    if _MAYBE_SURROGATE.search(body) and not _utf8_encodable(document):
        raise NotUtf8Error(document)
    return document


def _readable_uid(document: Any) -> str:
    """The request uid when it is a string that an answer can carry, else ''."""
    request = document.get("request") if isinstance(document, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid if isinstance(uid, str) and _utf8_encodable(uid) else ""


def decode(body: bytes) -> Request:
    """Parse the raw body of a POST into a Request; MalformedReviewError if it is not one."""
    try:
        document = loads(body)
    except NotUtf8Error as error:
        raise MalformedReviewError(
            f"the body is not UTF-8 JSON: {error}", _readable_uid(error.document)
        ) from error
    except (ValueError, RecursionError) as error:
        # UnicodeDecodeError is a ValueError; RecursionError guards deeply nested arrays.
        raise MalformedReviewError(f"the body is not JSON: {type(error).__name__}") from error
    try:
        return parse(document)
    except MalformedReviewError:
        raise
    except Exception as error:
        # parse() checks every field it reads; should one slip through, it is still a
        # malformed review (a denial), never a crash.
        raise MalformedReviewError(f"unreadable review ({type(error).__name__})") from error


def parse(document: Any) -> Request:
    """Parse a decoded AdmissionReview; MalformedReviewError with what is wrong."""
    if not isinstance(document, dict):
        raise MalformedReviewError("the body is not a JSON object")
    request = document.get("request")
    uid = ""
    if isinstance(request, dict) and isinstance(request.get("uid"), str):
        uid = request["uid"]
    if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        raise MalformedReviewError(f"the body is not an {API_VERSION} {KIND}", uid)
    if not isinstance(request, dict):
        raise MalformedReviewError("the review has no request object", uid)
    if not uid:
        raise MalformedReviewError("request.uid is missing")
    operation = request.get("operation")
    if not isinstance(operation, str) or operation not in OPERATIONS:
        raise MalformedReviewError(
            f"request.operation {operation!r} is not one of {sorted(OPERATIONS)}", uid
        )
    kind = request.get("kind")
    resource = request.get("resource")
    if not isinstance(kind, dict) or not isinstance(resource, dict):
        raise MalformedReviewError("request.kind or request.resource is missing", uid)
    try:
        group, version, kind_name = (
            _text(kind, "group"),
            _text(kind, "version"),
            _text(kind, "kind"),
        )
        resource_name = _text(resource, "resource")
        sub_resource = _text(request, "subResource")
        namespace = _text(request, "namespace")
        name = _text(request, "name")
        user = request.get("userInfo")
        username = _text(user, "username") if isinstance(user, dict) else ""
    except TypeError as error:
        raise MalformedReviewError(f"request field {error} is not a string", uid) from error
    if not kind_name:
        raise MalformedReviewError("request.kind.kind is empty", uid)
    dry_run = request.get("dryRun", False)
    if not isinstance(dry_run, bool) and dry_run is not None:
        raise MalformedReviewError("request.dryRun is not a boolean", uid)
    new = _object(request, "object", uid)
    old = _object(request, "oldObject", uid)
    if operation in ("CREATE", "UPDATE") and new is None:
        raise MalformedReviewError(f"a {operation} request carries no object", uid)
    return Request(
        uid=uid,
        group=group,
        version=version,
        kind=kind_name,
        resource=resource_name,
        sub_resource=sub_resource,
        operation=cast(Operation, operation),
        namespace=namespace,
        name=name,
        username=username,
        object=new,
        old_object=old,
        dry_run=bool(dry_run),
    )
