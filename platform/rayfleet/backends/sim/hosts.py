"""The simulated backend's hosts and how gangs are placed on them.

A pool holds ``maxHosts`` host slots, each host labelled and resourced as its GKE node / local Ray
node is (:mod:`rayfleet.api.labels`), with the pool's real CPU count as Ray CPUs. A slot is
``absent`` (no machine), ``provisioning``, ``ready``, ``draining`` (a notice is out: reclaim,
recycle, window end; it keeps its runs until it goes, but takes no new bundles), ``cordoned``
(faulty: keeps its runs, takes nothing new) or ``repairing`` (out of service until repaired).

A gang is the :class:`~rayfleet.backends.placement.GangPlan` the real backends build
(``plan_request``): one bundle per worker, a strategy, pinned to one pool (and a multi-host TPU gang
to one slice). :func:`place` puts its bundles on ready hosts the way Ray's placement-group
scheduler does for that strategy (all bundles or none); a gang that does not fit stays pending.

Cheap for thousands of hosts: each pool keeps its empty hosts in a heap (lowest index first, lazy
deletion) and its partly used hosts in a set, so placing a gang touches only the hosts it takes
(and the partly used ones), never every host.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from ...api import PoolSpec
from ...api.labels import LABEL_HOST, LABEL_TPU_SLICE, node_labels, node_resources
from ..base import HostInfo, Notice
from ..placement import GangPlan

_EPS = 1e-6

ABSENT, PROVISIONING, READY, DRAINING = "absent", "provisioning", "ready", "draining"
CORDONED, REPAIRING = "cordoned", "repairing"
ALIVE = (READY, DRAINING, CORDONED)        # up, with a Ray node (runs keep running)


#: The fields of a Host that its ``HostInfo`` shows (``SimBackend.hosts``).
SHOWN = frozenset({"state", "generation", "since", "expires_at", "notice", "cordon_reason", "unhealthy"})


@dataclass(eq=False)
class Host:
    name: str
    pool: str
    index: int                       # order of the host in its pool (placement prefers low)
    slice: str | None                # TPU slice id, multi-host TPU pools only
    labels: dict[str, str]
    total: dict[str, float]          # Ray resources
    used: dict[str, float] = field(default_factory=dict)
    state: str = ABSENT
    generation: int = 0              # bumped each time the slot gets a new machine (a new node id)
    gangs: set[str] = field(default_factory=set)
    lease: int = 0                   # bumped each time the slot goes absent (keys its lifetime events)
    since: float | None = None       # when it entered its state
    up_at: float | None = None       # when its machine came up
    expires_at: float | None = None  # when it goes for good (DWS run time, window end, reclaim deadline)
    notice: Notice | None = None     # the notice out on it (draining)
    cordon_reason: str = ""
    unhealthy: str | None = None     # why the backend reports it unhealthy (None: healthy)
    idle_since: float | None = None  # ready and empty since
    idle_token: int = 0              # bumped each time it becomes idle (keys its scale-down check)
    repair_token: int = 0            # bumped at each cordon / uncordon (keys its repair event)
    info: HostInfo | None = None     # its HostInfo as last built (None: a field it shows changed since)

    #: Bumped whenever a field of :data:`SHOWN` is set on any host: the backend's host list is
    #: rebuilt only after such a change (class-wide, so across sims it only rebuilds more often).
    shown_changes = 0

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name in SHOWN:
            Host.shown_changes += 1
            object.__setattr__(self, "info", None)

    @property
    def node_id(self) -> str:
        return f"sim-{self.name}-{self.generation}"

    @property
    def empty(self) -> bool:
        return not self.gangs

    def fits(self, bundle: dict[str, float], count: int = 1) -> bool:
        return all(self.total.get(r, 0.0) - self.used.get(r, 0.0) + _EPS >= amt * count for r, amt in bundle.items())

    def room(self, bundle: dict[str, float]) -> int:
        """How many more bundles of this shape the host holds."""
        n = 1_000_000
        for r, amt in bundle.items():
            if amt > 0:
                n = min(n, int((self.total.get(r, 0.0) - self.used.get(r, 0.0) + _EPS) // amt))
        return max(n, 0)


def host_ray_resources(spec: PoolSpec, host_index: int) -> dict[str, float]:
    """One host's Ray resources: the pool's real CPUs, its GPUs, its accelerator/TPU resources."""
    out = {"CPU": spec.cpu_per_host / 1000}
    if spec.accelerator is not None and not spec.is_tpu:
        out["GPU"] = float(spec.accelerators_per_host)
    out.update(node_resources(spec, host_index=host_index))
    return out


class PoolHosts:
    """The hosts of one pool and the indexes placement needs."""

    def __init__(self, name: str, spec: PoolSpec):
        self.name, self.spec = name, spec
        self.multi_host_tpu = spec.is_tpu and spec.slice_hosts > 1
        self.hosts: list[Host] = []
        self.slices: dict[str, list[Host]] = {}
        for s in range(spec.max_replicas if spec.is_tpu else 1):
            for h in range(spec.slice_hosts if spec.is_tpu else spec.max_hosts):
                labels = node_labels(name, spec, slice_index=s, host_index=h)
                host = Host(labels[LABEL_HOST], name, len(self.hosts), labels.get(LABEL_TPU_SLICE) if self.multi_host_tpu else None,
                            labels, host_ray_resources(spec, h))
                self.hosts.append(host)
                if host.slice is not None:
                    self.slices.setdefault(host.slice, []).append(host)
        self.by_name = {h.name: h for h in self.hosts}
        self._empty: list[tuple[int, str]] = []      # heap of (index, name), lazily cleaned
        self._in_heap: set[str] = set()
        self._absent: list[tuple[int, str]] = [(h.index, h.name) for h in self.hosts]   # heap of absent slots, lazily cleaned
        self._in_absent: set[str] = {h.name for h in self.hosts}
        self.partial: set[str] = set()                # ready hosts with some gang on them and some of `key` left
        self.saturated: set[str] = set()              # ready hosts with some gang on them and none of `key` left
        total = self.hosts[0].total if self.hosts else {}
        self.key = next((r for r in ("GPU", "TPU") if r in total), "CPU")   # no bundle asking for it fits a saturated host
        self.ready = 0                                # hosts alive (ready, draining or cordoned)
        self.free = 0                                 # ready hosts with no gang
        self.provisioning = 0
        self.out = 0                                  # alive hosts taking no new work (draining, cordoned)
        self.repairing = 0
        self.emptied: list[Host] = []                 # hosts whose last gang left or that came up empty (the backend's idle timers, repairs)
        self._fresh: dict[tuple, int] = {}            # bundle shape -> bundles an empty host holds

    # ------------------------------------------------------------ host state

    @property
    def alive(self) -> int:
        """Slots holding a machine (alive or repairing): what counts against maxHosts."""
        return self.ready + self.repairing

    def set_state(self, host: Host, state: str, t: float | None = None) -> None:
        old = host.state
        if old == state:
            return
        if t is not None:
            host.since = t
        if old in ALIVE:
            self.ready -= 1
        if old in (DRAINING, CORDONED):
            self.out -= 1
        if old == READY and host.empty:
            self.free -= 1
        if old == PROVISIONING:
            self.provisioning -= 1
        if old == REPAIRING:
            self.repairing -= 1
        host.state = state
        if state in ALIVE:
            self.ready += 1
        if state in (DRAINING, CORDONED):
            self.out += 1
        if state == PROVISIONING:
            self.provisioning += 1
        if state == REPAIRING:
            self.repairing += 1
        if state == READY and host.empty:
            self.free += 1
            self._push_empty(host)
            self.emptied.append(host)
        if state == ABSENT:
            if host.name not in self._in_absent:
                heapq.heappush(self._absent, (host.index, host.name))
                self._in_absent.add(host.name)
            host.lease += 1
            host.up_at = host.expires_at = host.notice = host.idle_since = host.unhealthy = None
            host.cordon_reason = ""
        self._classify(host)

    def _classify(self, host: Host) -> None:
        """Keep ``host`` in ``partial``, ``saturated`` or neither (not ready, or empty)."""
        self.partial.discard(host.name)
        self.saturated.discard(host.name)
        if host.state != READY or host.empty:
            return
        if host.total.get(self.key, 0.0) - host.used.get(self.key, 0.0) <= _EPS:
            self.saturated.add(host.name)
        else:
            self.partial.add(host.name)

    def _push_empty(self, host: Host) -> None:
        if host.name not in self._in_heap:
            heapq.heappush(self._empty, (host.index, host.name))
            self._in_heap.add(host.name)

    def absent_hosts(self, limit: int) -> list[Host]:
        """Up to ``limit`` absent slots, lowest index first (touches only those it returns)."""
        out: list[Host] = []
        while self._absent and len(out) < limit:
            _, name = heapq.heappop(self._absent)
            self._in_absent.discard(name)
            if self.by_name[name].state == ABSENT:
                out.append(self.by_name[name])
        for h in out:
            heapq.heappush(self._absent, (h.index, h.name))
            self._in_absent.add(h.name)
        return out

    def take(self, host: Host, gang: str, bundle: dict[str, float], count: int) -> None:
        if host.empty and host.state == READY:
            self.free -= 1
        host.gangs.add(gang)
        for r, amt in bundle.items():
            host.used[r] = host.used.get(r, 0.0) + amt * count
        self._classify(host)

    def release(self, host: Host, gang: str, bundle: dict[str, float], count: int) -> None:
        if gang not in host.gangs:
            return
        host.gangs.discard(gang)
        for r, amt in bundle.items():
            left = host.used.get(r, 0.0) - amt * count
            host.used[r] = left if left > _EPS else 0.0
        if host.empty:
            host.used.clear()
        self._classify(host)
        if host.empty:
            self.emptied.append(host)
            if host.state == READY:
                self.free += 1
                self._push_empty(host)

    def _pop_empty(self) -> Host | None:
        while self._empty:
            _, name = heapq.heappop(self._empty)
            self._in_heap.discard(name)
            host = self.by_name[name]
            if host.state == READY and host.empty:
                return host
        return None

    # ------------------------------------------------------------ placement

    def fresh_room(self, bundle: dict[str, float]) -> int:
        """Bundles of this shape one empty host of the pool holds (hosts of a pool are alike, but
        for the slice-head resource, which no bundle asks for)."""
        key = tuple(sorted(bundle.items()))
        n = self._fresh.get(key)
        if n is None:
            probe = Host("", self.name, 0, None, {}, self.hosts[0].total if self.hosts else {})
            n = self._fresh[key] = probe.room(bundle)
        return n

    def hosts_needed(self, plan: GangPlan, gangs: int = 1) -> int:
        """Empty hosts ``gangs`` gangs of this plan's shape would need on a pool with nothing else on it."""
        if self.multi_host_tpu:
            return self.spec.slice_hosts * gangs
        if plan.strategy == "STRICT_SPREAD":
            return plan.workers * gangs
        per = max(self.fresh_room(plan.bundle), 1)
        if plan.strategy == "STRICT_PACK":
            return math.ceil(gangs / max(per // plan.workers, 1))
        return math.ceil(plan.workers * gangs / per)

    def place(self, plan: GangPlan) -> list[Host] | None:
        """Hosts for every bundle of the gang (one entry per worker, in worker order), taken at
        once; None (nothing taken) if the gang does not fit the ready hosts now."""
        if plan.workers <= 0:
            return []
        if self.multi_host_tpu:
            return self._place_in_slice(plan)
        bundle, n = plan.bundle, plan.workers
        per_fresh = self.fresh_room(bundle)
        # Partly used hosts with room, by index; a saturated host (none of `key` left) holds no bundle asking for `key`.
        names = self.partial if bundle.get(self.key, 0.0) > 0 else self.partial | self.saturated
        partial = sorted((self.by_name[h] for h in names), key=lambda h: h.index)
        room = {h.name: h.room(bundle) for h in partial}
        if plan.strategy == "STRICT_SPREAD":
            if sum(1 for h in partial if room[h.name]) + self.free < n:
                return None
        elif plan.strategy == "STRICT_PACK":
            if not any(room[h.name] >= n for h in partial) and not (self.free and per_fresh >= n):
                return None
        elif sum(room.values()) + self.free * per_fresh < n:
            return None
        chosen: list[tuple[Host, int]] = []        # (host, bundles on it)
        left = n
        spread = plan.strategy in ("SPREAD", "STRICT_SPREAD")
        if plan.strategy == "STRICT_PACK":
            host = next((h for h in partial if room[h.name] >= n), None)
            if host is not None:
                chosen.append((host, n))
                left = 0
        else:
            for h in partial:
                k = min(room[h.name], left, 1 if spread else left)
                if k:
                    chosen.append((h, k))
                    left -= k
                if not left:
                    break
        popped: list[Host] = []
        while left:
            host = self._pop_empty()
            if host is None:
                break
            popped.append(host)
            k = min(per_fresh, left, 1 if spread else left)
            chosen.append((host, k))
            left -= k
        if left and plan.strategy == "SPREAD":   # soft spread: pack the rest onto the hosts taken
            extra = []
            for host, k in chosen:
                more = min(host.room(bundle) - k, left)
                if more > 0:
                    extra.append((host, more))
                    left -= more
                if not left:
                    break
            chosen += extra
        if left:
            for host in popped:
                self._push_empty(host)
            return None
        return self._commit(plan, chosen)

    def _place_in_slice(self, plan: GangPlan) -> list[Host] | None:
        """A multi-host TPU gang lives in one slice: the first slice (by index) with room."""
        for hosts in self.slices.values():
            alive = [h for h in hosts if h.state == READY]
            if plan.strategy == "STRICT_SPREAD" or plan.strategy == "SPREAD":
                take = [(h, 1) for h in alive if h.room(plan.bundle) >= 1][: plan.workers]
                if len(take) == plan.workers:
                    return self._commit(plan, take)
                continue
            chosen, left = [], plan.workers
            for h in alive:
                k = min(h.room(plan.bundle), left if plan.strategy != "STRICT_PACK" else plan.workers)
                if plan.strategy == "STRICT_PACK" and k < plan.workers:
                    continue
                if k:
                    chosen.append((h, k))
                    left -= k
                if left <= 0:
                    return self._commit(plan, chosen)
        return None

    def _commit(self, plan: GangPlan, chosen: list[tuple[Host, int]]) -> list[Host]:
        out: list[Host] = []
        for host, k in chosen:
            self.take(host, plan.run_id, plan.bundle, k)
            out += [host] * k
        return out

    def free_gang(self, plan: GangPlan, hosts: list[Host]) -> None:
        counts: dict[str, int] = {}
        for h in hosts:
            counts[h.name] = counts.get(h.name, 0) + 1
        for name, k in counts.items():
            self.release(self.by_name[name], plan.run_id, plan.bundle, k)
