"""The pool autoscaler rule: how many hosts to ask for, and which idle hosts to give back.

GKE's cluster autoscaler, as rayfleet's backends model it (the sim and local backends run it;
on GKE the cluster autoscaler and ProvisioningRequests do it themselves):

- **Scale up.** Pending gangs say how many empty hosts each needs. What free and already
  requested hosts do not cover is asked for, up to the pool's ``maxHosts`` (whole slices for a
  multi-host TPU pool: a slice is one node pool replica). Queued DWS flex-start pools ask once per
  gang, all or nothing (a ProvisioningRequest per workload): a gang whose hosts cannot all come
  asks for none. No host is asked for outside a calendar pool's window.
- **Scale down.** A host idle (ready, nothing on it) for ``idleTimeout`` is given back (GKE's
  scale-down-unneeded-time), longest idle first, never below ``minHosts`` and never while a gang
  is pending (pending pods keep nodes they could use). Reservations and calendar bookings are
  paid for anyway and keep their hosts (:func:`~rayfleet.capacity.provisioning.scales_down`). A
  multi-host TPU pool gives back whole slices only, once every host of the slice is idle.

Pure: no I/O, ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..api import PoolSpec
from .provisioning import all_or_nothing, scales_down, window_open


@dataclass(frozen=True)
class PoolState:
    """What a pool has now."""

    alive: int           # hosts up (ready, draining, cordoned, ...): they count against maxHosts
    free: int            # ready hosts with nothing on them
    provisioning: int    # hosts asked for and not up yet


@dataclass(frozen=True)
class IdleHost:
    """A ready host with nothing on it, since ``idle_since`` (epoch seconds)."""

    name: str
    idle_since: float
    slice: str | None = None   # its TPU slice (multi-host TPU pools)


@dataclass(frozen=True)
class ScaleDecision:
    request: tuple[int, ...] = ()   # host counts, one per provisioning request
    release: tuple[str, ...] = ()   # idle hosts to give back now

    @property
    def requested_hosts(self) -> int:
        return sum(self.request)


def whole_slices(spec: PoolSpec, hosts: int) -> int:
    """``hosts`` rounded up to whole slices of the pool (itself for GPU/CPU pools)."""
    per = spec.slice_hosts
    return -(-max(hosts, 0) // per) * per


def hosts_to_request(spec: PoolSpec, state: PoolState, needs: Sequence[int], now: float) -> list[int]:
    """Provisioning requests (host counts) for pending gangs needing ``needs`` empty hosts each.

    For all-or-nothing pools (queued DWS) ``needs`` are the gangs no request is out for yet, and
    each gets one request of what free hosts do not cover (whole, or none if it would pass
    ``maxHosts``). For the others ``needs`` are every pending gang's, and one request asks for
    what free and provisioning hosts do not cover, capped at ``maxHosts``."""
    if not window_open(spec, now):
        return []
    room = spec.max_hosts - state.alive - state.provisioning
    if room <= 0:
        return []
    if all_or_nothing(spec):
        out: list[int] = []
        free = state.free
        for need in needs:
            use = min(free, need)
            short = whole_slices(spec, need - use)
            if short == 0 or short > room:
                continue
            free -= use
            room -= short
            out.append(short)
        return out
    short = sum(max(n, 0) for n in needs) - state.free - state.provisioning
    if short <= 0:
        return []
    n = min(whole_slices(spec, short), room // spec.slice_hosts * spec.slice_hosts)
    return [n] if n > 0 else []


def _candidates(spec: PoolSpec, idle: Sequence[IdleHost]) -> list[tuple[float, list[str]]]:
    """Units that can be given back, each (idle since, host names): single hosts, or whole slices
    of a multi-host TPU pool (idle since its last host became idle), longest idle first."""
    if spec.slice_hosts > 1:
        by_slice: dict[str, list[IdleHost]] = {}
        for h in idle:
            if h.slice is not None:
                by_slice.setdefault(h.slice, []).append(h)
        units = [(max(h.idle_since for h in hs), [h.name for h in hs]) for hs in by_slice.values() if len(hs) == spec.slice_hosts]
    else:
        units = [(h.idle_since, [h.name]) for h in idle]
    return sorted(units, key=lambda u: u[0])   # stable: ties keep the caller's order


def hosts_to_release(spec: PoolSpec, idle: Sequence[IdleHost], alive: int, now: float) -> list[str]:
    """Idle hosts to give back at ``now``: idle at least ``idleTimeout``, longest idle first, while
    ``alive`` stays at or above ``minHosts``; none for a pool that does not scale down."""
    if not scales_down(spec):
        return []
    spare = alive - spec.min_hosts
    out: list[str] = []
    for since, names in _candidates(spec, idle):
        if now - since < spec.idle_timeout or len(names) > spare:
            break
        out += names
        spare -= len(names)
    return out


def next_release_at(spec: PoolSpec, idle: Sequence[IdleHost], alive: int) -> float | None:
    """The earliest time :func:`hosts_to_release` could give a host back if nothing changes; None
    if it never would."""
    if not scales_down(spec):
        return None
    units = _candidates(spec, idle)
    if not units or len(units[0][1]) > alive - spec.min_hosts:
        return None
    return units[0][0] + spec.idle_timeout


def decide(spec: PoolSpec, state: PoolState, needs: Sequence[int], idle: Sequence[IdleHost], now: float) -> ScaleDecision:
    """Both halves at once: requests for the pending gangs, and, only when no gang is pending, the
    idle hosts to give back."""
    request = tuple(hosts_to_request(spec, state, needs, now))
    pending = any(n > 0 for n in needs)
    release = () if pending else tuple(hosts_to_release(spec, idle, state.alive, now))
    return ScaleDecision(request=request, release=release)
