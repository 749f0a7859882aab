"""Which replica groups of a service move, and where to: the rules, pure (no store, no clock, no I/O).

A group moves for one of two reasons:

* **a notice on one of its hosts.** A RECYCLE (a DWS host reaching its run time; a replacement
  host is asked for), a RECLAIM (spot) or an UNHEALTHY (cordoned) notice moves the group to other
  hosts of its own pool: its quota stays where it is. A WINDOW_END notice (the calendar window the
  host belongs to closes; every host of that flavor goes with it) moves the group to another flavor,
  which quota has to grant: a *move workload* for one group, on the flavors other than the window's.
* **the way back** (the queue's compute class has ``activeMigration.optimizeRulePriority``): while
  the service's groups run on a later step of the compute class, one group at a time asks quota for
  a move workload on the earlier steps; when it is granted the group moves there, then the next.

Move workload ids: ``svc.<name>.m<i>`` for group i (service names are DNS-1123 labels, no dots).
Quota owns the decision of which flavor a move lands on, as it does for every group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..backends.base import GroupRunStatus, Notice, NoticeKind

#: notices that move a group to other hosts of its own pool (its quota stays)
SAME_POOL = frozenset({NoticeKind.RECYCLE, NoticeKind.RECLAIM, NoticeKind.UNHEALTHY})


def move_id(name: str, index: int) -> str:
    return f"svc.{name}.m{index}"


def parse_move(workload_id: str) -> tuple[str, int] | None:
    """(service, group index) of a move workload id, else None."""
    if not workload_id.startswith("svc."):
        return None
    name, _, tail = workload_id[4:].rpartition(".")
    if name and tail.startswith("m") and tail[1:].isdigit():
        return name, int(tail[1:])
    return None


@dataclass(frozen=True)
class SameMove:
    """Move these groups off these hosts, on their own pool."""

    groups: tuple[int, ...]
    hosts: frozenset[str]
    why: str


def same_pool_moves(groups: Iterable[GroupRunStatus], notices: Iterable[Notice], moves: Mapping[str, str]) -> SameMove | None:
    """Groups with a host under a recycle / reclaim / unhealthy notice that are not moving yet (a
    group already moving, to any pool, is left to that move)."""
    out: dict[int, list[Notice]] = {}
    by_host = {}
    for n in notices:
        if n.kind in SAME_POOL:
            by_host.setdefault(n.host, n)
    for g in groups:
        if g.moving_to is not None or str(g.index) in moves:
            continue
        hit = [by_host[h] for h in g.hosts if h in by_host]
        if hit:
            out[g.index] = hit
    if not out:
        return None
    hosts = frozenset(n.host for ns in out.values() for n in ns)
    why = "; ".join(f"replica group {i}: {ns[0].kind.value} notice on {ns[0].host}" for i, ns in sorted(out.items()))
    return SameMove(tuple(sorted(out)), hosts, why)


def window_moves(groups: Iterable[GroupRunStatus], notices: Iterable[Notice], moves: Mapping[str, str]) -> list[int]:
    """Groups with a host whose calendar window closes, not already given a move to another flavor."""
    ending = {n.host for n in notices if n.kind == NoticeKind.WINDOW_END}
    return [g.index for g in groups if str(g.index) not in moves and ending.intersection(g.hosts)]


def other_flavors(candidates: Iterable[str], current: str) -> tuple[str, ...]:
    """Where a group leaving ``current`` may go: every other candidate flavor, in order."""
    return tuple(f for f in candidates if f != current)


def earlier_steps(steps: list[str], candidates: Iterable[str], current: str) -> tuple[str, ...]:
    """The compute-class steps before ``current`` that the service may run on (empty: ``current``
    is the first step, or not a step)."""
    if current not in steps:
        return ()
    allowed = set(candidates)
    return tuple(f for f in steps[: steps.index(current)] if f in allowed)


def next_to_move_back(groups: list[GroupRunStatus], moves: Mapping[str, str], current_pool: str) -> int | None:
    """Group by group: the lowest-index group still on the service's own pool, only once every
    earlier move is done (no group moving, every group with a move on its destination)."""
    if any(g.moving_to is not None for g in groups) or any(not g.ready for g in groups):
        return None
    for g in groups:
        if str(g.index) not in moves and g.pool == current_pool:
            return g.index
    return None


def move_done(g: GroupRunStatus, dest_pool: str) -> bool:
    """A group's move has finished: it runs, whole and routed, on its destination's pool."""
    return g.pool == dest_pool and g.ready and g.moving_to is None
