"""Bringing one owned object to what should exist: create, or compare and replace.

The reconciler hands over the desired object; this writes only when the live one differs
(``ownership.drift``), goes by what is stored when its copy was stale, and refuses to fight:
an object that someone keeps changing back is reported (``RevertLoopError``), not rewritten
forever. Only restorations that were written count towards that limit, so an object the API
server refuses (and that the reconciler replaces by its fallback) is never mistaken for one.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from modelshield.controllers import caches, writing
from modelshield.controllers.builders import ownership

MAX_REVERTS_IN_WINDOW = 5
REVERT_WINDOW_SECONDS = 60.0


class RevertLoopError(Exception):
    """An owned object was reverted too often in a short time."""


@dataclasses.dataclass
class Converger:
    """Writes owned objects for the reconciler; remembers what it made and restored."""

    kube: writing.Kube
    world: caches.World
    #: Objects this instance wrote or found as desired (a later creation is a restoration).
    made: set[caches.Key] = dataclasses.field(default_factory=set)
    reverts: dict[caches.Key, list[float]] = dataclasses.field(default_factory=dict)

    async def converge(self, key: caches.Key, desired: dict[str, Any]) -> tuple[str, str] | None:
        """Make the object at ``key`` what ``desired`` says; (reason, message) of the write,
        or None when it already was. ApiException when the API server refuses the write."""
        live = self.world.children.get(key)
        if live is None:
            try:
                written = await self.kube.create(desired)
                reason, message = (
                    ("Restored", f"{key[0]} {key[2]} was deleted; recreated it")
                    if key in self.made
                    else ("Created", f"created {key[0]} {key[2]}")
                )
            except writing.ApiException as error:
                if error.status != 409:
                    raise
                # It exists but no watch event told us yet: compare with it instead.
                found = await self.kube.get(*key)
                if found is None:
                    raise
                live = found
        if live is not None:
            difference = ownership.drift(live, desired)
            if difference is None:
                self.world.put_child(live)
                self.made.add(key)
                return None
            if self._reverted_too_often(key):
                # Someone (or some controller or a newer API server's default) keeps changing
                # it back: fighting would loop forever. Say so on the policy instead.
                raise RevertLoopError(f"{key[0]} {key[2]} keeps changing ({difference})")
            written = await self._replace(key, desired, live)
            self.reverts.setdefault(key, []).append(time.monotonic())
            reason, message = "Reverted", f"{key[0]} {key[2]} differed ({difference}); restored it"
        self.world.put_child(written)
        self.made.add(key)
        return reason, message

    def _reverted_too_often(self, key: caches.Key) -> bool:
        now = time.monotonic()
        recent = [t for t in self.reverts.get(key, []) if now - t < REVERT_WINDOW_SECONDS]
        self.reverts[key] = recent
        return len(recent) >= MAX_REVERTS_IN_WINDOW

    async def _replace(
        self, key: caches.Key, desired: dict[str, Any], live: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            return await self.kube.replace(
                desired, str(live["metadata"].get("resourceVersion", ""))
            )
        except writing.ApiException as error:
            if error.status not in (404, 409):
                raise
        # Our copy was stale (edited or deleted since): go by what is stored now.
        found = await self.kube.get(*key)
        if found is None:
            return await self.kube.create(desired)
        if ownership.drift(found, desired) is None:
            return found
        return await self.kube.replace(desired, str(found["metadata"].get("resourceVersion", "")))
