"""Keeps the guards' TokenReview ClusterRoleBinding's subjects equal to the guards the
plans create: a guard's ServiceAccount is bound when its guard is planned and unbound
when it no longer is (policy, api block or workload gone).

The operator may only get and update that one binding and bind only that one ClusterRole,
both by name (``rbac``); it never creates or deletes a binding. Subjects come from
``guardplans.guard_accounts`` over the whole known cluster, never from what a policy says:
each is the ServiceAccount the operator names after a governed workload, in that
workload's namespace. Writes are debounced (one pass after a burst of reconciles) and
compare first; the binding is re-read now and then, so a hand edit is undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from modelshield.controllers import caches, guardplans, writing
from modelshield.controllers import leadership as leadership_
from modelshield.controllers.builders import tokenreviewers

LOGGER = logging.getLogger("modelshield.guardbindings")
#: Seconds between re-reads of the binding when nothing else asks for a pass.
REREAD_SECONDS = 300.0
#: Attempts of one pass when the binding changes under it (409 Conflict).
CONFLICT_ATTEMPTS = 5


class GuardBinding:
    """The subjects of one ClusterRoleBinding, kept in step with the planned guards."""

    def __init__(
        self,
        kube: writing.Kube,
        world: caches.World,
        *,
        name: str,
        role: str,
        leadership: leadership_.Leadership | None = None,
        delay: float = 1.0,
        reread_seconds: float = REREAD_SECONDS,
    ) -> None:
        self.kube = kube
        self.world = world
        self.name = name
        self.role = role
        self.leadership = leadership
        self.delay = delay
        self.reread_seconds = reread_seconds
        #: The subjects last seen in (or written to) the binding; None: read it first.
        self.known: list[dict[str, str]] | None = None
        #: Why the last pass could not write (None when it could); tests and logs.
        self.problem: str | None = None
        self.writes = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def due(self) -> None:
        """Look at the binding again soon (after the current burst of reconciles)."""
        self._wakeup.set()

    def start(self) -> None:
        """Run passes on the running loop until ``stop``."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.due()

    async def stop(self) -> None:
        """Stop the passes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.reread_seconds)
            reread = not self._wakeup.is_set()
            self._wakeup.clear()
            await asyncio.sleep(self.delay)
            if self.leadership is not None and not await self.leadership.active():
                continue
            try:
                await self.sync(reread=reread)
            except writing.ApiException as error:
                self._failed(writing.describe(error))
            except Exception:
                LOGGER.exception("ClusterRoleBinding %s: the pass failed", self.name)
                self.known = None

    def _failed(self, problem: str) -> None:
        if problem != self.problem:
            LOGGER.warning(
                "ClusterRoleBinding %s: %s; guards' ServiceAccount tokens get 503 until it "
                "is fixed",
                self.name,
                problem,
            )
        self.problem = problem
        self.known = None

    async def sync(self, *, reread: bool = False) -> bool:
        """One pass; True when it wrote the binding. Raises ApiException when the API
        server refuses a read or the write."""
        wanted = tokenreviewers.subjects(guardplans.guard_accounts(self.world))
        if not reread and self.known == wanted:
            return False
        for _ in range(CONFLICT_ATTEMPTS):
            binding = await self.kube.get("ClusterRoleBinding", "", self.name)
            if binding is None:
                self._failed("not found (the chart creates it; the operator never does)")
                return False
            problem = tokenreviewers.role_ref_problem(binding, self.role)
            if problem is not None:
                self._failed(problem)
                return False
            if tokenreviewers.bound(binding) == wanted:
                self.known, self.problem = wanted, None
                return False
            try:
                await self._replace(binding, wanted)
            except writing.ApiException as error:
                if error.status == 409:
                    continue  # changed since read: read again
                raise
            LOGGER.info(
                "ClusterRoleBinding %s: %d guard ServiceAccount(s) may create TokenReviews",
                self.name,
                len(wanted),
            )
            self.known, self.problem = wanted, None
            self.writes += 1
            return True
        self._failed(f"changed under every one of {CONFLICT_ATTEMPTS} attempts")
        return False

    async def _replace(self, binding: dict[str, Any], wanted: list[dict[str, str]]) -> None:
        version = str((binding.get("metadata") or {}).get("resourceVersion", ""))
        await self.kube.replace(tokenreviewers.with_subjects(binding, wanted), version)
