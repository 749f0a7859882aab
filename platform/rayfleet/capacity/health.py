"""Faulty hosts: when a host is cordoned and when it comes back (pure; ``now`` is an argument).

Policy: the Cluster's ``spec.hostHealth``. A host on which ``failuresToCordon`` runs FAILED within
``window`` seconds is faulty, and so is a host the backend reports unhealthy (GKE node conditions).
A faulty host is cordoned (nothing new is placed on it; the backend starts its repair) and the runs
still on it get an unhealthy-host notice (checkpoint, then move: :data:`UNHEALTHY_GRACE_S`). The
backend repairs it (local: its Ray node restarted; GKE: node auto-repair; the sim: ``repairTime``
after its last run left) and lists it in service again; a host still merely cordoned
``repairTime`` after the cordon and reported healthy is returned to service by the controller.

:class:`HostHealth` holds the failure times per host; the controller keeps one in memory and
rebuilds it at start from the ``Host`` events of the store's event log (each counted failure is
one ``RunFailed`` event), so a restart neither forgets recent failures nor needs a table of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ..api import HostHealthPolicy

#: How long the runs on a cordoned host have to save a checkpoint before they are moved.
UNHEALTHY_GRACE_S = 60.0

#: Host phases (``backends.base.HostPhase`` values) in which a host takes no new work as faulty.
OUT_OF_SERVICE = ("cordoned", "repairing")


class HostInfo(Protocol):
    """What this module reads of a backend's ``backends.base.HostInfo`` (capacity sits below backends)."""

    @property
    def name(self) -> str: ...
    @property
    def phase(self) -> str: ...
    @property
    def healthy(self) -> bool: ...
    @property
    def since(self) -> float | None: ...


@dataclass
class HostHealth:
    policy: HostHealthPolicy
    failures: dict[str, list[float]] = field(default_factory=dict)   # host -> failure times, oldest first
    cordoned: dict[str, float] = field(default_factory=dict)         # host -> when this controller cordoned it

    def _prune(self, host: str, now: float) -> list[float]:
        times = [t for t in self.failures.get(host, []) if now - t < self.policy.window]
        if times:
            self.failures[host] = times
        else:
            self.failures.pop(host, None)
        return times

    def failed(self, hosts: Iterable[str], now: float) -> list[str]:
        """A run failed on ``hosts``: count it once per host; the hosts it tips over
        ``failuresToCordon`` (that are not cordoned already)."""
        tipped = []
        for host in sorted(set(hosts)):
            self.failures.setdefault(host, []).append(now)
            if len(self._prune(host, now)) >= self.policy.failures_to_cordon and host not in self.cordoned:
                tipped.append(host)
        return tipped

    def count(self, host: str, now: float) -> int:
        return len(self._prune(host, now))

    def mark_cordoned(self, host: str, now: float) -> None:
        self.cordoned.setdefault(host, now)
        self.failures.pop(host, None)   # counting starts afresh after repair

    def mark_uncordoned(self, host: str) -> None:
        self.cordoned.pop(host, None)


def reported_unhealthy(hosts: Iterable[HostInfo], health: HostHealth) -> list[HostInfo]:
    """Hosts the backend reports unhealthy that are not cordoned yet."""
    return [h for h in hosts if not h.healthy and h.phase not in OUT_OF_SERVICE and h.name not in health.cordoned]


def overdue(hosts: Iterable[HostInfo], health: HostHealth, now: float) -> list[HostInfo]:
    """Hosts still cordoned (the backend has not started repairing them itself) ``repairTime`` after
    the cordon, and reported healthy: the controller returns them to service (``uncordon``). A
    host the backend is repairing (REPAIRING) is left to it."""
    out = []
    for h in hosts:
        if h.phase != "cordoned" or not h.healthy:
            continue
        since = health.cordoned.get(h.name, h.since)
        if since is not None and now - since >= health.policy.repair_time:
            out.append(h)
    return out


def back_in_service(hosts: Iterable[HostInfo], health: HostHealth) -> list[str]:
    """Hosts this controller cordoned that the backend lists in service again (repaired), or no
    longer lists at all (the machine is gone; a new one in its place starts clean)."""
    listed = {h.name: h.phase for h in hosts}
    return sorted(n for n in health.cordoned if listed.get(n, "absent") not in OUT_OF_SERVICE)


def out_of_service(hosts: Iterable[HostInfo], health: HostHealth) -> set[str]:
    """Hosts that take no new work as faulty: cordoned by the backend or by this controller."""
    return {h.name for h in hosts if h.phase in OUT_OF_SERVICE} | set(health.cordoned)
