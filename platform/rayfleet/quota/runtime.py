"""Mutable bookkeeping behind :class:`~rayfleet.quota.state.QuotaState` (internal)."""

from __future__ import annotations

from typing import Any

from .tree import Node
from .types import (
    FlavorPreference,
    PreemptionPolicy,
    QueueConfig,
    QueueingStrategy,
    WhenCanBorrow,
    WhenCanPreempt,
    Workload,
)

Req = tuple[tuple[int, int], ...]  # ((flavor-resource index, amount), ...)


class Adm:
    """An admitted workload."""

    __slots__ = ("wl", "queue", "flavor", "req", "order", "at")

    def __init__(self, wl: Workload, queue: QueueRt, flavor: str, req: Req, order: int, at: float) -> None:
        self.wl = wl
        self.queue = queue
        self.flavor = flavor
        self.req = req
        self.order = order
        self.at = at

    def uses_any(self, idx: frozenset[int]) -> bool:
        for i, _ in self.req:
            if i in idx:
                return True
        return False


class TreeRt:
    """One cohort tree (or a queue without a cohort): the unit within which quota is shared."""

    __slots__ = ("name", "root", "nodes_bottom_up", "queues", "by_node", "pending", "gen", "pgen", "cache", "parked", "releases")

    def __init__(self, name: str, root: Node) -> None:
        self.name = name
        self.root = root
        self.nodes_bottom_up: list[Node] = []
        self.queues: list[QueueRt] = []
        self.by_node: dict[int, QueueRt] = {}   # id(queue's tree node) -> the queue (a cohort's children are nodes)
        self.pending: dict[str, Workload] = {}
        self.gen = 0  # bumped on every usage change in the tree (admission, release, preemption, config)
        self.pgen = 0  # bumped on every change of the tree's pending set
        self.cache: tuple[tuple[int, int], list[Any]] | None = None
        self.parked: set[str] = set()  # one-head mode: heads set aside until quota is freed
        self.releases = 0  # quota given back in the tree so far


def _order_key(w: Workload) -> tuple[int, float, str]:
    return w.order_key


class QueueRt:
    """A queue's configuration digested for the hot path, plus its admitted workloads."""

    __slots__ = (
        "name",
        "cfg",
        "node",
        "tree",
        "flavors",
        "covered",
        "strict",
        "within",
        "reclaim",
        "bwc",
        "bwc_max",
        "in_cohort",
        "can_preempt",
        "preempt_while_borrowing",
        "reclaim_ok",
        "stop_borrow",
        "stop_preempt",
        "rank_order",
        "lonep",
        "admitted",
        "memo1",
        "memo2",
        "options",
        "pend",
        "pend_added",
        "pend_removed",
        "lst",
        "keys",
        "i",
        "state",
        "live",
        "sleep_end",
        "sleep_out",
    )

    def __init__(self, cfg: QueueConfig, node: Node, fair_sharing: bool) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.node = node
        self.tree: TreeRt  # set by QuotaState when it builds the trees, before any use
        self.flavors = cfg.flavors
        self.covered = frozenset(r for (_, r) in cfg.quotas)
        self.strict = cfg.queueing_strategy == QueueingStrategy.STRICT_FIFO
        p = cfg.preemption
        self.within = p.within_cluster_queue
        self.reclaim = p.reclaim_within_cohort
        self.bwc = p.borrow_within_cohort.policy != "Never"
        self.bwc_max = p.borrow_within_cohort.max_priority_threshold
        self.in_cohort = node.parent is not None
        self.lonep = self.within == PreemptionPolicy.LOWER_OR_NEWER_EQUAL_PRIORITY
        self.can_preempt = self.within != PreemptionPolicy.NEVER or (
            self.in_cohort and (self.reclaim != PreemptionPolicy.NEVER or self.bwc or fair_sharing)
        )
        # Kueue lets a workload that needs more than the nominal quota preempt only when it may
        # preempt while borrowing: borrowWithinCohort, or fair sharing.
        self.preempt_while_borrowing = self.in_cohort and (self.bwc or fair_sharing)
        # ... or when a cohort on its path holds the request within its own quota (hierarchical
        # reclaim, :func:`.preemption.may_reclaim_in_hierarchy`), under reclaimWithinCohort.
        self.reclaim_ok = self.in_cohort and self.reclaim != PreemptionPolicy.NEVER
        self.stop_borrow = cfg.flavor_fungibility.when_can_borrow == WhenCanBorrow.BORROW
        self.stop_preempt = cfg.flavor_fungibility.when_can_preempt == WhenCanPreempt.PREEMPT
        # a flavor rank (0 fits, 1 fits by borrowing, 2 preempts within nominal, 3 preempts while
        # borrowing, 4 no fit) -> its place in the queue's preference (flavorFungibility.preference)
        self.rank_order = (0, 2, 1, 3, 4) if cfg.flavor_fungibility.preference == FlavorPreference.PREEMPTION_OVER_BORROWING else (0, 1, 2, 3, 4)
        self.admitted: dict[str, Adm] = {}
        # Outcomes of evaluations that did not admit, per phase, by Workload.memo_key; valid while
        # the tree's generation is unchanged (so a hit is exactly what re-evaluating would give).
        self.memo1: dict[str, tuple[int, Any]] = {}
        self.memo2: dict[str, tuple[int, Any]] = {}
        self.options: dict[tuple[Any, ...], Any] = {}
        # Pending workloads of this queue, and their order (rebuilt lazily after changes).
        self.pend: dict[str, Workload] = {}
        self.pend_added: list[Workload] = []
        self.pend_removed = False
        self.lst: list[Workload] = []
        self.keys: list[tuple[Any, ...]] = []
        # Cycle cursor: next index in lst, queue state, live heap key, sleeping run.
        self.i = 0
        self.state = 0
        self.live: tuple[Any, ...] | None = None
        self.sleep_end = -1
        self.sleep_out: Any = None

    def add_pending(self, wl: Workload) -> None:
        self.pend[wl.id] = wl
        self.pend_added.append(wl)

    def remove_pending(self, wid: str) -> None:
        if self.pend.pop(wid, None) is not None:
            self.pend_removed = True

    def ordered(self) -> list[Workload]:
        """Pending workloads by priority (highest first), then creation time, then id; also
        refreshes ``keys``, their order keys."""
        if not (self.pend_added or self.pend_removed):
            return self.lst
        pend = self.pend
        lst = [w for w in self.lst if pend.get(w.id) is w] if self.pend_removed else self.lst
        if self.pend_added:
            lst = lst + [w for w in self.pend_added if pend.get(w.id) is w]
            lst.sort(key=_order_key)
            dedup: list[Workload] = []
            last = None
            for w in lst:  # the same object may have been submitted twice
                if w is not last:
                    dedup.append(w)
                last = w
            lst = dedup
        self.lst = lst
        self.pend_added = []
        self.pend_removed = False
        self.keys = [w.order_key for w in lst]
        return lst

    def run_end(self, i: int) -> int:
        """End (exclusive) of the run of workloads from ``i`` on that share the memo key of
        workload ``i - 1`` (same shape and priority, hence the same decision in the same tree)."""
        if self.lonep:
            return i  # creation time matters: no two workloads share a memo key
        lst = self.lst
        key = lst[i - 1].memo_key
        n = len(lst)
        while i < n and lst[i].memo_key is key:
            i += 1
        return i
