"""When a leader-worker group leaves a draining host on real Ray (pure: the nodes and the clock in).

A host is *drained* in Ray (``ray drain-node``, or GCS ``DrainNode``) when it is about to go: a spot
reclaim or a DWS recycle (with a deadline), a cordon (no deadline). Ray places nothing new there.
Ray Serve moves a replica whose actor is on a draining node itself, replacement first: it starts a
new replica elsewhere, and stops the old one gracefully once the new one runs (or when the
deadline leaves only the graceful-shutdown time). The replica actor is the group's leader, so Serve
sees only the leader's host: a group whose *worker* is on the draining host would stay until the
host goes and then break. The group's leader covers that case (:func:`retire_reason`): it *retires*,
failing Serve's health check while it still answers every request, so Serve stops it gracefully
(requests in flight finish, new ones go to the other groups or wait for the replacement) and
starts a replacement on hosts that take new work. It retires

* at once when the drain has no deadline (a cordoned host: its work is moved now);
* at once when a whole replacement group fits now on other hosts of its pool that are not
  draining (:func:`room_for_group`; a TPU group on one other whole slice none of whose hosts
  drains), so the replacement starts while the old group drains;
* else when the deadline is ``lead_s`` away (the replacement host, on a recycle, is still coming):
  the old group keeps serving until then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

NO_DEADLINE = 0.0  # GCS reports 0 for a drain without a deadline


@dataclass(frozen=True)
class Member:
    rank: int
    node_id: str
    host: str | None


@dataclass(frozen=True)
class NodeRoom:
    """A live node as the group sees it: its labels and the resources still free on it."""

    node_id: str
    labels: Mapping[str, str]
    available: Mapping[str, float]


def draining_deadlines(raw: Mapping[str, int]) -> dict[str, float]:
    """GCS's draining nodes (node id -> deadline in ms since the epoch, 0 for none) in seconds."""
    return {node: (ms / 1000.0 if ms else NO_DEADLINE) for node, ms in raw.items()}


def _fits(bundle: Mapping[str, float], available: Mapping[str, float]) -> bool:
    return all(available.get(res, 0.0) + 1e-9 >= amount for res, amount in bundle.items() if amount > 0)


def _fits_all(bundles: Sequence[Mapping[str, float]], free: list[NodeRoom]) -> bool:
    """Largest bundle first, each on the first free node that holds it (every bundle of a group is
    the same host shape)."""
    free = list(free)
    for bundle in sorted(bundles, key=lambda b: -sum(b.values())):
        spot = next((n for n in free if _fits(bundle, n.available)), None)
        if spot is None:
            return False
        free.remove(spot)
    return True


def room_for_group(bundles: Sequence[Mapping[str, float]], nodes: Iterable[NodeRoom], labels: Mapping[str, str],
                   draining: Mapping[str, float], *, together_by: str | None = None) -> bool:
    """Whether a whole new group (one bundle per host, each on its own node, as STRICT_SPREAD
    places it) fits now on nodes carrying ``labels`` that are not draining. ``together_by``: a
    label the whole group must share (a TPU slice: its hosts are one ICI domain, and a slice with a
    draining host goes as a whole, so none of its hosts counts)."""
    pool = [n for n in nodes if all(n.labels.get(k) == v for k, v in labels.items())]
    if together_by is None:
        return _fits_all(bundles, [n for n in pool if n.node_id not in draining])
    slices: dict[str, list[NodeRoom]] = {}
    for n in pool:
        if n.labels.get(together_by):
            slices.setdefault(n.labels[together_by], []).append(n)
    return any(_fits_all(bundles, members) for members in slices.values()
               if not any(n.node_id in draining for n in members))


def retire_reason(now: float, members: Sequence[Member], draining: Mapping[str, float], *,
                  room_elsewhere: Callable[[], bool], lead_s: float) -> str | None:
    """Why the group should retire now (None: keep serving). ``members[0]`` is the leader;
    ``room_elsewhere`` (whether a whole new group fits now) is asked only when it decides."""
    if not members or members[0].node_id in draining:
        return None   # Serve migrates the leader's replica itself, replacement first
    on_drain = [m for m in members[1:] if m.node_id in draining]
    if not on_drain:
        return None
    first = min(on_drain, key=lambda m: draining[m.node_id] or float("inf"))
    where = f"group member rank {first.rank}'s host {first.host or first.node_id[:8]} is draining"
    deadline = draining[first.node_id]
    if deadline == NO_DEADLINE:
        return f"{where} (cordoned): moving the group"
    if room_elsewhere():
        return f"{where} ({deadline - now:.0f}s left) and a replacement group fits on other hosts: moving the group"
    if now >= deadline - lead_s:
        return f"{where} and goes in {max(0.0, deadline - now):.0f}s: moving the group before it goes"
    return None
