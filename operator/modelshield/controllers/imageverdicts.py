"""Image verdicts for the operator: looked up without I/O, verified promptly in the background.

Policy status and the audit read verdicts through ``Verifications``: the verifier's live
cache first, else the last verdict this process reached for the same (image, effective
requirement), kept so that a verdict whose cache entry expired (negatives live seconds)
does not flip the status to "pending" and back on every recompute. A governed workload
whose image has no verdict at all is queued here at once (a new or changed workload, a
new policy, a rotated key): deduplicated, ``concurrency`` at a time, each under
``deadline_seconds``, off the event handlers; when its verdict arrives, ``on_verdict``
gets the workloads that waited, and the reconciler recomputes their policies' status.

Each verification is gathered by the facts layer the webhook uses too
(``supplychain.images.gathering``), with the opt-in Secret reads of its ``SecretAccess``:
``signer_keys`` resolves ``secretRef`` signers in the workload's namespace (the verdict is
keyed by the resolved requirement, so namespaces whose Secrets hold different keys never
share one), and ``pull_secrets`` supplies the pod template's ``imagePullSecrets`` to cold
verifications. Secret values are never logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from modelshield.controllers import caches
from modelshield.engine import compiling, evaluating, facts, modelchecks, workloads
from modelshield.supplychain.images import gathering, secretreading, signerkeys, verifiers

LOGGER = logging.getLogger("modelshield.verifying")
DEADLINE_SECONDS = 20.0
CONCURRENCY = 8
#: A verdict kept past its cache entry is verified again at most this often.
REFRESH_SECONDS = 30.0
MAX_KEPT = 10_000
#: Beyond the verifier's own deadline, how long to wait before answering "timed out" here.
GRACE_SECONDS = 0.5

#: (image, requirement key as the engine knows it, namespace when Secrets make it matter)
RequestKey = tuple[str, str, str]


@dataclasses.dataclass
class Request:
    """One (image, requirement) to verify in a namespace, and the workloads waiting for it."""

    image: str
    requirement: compiling.CompiledImages
    namespace: str
    pull_secret_names: tuple[str, ...] = ()
    waiting: set[caches.Key] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(frozen=True)
class Looked:
    """The image facts found for one workload, and the images that have none yet."""

    verdicts: Mapping[tuple[str, str], facts.ImageFacts]
    missing: frozenset[str]

    def source(self, world: caches.World) -> caches.WorldFacts:
        """A FactSource over these verdicts and the World's ModelArtifacts."""
        return caches.WorldFacts(world, lambda image, key: self.verdicts.get((image, key)))


class Verifications:
    """Verdict lookups and background verification; one per operator process."""

    def __init__(
        self,
        verifier: verifiers.Verifier | None,
        *,
        secrets: gathering.SecretAccess = gathering.NO_SECRETS,
        concurrency: int = CONCURRENCY,
        deadline_seconds: float = DEADLINE_SECONDS,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.verifier = verifier
        self.secrets = secrets
        self.concurrency = concurrency
        self.deadline_seconds = deadline_seconds
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        #: Called with the workloads whose awaited verdicts arrived.
        self.on_verdict: Callable[[set[caches.Key]], None] | None = None
        self._kept: collections.OrderedDict[RequestKey, tuple[str, facts.ImageFacts]] = (
            collections.OrderedDict()
        )
        self._requests: dict[RequestKey, Request] = {}
        self._attempted: dict[RequestKey, float] = {}
        self._queue: asyncio.Queue[RequestKey] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def verifying(self) -> bool:
        """Whether missing verdicts will come: there is a verifier."""
        return self.verifier is not None

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Start the workers (and the Secret refresher) on the running loop."""
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._tasks = [loop.create_task(self._work()) for _ in range(self.concurrency)]
        self._tasks.extend(loop.create_task(c.keep_fresh()) for c in self.secrets.caches())
        for key in self._requests:  # asked for before the start
            self._queue.put_nowait(key)

    async def stop(self) -> None:
        """Stop every task and release the verifier's connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        close = getattr(self.verifier, "close", None)
        if close is not None:
            await close()

    @property
    def in_progress(self) -> int:
        """Requests queued or being verified."""
        return len(self._requests)

    # --- lookups (no I/O) -----------------------------------------------------

    def _key(self, image: str, requirement: compiling.CompiledImages, namespace: str) -> RequestKey:
        secrets_matter = self.secrets.pull_secrets is not None or (
            self.secrets.signer_keys is not None
            and bool(signerkeys.secret_refs(requirement.source))
        )
        return (image, requirement.key, namespace if secrets_matter else "")

    def lookup(
        self, image: str, requirement: compiling.CompiledImages, namespace: str
    ) -> tuple[facts.ImageFacts | None, bool]:
        """(verdict, fresh): the verifier's live entry, else the last verdict kept, else None."""
        if self.verifier is None:
            return None, False
        effective = self.secrets.resolved_now(requirement, namespace)
        key = self._key(image, requirement, namespace)
        kept = self._kept.get(key)
        if effective is not None:
            hit = self.verifier.cached(image, effective.key)
            if hit is not None:
                self._keep(key, effective.key, hit)
                return hit, True
            if kept is not None and kept[0] != effective.key:
                return None, False  # another key now (a rotated Secret, say): not known yet
        # Secrets not read yet (or expired from their cache): the last verdict stands.
        return (kept[1] if kept is not None else None), False

    def _keep(self, key: RequestKey, effective_key: str, verdict: facts.ImageFacts) -> None:
        self._kept[key] = (effective_key, verdict)
        self._kept.move_to_end(key)
        while len(self._kept) > MAX_KEPT:
            self._kept.popitem(last=False)

    def look_up(
        self,
        workload_key: caches.Key,
        workload: workloads.Workload,
        governing: tuple[compiling.CompiledPolicy, ...],
        *,
        request: bool = True,
    ) -> Looked:
        """The verdicts for a workload's images; with request, queue what is missing or stale."""
        verdicts: dict[tuple[str, str], facts.ImageFacts] = {}
        missing: set[str] = set()
        names: tuple[str, ...] | None = None
        for image, requirement in evaluating.image_requests(workload, governing):
            found, fresh = self.lookup(image, requirement, workload.namespace)
            if found is not None:
                verdicts[(image, requirement.key)] = found
            else:
                missing.add(image)
            if request and not fresh and self.verifier is not None:
                if names is None:
                    names = secretreading.pull_secret_names(workload.containers)
                self.request(workload_key, image, requirement, workload.namespace, names, found)
        return Looked(verdicts, frozenset(missing))

    # --- background verification ----------------------------------------------

    def request(
        self,
        workload_key: caches.Key,
        image: str,
        requirement: compiling.CompiledImages,
        namespace: str,
        pull_secret_names: tuple[str, ...] = (),
        known: facts.ImageFacts | None = None,
    ) -> None:
        """Verify soon (once for all who ask); a known verdict is refreshed at most every
        ``refresh_seconds``."""
        key = self._key(image, requirement, namespace)
        waiting = self._requests.get(key)
        if waiting is not None:
            waiting.waiting.add(workload_key)
            return
        attempted = self._attempted.get(key)
        recent = attempted is not None and self._clock() - attempted < self.refresh_seconds
        if known is not None and recent:
            return
        self._requests[key] = Request(
            image, requirement, namespace, pull_secret_names, {workload_key}
        )
        if self._queue is not None:
            self._queue.put_nowait(key)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            key = await self._queue.get()
            request = self._requests.get(key)
            if request is None:
                continue
            try:
                await self.verify(request)
            except Exception:  # keep the worker alive whatever happened
                LOGGER.exception("verifying %s failed", request.image)
            finally:
                self._requests.pop(key, None)
            if self.on_verdict is not None and request.waiting:
                self.on_verdict(set(request.waiting))

    async def verify(self, request: Request) -> facts.ImageFacts:
        """One verification, Secrets read first, all under the deadline; never raises."""
        assert self.verifier is not None
        requirement = request.requirement
        resolved = self.secrets.resolved_now(requirement, request.namespace)
        (gathered,) = await gathering.gather(
            self.verifier,
            [gathering.Request(request.image, requirement, resolved)],
            namespace=request.namespace,
            deadline_seconds=self.deadline_seconds,
            grace_seconds=GRACE_SECONDS,
            access=self.secrets,
            pull_secret_names=request.pull_secret_names,
        )
        verdict = gathered.image
        key = self._key(request.image, request.requirement, request.namespace)
        self._keep(key, gathered.requirement.key, verdict)
        now = self._clock()
        self._attempted[key] = now
        if len(self._attempted) > MAX_KEPT:  # only recent attempts hold a refresh back
            self._attempted = {
                k: t for k, t in self._attempted.items() if now - t < self.refresh_seconds
            }
        return verdict

    async def verify_all(self, requests: Iterable[Request]) -> None:
        """Verify every request now, ``concurrency`` at a time (the audit; fresh hits are free)."""
        if self.verifier is None:
            return
        limit = asyncio.Semaphore(self.concurrency)

        async def one(request: Request) -> None:
            async with limit:
                await self.verify(request)

        await asyncio.gather(*(one(request) for request in requests))

    def audit_requests(
        self, governed: Iterable[tuple[workloads.Workload, tuple[compiling.CompiledPolicy, ...]]]
    ) -> list[Request]:
        """Every (image, requirement) of these workloads once (per namespace when Secrets
        matter), with the pull secrets of the first workload that names any."""
        found: dict[RequestKey, Request] = {}
        for workload, governing in governed:
            names = secretreading.pull_secret_names(workload.containers)
            for image, requirement in evaluating.image_requests(workload, governing):
                key = self._key(image, requirement, workload.namespace)
                request = found.get(key)
                if request is None:
                    found[key] = Request(image, requirement, workload.namespace, names)
                elif names and not request.pull_secret_names:
                    request.pull_secret_names = names
        return list(found.values())


def image_subject(
    workload: workloads.Workload,
    world: caches.World,
    startup: modelchecks.StartupCheck | None,
) -> workloads.Workload:
    """The workload whose images are verified: without modelshield's own startup container.

    The validating webhook's exemption, by the same engine functions (``evaluating.decide``
    given the same ``startup`` leaves that container out of image checks too).
    """
    genuine = modelchecks.startup_containers(workload, caches.WorldFacts(world), startup)
    return modelchecks.without_startup_container(workload, genuine)
