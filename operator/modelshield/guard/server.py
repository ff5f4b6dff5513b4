"""The guard's pipeline: judge each request, forward what passes, refuse the rest.

A request goes through these stages (``Pipeline.handle``): route → credential →
identity (``authenticating``: TokenReview or API key) → ``judging.judge_head`` (authentication,
authorization, rate limits) → body read with a ceiling → ``judging.judge_body`` →
forward to the model server → relay its answer. A refusal ends the pipeline with its
status, a JSON reason, a metric and an audit line; Audit policies' would-be refusals go
into the ``X-Modelshield-Audit`` header, the metrics and the audit line, and the request
continues. Credentials are stripped before forwarding and never logged. The audit line
and the metrics are written by ``auditing``, once the answer is sent (off the client's
path).

The pipeline reads an ``httpserving.Request`` and returns an ``httpserving.Answer``: the
clients' port is served by the guard's own HTTP/1.1 server (``build_server``,
``httpserving``) or, with ``modelshield guard --http-server=aiohttp``, by aiohttp's
(``build_app``). Health and metrics are served on a separate management port that
clients' traffic never reaches (``build_management_app``, aiohttp).
"""

from __future__ import annotations

import functools
import json
import pathlib
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import prometheus_client
from aiohttp import web

from modelshield.engine import decisions
from modelshield.engine.apiprotection import GuardRules
from modelshield.guard import (
    alarmevents,
    apikeys,
    auditing,
    authenticating,
    config,
    credentials,
    defending,
    feeding,
    forwarding,
    httpserving,
    judging,
    metrics,
    requestchecks,
    routes,
    tokenreviews,
)

CLIENT_HEADER = "X-Modelshield-Client"
_JSON = "application/json; charset=utf-8"
AUDIT_HEADER = "X-Modelshield-Audit"
#: The client label of a request refused before its token was reviewed (too many new
#: tokens from its source): who it is is not known, and the address is not a label.
UNREVIEWED = "unreviewed"
#: Never forwarded: hop-by-hop headers (RFC 9110 7.6.1), credentials, our own.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


# Expect: 100-continue was answered by the guard's server before it read the body; the
# guard's client sends the body at once, so the model server is not asked to expect it.
_NOT_FORWARDED = _HOP_BY_HOP | credentials.CREDENTIAL_HEADERS | {"expect"}


#: What the guard does with a request header: forward it, read it as a credential (and
#: never forward it), or drop it.
_FORWARD, _CREDENTIAL, _DROP = 0, 1, 2
#: Header name as sent -> its action, so a request's headers are sorted in one pass with a
#: dict lookup each (names repeat from request to request). Bounded: names past the bound
#: are classified on every request, never remembered.
_REQUEST_HEADER_ACTIONS: dict[str, int] = {}
#: Answer header name as sent -> whether it is relayed (not hop-by-hop); bounded alike.
_ANSWER_HEADER_RELAYED: dict[str, bool] = {}
_REMEMBERED_HEADER_NAMES = 1024


def _request_header_action(name: str) -> int:
    lower = name.lower()
    # WSGI and CGI servers (HTTP_X_API_KEY) and some proxies read "_" as "-": an underscore
    # spelling of a name the guard reads or writes (X_Modelshield_Client: admin beside
    # the guard's own) would reach the model as that name, so it is never forwarded.
    dashed = lower.replace("_", "-")
    if lower in credentials.CREDENTIAL_HEADERS:
        action = _CREDENTIAL
    elif (
        dashed in _NOT_FORWARDED
        or dashed in credentials.CREDENTIAL_HEADERS
        or dashed.startswith("x-modelshield-")
    ):
        action = _DROP
    else:
        action = _FORWARD
    if len(_REQUEST_HEADER_ACTIONS) < _REMEMBERED_HEADER_NAMES:
        _REQUEST_HEADER_ACTIONS[name] = action
    return action


def _answer_header_relayed(name: str) -> bool:
    lower = name.lower()
    # The guard's own answer headers (X-Modelshield-Audit, -Outlier) are its word alone:
    # the model server's, in any spelling, are not relayed beside them.
    relayed = lower not in _HOP_BY_HOP and not lower.replace("_", "-").startswith("x-modelshield-")
    if len(_ANSWER_HEADER_RELAYED) < _REMEMBERED_HEADER_NAMES:
        _ANSWER_HEADER_RELAYED[name] = relayed
    return relayed


def sort_headers(
    headers: Iterable[tuple[str, str]],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A request's headers in one pass: those to forward, and those carrying credentials
    (for ``credentials.read``). Hop-by-hop headers, ``Expect``, credentials and the
    guard's own ``X-Modelshield-*`` are never forwarded, in any spelling."""
    forwarded: list[tuple[str, str]] = []
    presented: list[tuple[str, str]] = []
    actions = _REQUEST_HEADER_ACTIONS
    for name, value in headers:
        action = actions.get(name)
        if action is None:
            action = _request_header_action(name)
        if action == _FORWARD:
            forwarded.append((name, value))
        elif action == _CREDENTIAL:
            presented.append((name, value))
    return forwarded, presented


class Pipeline:
    """One guard: rules, limits, identities, the model server's client."""

    def __init__(
        self,
        rules: GuardRules,
        upstream: str,
        authenticator: authenticating.Authenticator,
        *,
        upstream_timeout: float = 30.0,
        answer_limit: int | None = forwarding.DEFAULT_ANSWER_LIMIT,
        guard_metrics: metrics.GuardMetrics | None = None,
        drift_monitor: str | None = None,
        features: tuple[requestchecks.Feature, ...] | None = None,
        defences: defending.Defences | None = None,
        events: alarmevents.EventSink | None = None,
    ) -> None:
        self.rules = rules
        self.upstream = upstream.rstrip("/")
        self.authenticator = authenticator
        self.limiter = judging.Limiter(rules)
        self.metrics = guard_metrics or metrics.GuardMetrics()
        self.upstream_timeout = upstream_timeout
        self.features = features
        self.defences = defences if defences is not None and defences.active else None
        self.hardening = defences if defences is not None and defences.hardening else None
        self.events = events
        # Made here, so that an upstream URL it cannot serve stops the guard at start.
        # It keeps nothing between requests (no cookie jar: a Set-Cookie answered to one
        # client must never go out with the next client's requests), adds no
        # Accept-Encoding of its own and relays answers as they come (no decompression).
        self._session = forwarding.Client(
            self.upstream,
            timeout=upstream_timeout,
            connect_timeout=min(5.0, upstream_timeout),
            limit=256,
            answer_limit=answer_limit,
        )
        self.feed = (
            feeding.DriftFeed(drift_monitor, self.metrics.registry) if drift_monitor else None
        )

    def session(self) -> forwarding.Client:
        """The model server's client (one, pooled, for every client)."""
        return self._session

    async def close(self) -> None:
        """Close the sessions."""
        await self._session.close()
        if self.feed is not None:
            await self.feed.close()
        if self.events is not None:
            await self.events.drain()
        if self.authenticator.reviewer is not None:
            await self.authenticator.reviewer.close()

    async def handle(self, request: httpserving.Request) -> httpserving.Answer:
        """Judge, then forward or refuse, one request. Its audit line and metrics are
        written by the answer's ``done``, which the server calls once the answer is sent
        (a fifth of the guard's own work, off the client's path)."""
        started = time.perf_counter()
        outcome = auditing.Outcome()
        try:
            answer = await self._handle(request, outcome)
        except BaseException:
            auditing.record(self.metrics, request.method, outcome, time.perf_counter() - started)
            raise
        answer.done = functools.partial(self._record, request.method, outcome, started)
        return answer

    def _record(self, method: str, outcome: auditing.Outcome, started: float) -> None:
        auditing.record(self.metrics, method, outcome, time.perf_counter() - started)

    async def _handle(
        self, request: httpserving.Request, outcome: auditing.Outcome
    ) -> httpserving.Answer:
        route = routes.parse(request.method, request.target)
        if isinstance(route, routes.RouteError):
            return self._refuse(
                outcome, judging.Refusal(route.status, judging.Code.NO_ROUTE, route.reason, None)
            )
        outcome.route = route
        forwarded, presented = sort_headers(request.headers)
        credential = credentials.read(presented)
        if isinstance(credential, credentials.CredentialError):
            code = (
                judging.Code.MALFORMED
                if credential.status == 400
                else judging.Code.INVALID_CREDENTIAL
            )
            return self._refuse(
                outcome, judging.Refusal(credential.status, code, credential.reason, None)
            )
        identity = self.authenticator.known(credential)
        if identity is None:
            try:
                # The peer's address: in Kubernetes each pod has its own, so one pod is
                # one source (callers behind one ingress or a SNAT share it).
                identity = await self.authenticator.identify(credential, request.peer)
            except tokenreviews.ReviewsThrottledError as throttled:
                outcome.client = UNREVIEWED
                refusal = judging.Refusal(
                    429,
                    judging.Code.TOO_MANY_NEW_TOKENS,
                    str(throttled),
                    None,
                    retry_after=throttled.retry_after,
                )
                return self._refuse(outcome, refusal)
            except tokenreviews.ReviewUnavailableError as error:
                outcome.note = str(error)
                return self._unavailable(outcome, 503, f"cannot check the token now ({error})")
        outcome.client = identity.client if isinstance(identity, judging.Identity) else "invalid"
        head = judging.judge_head(self.rules, route, identity, self.limiter, time.time())
        outcome.verdict = head
        if head.refusal is not None:
            return self._refuse(outcome, head.refusal)
        encoding = (request.content_encoding or "identity").strip().lower()
        if encoding != "identity":
            # A server may decode bodies before the guard reads them: forwarding the
            # decoded bytes under the client's encoding header would make the model read
            # something other than what was checked. Refused for every policy.
            reason = f"content encoding {encoding[:40]!r} is not accepted; send the body as is"
            refusal = judging.Refusal(415, judging.Code.MEDIA_TYPE, reason, None)
            return self._refuse(outcome, refusal)
        try:
            body = await request.body()
        except httpserving.BodyTooLargeError as error:
            outcome.verdict = judging.merge([head, judging.too_large(self.rules, error.size)])
            # Under Audit policies only, the refusal is audited: the body was not read, so
            # it cannot be forwarded either.
            refusal = outcome.verdict.refusal or judging.Refusal(
                413,
                judging.Code.BODY_TOO_LARGE,
                f"the body is larger than the guard reads ({self.rules.read_limit} bytes)",
                None,
            )
            return self._refuse(outcome, refusal)
        except httpserving.ClientGoneError as error:
            refusal = judging.Refusal(400, judging.Code.MALFORMED, str(error), None)
            return self._refuse(outcome, refusal)
        content_type = request.content_type
        checked, document = judging.judge_body(self.rules, route, content_type, body, self.features)
        outcome.verdict = judging.merge([head, checked])
        if outcome.verdict.refusal is not None:
            return self._refuse(outcome, outcome.verdict.refusal)
        if self.defences is not None:
            defended = self.defences.judge(outcome.client, route, document, time.time())
            outcome.verdict = judging.merge([outcome.verdict, defended.verdict])
            outcome.flags = defended.flags
            if self.events is not None:
                for ref, alarm in defended.alarms:
                    self.events.offer(ref, alarm)
            if defended.alarms:
                outcome.note = "; ".join(
                    f"probing alarm ({alarm.detector.value}, {ref}): {alarm.reason}"
                    for ref, alarm in defended.alarms
                )
            if outcome.verdict.refusal is not None:
                return self._refuse(outcome, outcome.verdict.refusal)
        return await self._forward(request, outcome, body, forwarded)

    def _refuse(self, outcome: auditing.Outcome, refusal: judging.Refusal) -> httpserving.Answer:
        outcome.status, outcome.refused = refusal.status, True
        if outcome.verdict.refusal is None:
            outcome.verdict = judging.Verdict(refusal, outcome.verdict.audited)
        document: dict[str, Any] = {"error": refusal.reason, "reason": refusal.code.value}
        if refusal.policy is not None:
            document["policy"] = str(refusal.policy)
        headers = [("Content-Type", _JSON), ("Date", httpserving.http_date())]
        if refusal.retry_after is not None:
            headers.append(("Retry-After", str(refusal.retry_after)))
        if refusal.status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="modelshield"'))
        self._audit_headers(headers, outcome.verdict)
        # The body may be unread: never reuse the connection for a next request.
        return httpserving.Answer(refusal.status, headers, json.dumps(document).encode(), True)

    def _unavailable(
        self, outcome: auditing.Outcome, status: int, reason: str
    ) -> httpserving.Answer:
        outcome.status, outcome.refused = status, True
        body = json.dumps({"error": reason, "reason": "Unavailable"}).encode()
        headers = [("Content-Type", _JSON), ("Date", httpserving.http_date())]
        return httpserving.Answer(status, headers, body, True)

    @staticmethod
    def _audit_headers(headers: list[tuple[str, str]], verdict: judging.Verdict) -> None:
        if verdict.audited:
            headers.append(
                (
                    AUDIT_HEADER,
                    "; ".join(f"{r.code.value} by {r.policy}: {r.reason}" for r in verdict.audited),
                )
            )

    async def _forward(
        self,
        request: httpserving.Request,
        outcome: auditing.Outcome,
        body: bytes,
        headers: list[tuple[str, str]],
    ) -> httpserving.Answer:
        headers.append((CLIENT_HEADER, outcome.client))
        try:
            answer = await self._session.request(request.method, request.target, headers, body)
        except TimeoutError:
            self.metrics.upstream_errors.inc()
            outcome.note = "model server timed out"
            return self._unavailable(outcome, 504, "the model server did not answer in time")
        except forwarding.UpstreamError as error:
            self.metrics.upstream_errors.inc()
            # The detail (it may name the model server's address) goes to the audit line only.
            outcome.note = (
                f"no usable answer from the model server: {type(error).__name__}: {error}"
            )
            return self._unavailable(
                outcome, 502, f"the model server cannot be reached ({type(error).__name__})"
            )
        content = answer.body
        if self.hardening is not None and outcome.route and 200 <= answer.status < 300:
            content = self.hardening.harden(content, outcome.route)
        relayed = _ANSWER_HEADER_RELAYED
        answer_headers: list[tuple[str, str]] = []
        for name, value in answer.headers:
            keep = relayed.get(name)
            if keep is None:
                keep = _answer_header_relayed(name)
            if keep:
                answer_headers.append((name, value))
        self._audit_headers(answer_headers, outcome.verdict)
        if outcome.flags:
            answer_headers.append((defending.OUTLIER_HEADER, "; ".join(outcome.flags)))
        outcome.status = answer.status
        # What the model answered is what the drift monitor should see.
        answered = 200 <= answer.status < 300 and bool(body)
        if self.feed is not None and answered:
            self.feed.offer(body, request.content_type or "")
        return httpserving.Answer(answer.status, answer_headers, content)


class _AiohttpRequest(httpserving.Request):
    """A request on aiohttp's server (``--http-server=aiohttp``), as the pipeline reads it."""

    __slots__ = ("_content", "_limit")

    def __init__(self, request: web.Request, limit: int) -> None:
        headers = request.headers
        super().__init__(
            request.method,
            request.raw_path,
            list(headers.items()),
            request.remote or "",
            request.content_length,
            ", ".join(headers.getall("Content-Type", ())) or None,
            ", ".join(headers.getall("Content-Encoding", ())) or None,
        )
        self._content = request.content
        self._limit = limit

    async def body(self) -> bytes:
        limit = self._limit
        declared = self.content_length
        if declared is not None and declared > limit:
            raise httpserving.BodyTooLargeError(declared)
        content = self._content
        # Most bodies come in one piece: that piece is the body, not copied.
        first = await content.readany()
        if len(first) > limit:
            raise httpserving.BodyTooLargeError(len(first))
        if not first:
            return b""
        if content.at_eof() and content.exception() is None:
            return first  # what a next read would say (b"", or the error), without a read
        chunk = await content.readany()
        if not chunk:
            return first
        body = bytearray(first)
        while chunk:
            body += chunk
            if len(body) > limit:
                raise httpserving.BodyTooLargeError(len(body))
            chunk = await content.readany()
        return bytes(body)


PIPELINE_KEY = web.AppKey("guard_pipeline", Pipeline)


def build_app(pipeline: Pipeline) -> web.Application:
    """The clients' port on aiohttp's server (``--http-server=aiohttp``): every path goes
    through the pipeline."""
    # The body is read by the pipeline with its own ceiling, not through client_max_size.
    app = web.Application(client_max_size=pipeline.rules.read_limit)
    app[PIPELINE_KEY] = pipeline
    limit = pipeline.rules.read_limit

    async def handle(request: web.Request) -> web.StreamResponse:
        answer = await pipeline.handle(_AiohttpRequest(request, limit))
        response = web.Response(status=answer.status, body=answer.body)
        for name, value in answer.headers:
            response.headers.add(name, value)
        if answer.close:
            response.force_close()
        # Sent here, not by aiohttp after this returns, so that the audit line and the
        # metrics come after the client has its answer.
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:
            pass  # the client is gone; aiohttp meets the same error and closes
        finally:
            if answer.done is not None:
                answer.done()
        return response

    app.router.add_route("*", "/{tail:.*}", handle)

    async def close_sessions(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[PIPELINE_KEY].close()

    app.cleanup_ctx.append(close_sessions)
    return app


def build_server(pipeline: Pipeline) -> httpserving.Server:
    """The clients' port on the guard's own server (``httpserving``; the default). Closing
    it does not close the pipeline."""
    return httpserving.Server(pipeline.handle, body_limit=pipeline.rules.read_limit)


def build_management_app(pipeline: Pipeline) -> web.Application:
    """Health and metrics, on the port only the kubelet and the scraper reach."""
    app = web.Application()

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def metrics_text(request: web.Request) -> web.Response:
        return web.Response(
            body=prometheus_client.generate_latest(pipeline.metrics.registry),
            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST},
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    app.router.add_get("/metrics", metrics_text)
    return app


def pipeline_from_config(settings: config.GuardConfig) -> Pipeline:
    """The pipeline a ``config.GuardConfig`` describes."""
    rules = settings.rules()
    reviewer = None
    if rules.audiences:
        server = tokenreviews.ApiServer(
            url=settings.api_server.url,
            ca_file=settings.api_server.ca_file,
            token_file=settings.api_server.token_file,
        )
        cache = tokenreviews.VerdictCache(rules.token_cache_ttl.total_seconds())
        reviewer = tokenreviews.TokenReviewer(server, rules.audiences, cache)
    keys = (
        apikeys.KeyStore(pathlib.Path(settings.api_keys_dir), rules.api_key_secrets)
        if rules.api_key_secrets
        else None
    )
    guard_metrics = metrics.GuardMetrics()
    events = (
        alarmevents.EventSink(
            settings.api_server.url,
            settings.api_server.token_file,
            settings.api_server.ca_file,
            settings.workload,
            guard_metrics.registry,
        )
        if settings.workload is not None
        and any(p.api.probing is not None for p in settings.policies)
        else None
    )
    return Pipeline(
        rules,
        settings.upstream,
        authenticating.Authenticator(reviewer, keys),
        upstream_timeout=settings.upstream_timeout_seconds,
        guard_metrics=guard_metrics,
        drift_monitor=settings.drift_monitor,
        features=(
            tuple(
                requestchecks.Feature(f.name, f.type == "numeric")
                for f in settings.reference_features
            )
            if settings.reference_features is not None
            else None
        ),
        defences=defending.Defences(
            [
                (decisions.PolicyRef(p.kind, p.namespace, p.name), p.enforcement, p.api)
                for p in settings.policies
            ],
            settings.outlier_model,
            guard_metrics.registry,
        ),
        events=events,
    )
