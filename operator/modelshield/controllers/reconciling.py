"""The policy reconciler: a work queue of workloads, and of policies whose status is due.

Watch events only put keys in the queue (deduplicated); workers take a workload, plan what
should exist next to it (``planning``), compare with what exists (``ownership.drift``) and
write only the difference, so a second pass changes nothing. Whatever the order in which
events arrive (or a restart in the middle), each pass moves the cluster to the same state.
Policy status is written after the workloads settle, at most once per ``status_delay``;
a workload whose images have no verdict yet is verified at once in the background
(``imageverdicts``) and counted as pending, not violating, until the verdict arrives.

NetworkPolicies fail closed: when the API server refuses the one planned, the plan's
deny-all fallback is written in the same pass (a Warning Event on the workload, the
policies Degraded, ``failed_closed`` counted in the metrics). Only when that write fails
too is the workload retried soon (growing delays up to 30 s); a workload left under its
deny-all is looked at again slowly (30 s growing to 5 minutes), so it gets its real
NetworkPolicy back once the API server accepts it, without hammering it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Iterable
from typing import Any

from modelshield.controllers import (
    caches,
    converging,
    guardbindings,
    imageverdicts,
    observing,
    planning,
    plans,
    statuses,
    writing,
)
from modelshield.engine import modelchecks, s3endpoints, workloads

LOGGER = logging.getLogger("modelshield.reconciler")
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
#: A workload left under its deny-all fallback is looked at again, slowly: hammering the
#: API server fixes nothing, but the cause may go away (an admission policy removed).
FAILED_CLOSED_RETRY_DELAYS = (30.0, 60.0, 120.0, 300.0)
STATUS_MAX_WAITS = 30
RevertLoopError = converging.RevertLoopError


class Controller:
    """The reconciler's queues, workers and status writer."""

    def __init__(
        self,
        world: caches.World,
        kube: writing.Kube,
        settings: planning.Settings,
        *,
        verifications: imageverdicts.Verifications | None = None,
        startup: modelchecks.StartupCheck | None = None,
        workers: int = 8,
        status_delay: float = 1.0,
        guard_binding: guardbindings.GuardBinding | None = None,
        store: s3endpoints.ModelStore = s3endpoints.DEFAULT,
    ) -> None:
        self.world = world
        self.kube = kube
        self.settings = settings
        self.verifications = verifications or imageverdicts.Verifications(None)
        self.verifications.on_verdict = self._verdicts_arrived
        #: How status and audit judge the init container of ``models.verifyAtStartup``:
        #: as admission does, knowing the ``--startup-image`` it runs (None: like any other).
        self.startup = startup
        #: Where ModelArtifacts are fetched from (``--s3-endpoint``), judged as admission does.
        self.store = store
        self.workers = workers
        self.status_delay = status_delay
        #: The guards' TokenReview binding, looked at again after every pass.
        self.guard_binding = guard_binding
        self.outcomes: dict[caches.Key, plans.Outcome] = {}
        self._queue: asyncio.Queue[caches.Key] = asyncio.Queue()
        self._pending: set[caches.Key] = set()
        self._busy: set[caches.Key] = set()
        self._again: set[caches.Key] = set()
        self._attempts: dict[caches.Key, int] = {}
        #: Workloads with a retry waiting: one at a time each, however many passes fail.
        self._retrying: set[caches.Key] = set()
        self.converger = converging.Converger(kube, world)
        self._status_due: set[caches.Key] = set()
        self._status_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._events: set[asyncio.Task[None]] = set()
        self.writes = 0
        #: Workloads whose NetworkPolicy is deny-all because theirs could not be built or written.
        self.failed_closed: set[caches.Key] = set()
        #: time.monotonic() of the last full read of the cluster.
        self.last_resync = 0.0

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Start the workers and the status writer on the running loop."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work()) for _ in range(self.workers)]
        self._tasks.append(loop.create_task(self._write_statuses()))
        self.verifications.start()
        if self.guard_binding is not None:
            self.guard_binding.start()

    async def stop(self) -> None:
        """Stop every task."""
        await self.verifications.stop()
        if self.guard_binding is not None:
            await self.guard_binding.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def settled(self) -> None:
        """Wait until the queue is empty and no worker is busy (tests, benchmarks)."""
        while self._pending or self._busy or self._status_due:
            await asyncio.sleep(0.05)

    # --- queueing -------------------------------------------------------------

    def enqueue(self, key: caches.Key) -> None:
        """Reconcile a workload soon; a key already waiting is not queued twice."""
        if key in self._busy:
            self._again.add(key)
        elif key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    def enqueue_many(self, keys: Iterable[caches.Key]) -> None:
        """Reconcile several workloads soon."""
        for key in keys:
            self.enqueue(key)

    def enqueue_scope(self, policy_key: caches.Key) -> None:
        """Reconcile every workload a policy could govern or governed."""
        kind, namespace, _ = policy_key
        scope = None if kind == "ClusterModelSecurityPolicy" else namespace
        self.enqueue_many(self.world.workloads_in(scope))
        self.enqueue_many(
            key
            for key, outcome in self.outcomes.items()
            if any((ref.kind, ref.namespace, ref.name) == policy_key for ref in outcome.governing)
        )
        self.status_due([policy_key])

    def status_due(self, policy_keys: Iterable[caches.Key]) -> None:
        """Recompute these policies' status after the current burst of work."""
        self._status_due.update(policy_keys)
        self._status_wakeup.set()

    def _verdicts_arrived(self, keys: set[caches.Key]) -> None:
        """Image verdicts some workloads waited for: their policies' status may change."""
        self.status_due(
            (ref.kind, ref.namespace, ref.name)
            for key in keys
            for ref in (self.outcomes[key].governing if key in self.outcomes else ())
        )

    def status_due_in(self, namespace: str) -> None:
        """Recompute the status of every policy that governs a workload in the namespace."""
        self.status_due(
            (ref.kind, ref.namespace, ref.name)
            for key, outcome in self.outcomes.items()
            if key[1] == namespace
            for ref in outcome.governing
        )

    def _retry_later(self, key: caches.Key, delays: tuple[float, ...]) -> None:
        if key in self._retrying:
            return
        self._retrying.add(key)
        attempt = self._attempts.get(key, 0)
        self._attempts[key] = attempt + 1

        async def retry() -> None:
            await asyncio.sleep(delays[min(attempt, len(delays) - 1)])
            self._retrying.discard(key)
            self.enqueue(key)

        task = asyncio.get_running_loop().create_task(retry())
        self._events.add(task)  # keep a reference until it is done
        task.add_done_callback(self._events.discard)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            self._busy.add(key)
            try:
                failed = await self.reconcile(key)
            except Exception:
                LOGGER.exception("reconciling %s failed", "/".join(key))
                failed = True
            finally:
                self._busy.discard(key)
            if failed:
                self._retry_later(key, RETRY_DELAYS)
            elif key in self.failed_closed:
                self._retry_later(key, FAILED_CLOSED_RETRY_DELAYS)
            else:
                self._attempts.pop(key, None)
            if key in self._again:
                self._again.discard(key)
                self.enqueue(key)

    # --- one workload ---------------------------------------------------------

    async def reconcile(self, key: caches.Key) -> bool:
        """Move what exists next to one workload to what should; True when a write failed."""
        profile = None
        source = planning.drift_source(self.world, key)
        if source is not None:
            reference = source[1].reference_profile
            profile = await self.kube.config_map_key(key[1], reference.name, reference.key)
        plan = planning.plan(self.world, key, self.settings, profile)
        workload = self.world.workloads.get(key)
        failures: list[str] = []
        for child_key, desired in plan.desired.items():
            try:
                await self._converge(child_key, desired, workload)
            except writing.ApiException as error:
                refused = f"{child_key[0]} {child_key[1]}/{child_key[2]}: {writing.describe(error)}"
                if not await self._fail_closed(plan, child_key, refused, workload):
                    failures.append(refused)
            except RevertLoopError as error:
                failures.append(str(error))
        self._track_fail_closed(key, plan, workload)
        for child_key, live in self.world.children_of(key).items():
            if child_key in plan.desired:
                continue
            try:
                await self.kube.delete(*child_key, uid=str(live["metadata"].get("uid", "")))
            except writing.ApiException as error:
                failures.append(
                    f"deleting {child_key[0]} {child_key[2]}: {error.status} {error.reason}"
                )
                continue
            self.world.remove_child(child_key)
            self.converger.made.discard(child_key)
            self.writes += 1
        if plan.logger_patch is not None and workload is not None:
            try:
                await self.kube.patch("InferenceService", key[1], key[2], plan.logger_patch)
                self.writes += 1
                self._post_event(
                    workload,
                    "Normal",
                    "PayloadLoggerSet",
                    "payload logger pointed at the drift monitor",
                )
            except writing.ApiException as error:
                failures.append(f"InferenceService logger: {error.status} {error.reason}")
        self._record(key, plan, failures)
        self._verify_images(key)
        return bool(failures)

    async def _fail_closed(
        self,
        plan: planning.Plan,
        key: caches.Key,
        refused: str,
        workload: dict[str, Any] | None,
    ) -> bool:
        """Write the deny-all fallback of an object the API server refused; True when written."""
        fallback = plan.fallbacks.get(key)
        if fallback is None:
            return False
        try:
            await self._converge(key, fallback, workload)
        except (writing.ApiException, RevertLoopError) as error:
            LOGGER.warning("%s; its deny-all fallback failed too: %s", refused, error)
            return False
        message = (
            f"{'/'.join(plan.workload)}: NetworkPolicy {key[2]} denies all traffic: the API "
            f"server refused the one planned ({refused})"
        )
        for ref in plan.network_policies:
            plan.problems.setdefault(ref, []).append(
                planning.Problem(planning.NETWORK_POLICY_FAILED_CLOSED, message)
            )
        return True

    def _track_fail_closed(
        self, key: caches.Key, plan: planning.Plan, workload: dict[str, Any] | None
    ) -> None:
        """Count the workload as failed closed (an Event when it starts) or no longer."""
        failed = next(
            (
                problem
                for problems in plan.problems.values()
                for problem in problems
                if problem.reason == planning.NETWORK_POLICY_FAILED_CLOSED
            ),
            None,
        )
        if failed is None:
            self.failed_closed.discard(key)
            return
        if key not in self.failed_closed and workload is not None:
            self._post_event(workload, "Warning", failed.reason, failed.message)
        self.failed_closed.add(key)

    def _verify_images(self, key: caches.Key) -> None:
        """Start verifying the images of a new or changed workload now, not at status time."""
        body = self.world.workloads.get(key)
        if body is None or not self.verifications.verifying:
            return
        parsed = workloads.parse(body)
        governing = self.world.governing(key)
        if governing:
            subject = imageverdicts.image_subject(parsed, self.world, self.startup)
            self.verifications.look_up(key, subject, governing)

    def _post_event(self, involved: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """Post an Event without holding up the worker (Events are best effort)."""
        task = asyncio.get_running_loop().create_task(
            self.kube.event(involved, kind, reason, message)
        )
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _converge(
        self, key: caches.Key, desired: dict[str, Any], workload: dict[str, Any] | None
    ) -> None:
        written = await self.converger.converge(key, desired)
        if written is None:
            return
        self.writes += 1
        reason, message = written
        # A first creation is summed up on the policy (one Event, not one per object);
        # a restoration is news about this workload.
        if workload is not None and reason != "Created":
            self._post_event(workload, "Normal", reason, message)

    def _record(self, key: caches.Key, plan: planning.Plan, failures: list[str]) -> None:
        previous = self.outcomes.get(key)
        if self.world.workloads.get(key) is None:
            self.outcomes.pop(key, None)
        else:
            self.outcomes[key] = plans.Outcome(plan.governing, plan.problems, failures, plan.notes)
        refs = set(plan.governing) | set(previous.governing if previous else ())
        self.status_due((ref.kind, ref.namespace, ref.name) for ref in refs)
        if self.guard_binding is not None:
            self.guard_binding.due()

    # --- status ---------------------------------------------------------------

    async def _write_statuses(self) -> None:
        while True:
            await self._status_wakeup.wait()
            self._status_wakeup.clear()
            await asyncio.sleep(self.status_delay)
            waited = 0
            while (self._pending or self._busy) and waited < STATUS_MAX_WAITS:
                # Counts written mid-burst would be wrong a moment later; but under endless
                # churn, a status a little behind beats none.
                await asyncio.sleep(self.status_delay)
                waited += 1
            due, self._status_due = self._status_due, set()
            for policy_key in sorted(due):
                try:
                    await self.write_status(policy_key)
                except writing.ApiException as error:
                    if error.status != 404:
                        LOGGER.warning(
                            "status of %s: %s %s", "/".join(policy_key), error.status, error.reason
                        )
                        self.status_due([policy_key])
                except Exception:
                    LOGGER.exception("status of %s failed", "/".join(policy_key))

    def observe(self, policy_key: caches.Key, now: datetime.datetime) -> statuses.Observation:
        """What the outcomes and the engine say about one policy."""
        return observing.observe(
            policy_key,
            self.world,
            self.outcomes,
            self.verifications,
            now,
            startup=self.startup,
            store=self.store,
        )

    async def write_status(self, policy_key: caches.Key) -> None:
        """Write one policy's status if it changed."""
        entry = self.world.policies.get(policy_key)
        if entry is None:
            return
        now = datetime.datetime.now(datetime.UTC)
        previous = entry.body.get("status")
        generation = int((entry.body.get("metadata") or {}).get("generation") or 0)
        status = statuses.build(self.observe(policy_key, now), previous, generation, now)
        if statuses.same(previous, status):
            return
        await self.kube.patch_policy_status(entry.body, status)
        entry.body["status"] = status
        self.writes += 1
        before = {c["type"]: c for c in (previous or {}).get("conditions") or []}
        for condition in status["conditions"]:
            earlier = before.get(condition["type"])
            if (
                condition["type"] == statuses.DEGRADED
                and condition["status"] == "True"
                and (earlier is None or earlier.get("reason") != condition["reason"])
            ):
                self._post_event(entry.body, "Warning", condition["reason"], condition["message"])
        if status["governed"] != (previous or {}).get("governed"):
            self._post_event(
                entry.body,
                "Normal",
                "Governing",
                f"governs {status['governed']} workload(s): {status['compliant']} compliant, "
                f"{status['violating']} violating, {status['pending']} pending image verification",
            )
