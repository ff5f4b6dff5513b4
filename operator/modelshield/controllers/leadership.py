"""Whether this instance is the active one, by kopf's peering rules.

kopf pauses the watches of a standby instance, but tasks of our own (the audit, the
periodic resync) keep running; they ask ``Leadership.active()`` first. The rule is kopf's:
an instance is paused while another live peer has a higher priority, and every instance
is paused while live peers share its priority. Without peering (``--standalone``) or
without the peering CRD (kopf then runs unpaused), this instance is active.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from modelshield.controllers import writing

PEERING_KIND = "ClusterKopfPeering"


def _parse_time(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def is_active(
    peering: Mapping[str, Any] | None, identity: str, priority: int, now: datetime.datetime
) -> bool:
    """kopf's pausing rule over a ClusterKopfPeering object's status. Pure."""
    peers = (peering or {}).get("status") or {}
    for peer_id, info in peers.items():
        if peer_id == identity or not isinstance(info, Mapping):
            continue
        # As in kopf: a peer that never said when it was seen counts as seen now.
        seen = _parse_time(info.get("lastseen")) if "lastseen" in info else now
        lifetime = datetime.timedelta(seconds=int(info.get("lifetime", 60)))
        if seen is None or seen + lifetime <= now:
            continue  # dead
        if int(info.get("priority", 0)) >= priority:
            return False
    return True


class Leadership:
    """Asks the API server (one GET) whether this instance is active."""

    def __init__(
        self,
        kube: writing.Kube,
        *,
        identity: str,
        priority: int,
        peering_name: str,
        standalone: bool,
    ) -> None:
        self.kube = kube
        self.identity = identity
        self.priority = priority
        self.peering_name = peering_name
        self.standalone = standalone

    async def active(self) -> bool:
        """True when this instance should do background work now."""
        if self.standalone:
            return True
        try:
            peering = await self.kube.get(PEERING_KIND, "", self.peering_name)
        except writing.ApiException as error:
            # No peering CRD: kopf runs unpaused, and so do we.
            return bool(error.status == 404)
        now = datetime.datetime.now(datetime.UTC)
        return is_active(peering, self.identity, self.priority, now)
