"""Keeps the guards' TokenReview ClusterRoleBinding's subjects equal to the guards the
plans create: a guard's ServiceAccount is bound when its guard is planned and unbound
when it no longer is (policy, api block or workload gone).

The operator may only get and update that one binding and bind only that one ClusterRole,
both by name (``rbac``); it never creates or deletes a binding. Subjects come from
``guardplans.guard_accounts`` over the whole known cluster, never from what a policy says:
each is the ServiceAccount the operator names after a governed workload, in that
workload's namespace. Passes are debounced (one after a burst of reconciles, and one
every ``REREAD_SECONDS`` without any); each reads the binding and writes only when its
subjects differ, so a hand edit is undone at the next pass.
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
            self._wakeup.clear()
            await asyncio.sleep(self.delay)
            if self.leadership is not None and not await self.leadership.active():
                continue
            try:
                await self.sync()
            except writing.ApiException as error:
                self._failed(writing.describe(error))
            except Exception:
                LOGGER.exception("ClusterRoleBinding %s: the pass failed", self.name)

    def _failed(self, problem: str) -> None:
        if problem != self.problem:
            LOGGER.warning(
                "ClusterRoleBinding %s: %s; guards' ServiceAccount tokens get 503 until it "
                "is fixed",
                self.name,
                problem,
            )
        self.problem = problem

    async def sync(self) -> bool:
        """One pass: read the binding, write it when its subjects are not the planned
        guards' (one GET per pass: a hand edit must not survive on a remembered copy).
        True when it wrote; raises ApiException when the API server refuses."""
        wanted = tokenreviewers.subjects(guardplans.guard_accounts(self.world))
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
                self.problem = None
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
            self.problem = None
            self.writes += 1
            return True
        self._failed(f"changed under every one of {CONFLICT_ATTEMPTS} attempts")
        return False

    async def _replace(self, binding: dict[str, Any], wanted: list[dict[str, str]]) -> None:
        version = str((binding.get("metadata") or {}).get("resourceVersion", ""))
        await self.kube.replace(tokenreviewers.with_subjects(binding, wanted), version)
