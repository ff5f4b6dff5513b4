"""Which model and verb a request path names, read strictly. Pure.

Only the canonical paths of KServe v1 and the Open Inference Protocol (v2) are known;
anything else is refused before any credential is looked at, and the guard forwards
exactly the path it judged (never a re-normalised one). The raw path is matched as sent:
a percent-encoded character, an empty segment (``//``), a dot segment or a query string
matches no route, so ``/v1/models/other%3Apredict`` or ``/v1/models//other:predict``
cannot name one model to the guard and another to the server.
"""

from __future__ import annotations

import dataclasses
import re

from modelshield.api.v1alpha1.apiprotection import MODEL_NAME_PATTERN, Protocol, Verb

_NAME = MODEL_NAME_PATTERN.removeprefix("^").removesuffix("$")
_VERSION = r"[a-zA-Z0-9]([-._a-zA-Z0-9]*[a-zA-Z0-9])?"

_V1_MODEL = re.compile(rf"/v1/models/(?P<model>{_NAME})(?::(?P<action>predict|explain))?")
_V2_MODEL = re.compile(
    rf"/v2/models/(?P<model>{_NAME})(?:/versions/{_VERSION})?(?P<tail>/infer|/ready)?"
)
_SERVER_PATHS: dict[str, Protocol] = {
    "/": Protocol.KSERVE_V1,
    "/v1/models": Protocol.KSERVE_V1,
    "/v2": Protocol.OPEN_INFERENCE_V2,
    "/v2/health/live": Protocol.OPEN_INFERENCE_V2,
    "/v2/health/ready": Protocol.OPEN_INFERENCE_V2,
}
#: The HTTP method each verb is called with.
METHODS: dict[Verb, str] = {
    Verb.PREDICT: "POST",
    Verb.EXPLAIN: "POST",
    Verb.INFER: "POST",
    Verb.METADATA: "GET",
    Verb.HEALTH: "GET",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """What a request asks: a protocol, a verb and (except for server-wide paths) a model."""

    protocol: Protocol
    verb: Verb
    model: str | None

    @property
    def has_body(self) -> bool:
        """Whether the verb sends a request body (an inference payload)."""
        return METHODS[self.verb] == "POST"


@dataclasses.dataclass(frozen=True, slots=True)
class RouteError:
    """A request that names no route: 404 (unknown path), 405 (wrong method), 400."""

    status: int
    reason: str


#: (method, raw path) -> its route, for paths that name one: clients call the same few
#: paths again and again, so each is matched once. Bounded: once full, further paths are
#: matched on every request and not kept (an attacker's made-up model names cannot grow
#: it). Routes are frozen, so one is shared by every request.
_KNOWN: dict[tuple[str, str], Route] = {}
_KNOWN_LIMIT = 1024


def parse(method: str, raw_path: str) -> Route | RouteError:
    """The route of a request line, or why it has none. ``raw_path`` is as sent, undecoded."""
    known = _KNOWN.get((method, raw_path))
    if known is not None:
        return known
    found = _parse(method, raw_path)
    if isinstance(found, Route) and len(_KNOWN) < _KNOWN_LIMIT:
        _KNOWN[(method, raw_path)] = found
    return found


def _parse(method: str, raw_path: str) -> Route | RouteError:
    path, _, query = raw_path.partition("?")
    if query or raw_path.endswith("?"):
        return RouteError(400, "query strings are not accepted by the inference API")
    route = _match(path)
    if route is None:
        return RouteError(404, f"no inference route at {_shown(path)!r}")
    if method != METHODS[route.verb]:
        return RouteError(405, f"{route.verb.value} takes {METHODS[route.verb]}, not {method}")
    return route


def _match(path: str) -> Route | None:
    if path in _SERVER_PATHS:
        return Route(_SERVER_PATHS[path], Verb.HEALTH, None)
    if (m := _V1_MODEL.fullmatch(path)) is not None:
        action = m.group("action")
        verb = {None: Verb.METADATA, "predict": Verb.PREDICT, "explain": Verb.EXPLAIN}[action]
        return Route(Protocol.KSERVE_V1, verb, m.group("model"))
    if (m := _V2_MODEL.fullmatch(path)) is not None:
        verb = Verb.INFER if m.group("tail") == "/infer" else Verb.METADATA
        return Route(Protocol.OPEN_INFERENCE_V2, verb, m.group("model"))
    return None


def _shown(path: str) -> str:
    """A path as it may appear in a reason: bounded, printable."""
    cut = path[:120]
    return "".join(c if c.isprintable() else "?" for c in cut) + ("..." if len(path) > 120 else "")
