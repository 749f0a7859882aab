"""The quota state and its scheduling cycle.

:class:`QuotaState` holds the configuration, the admitted workloads and the pending ones. One call
to :meth:`QuotaState.schedule` decides a whole batch: every pending workload is admitted (on one
flavor, possibly after preempting victims), or told why it waits.

A cycle, within each cohort tree (trees share no quota, so they are decided independently):

1. Pending workloads are taken by priority, then creation time. Each gets a flavor assignment in
   its queue's flavor order, with Kueue's flavorFungibility. Those that fit without borrowing are
   admitted; those that fit within nominal quota after preempting are admitted with their victims;
   those that would need to borrow are put aside (with the rest of their queue, to keep the
   queue's order), as Kueue orders requests under nominal quota before borrowing ones.
2. The workloads put aside are decided next, in the same order, or (with fair sharing) lowest
   dominant resource share after admission first, with borrowing and preemption while borrowing
   allowed.

StrictFIFO queues stop at the first workload that waits: the ones behind it wait too.
BestEffortFIFO queues go on with the next. A victim is never readmitted in the cycle that preempted
it (preempted workloads leave the state; the caller submits them again).

Decisions are a function of the calls made: iteration is over sorted structures, ties are broken
by workload id, and the caches below only ever return what a fresh evaluation would.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Mapping
from typing import Any

from ..api.base import format_quantity
from .fairshare import ShareCalc, strategy_fn
from .preemption import get_targets, reclaim_over_limits
from .runtime import Adm, QueueRt, Req, TreeRt
from .schedule import effective_config
from .tree import (
    Node,
    add_usage,
    available,
    build_potential,
    build_quotas,
    may_reclaim_in_hierarchy,
    remove_usage,
)
from .types import (
    Admit,
    AdmittedWorkload,
    Blocking,
    CycleResult,
    FlavorResource,
    PendingReason,
    Preempt,
    PreemptionReason,
    QueueUsage,
    QuotaConfig,
    Wait,
    Workload,
)

# Outcome kinds of one evaluation.
_ADMIT = 0
_DEFER = 1
_WAIT = 2
# Queue states within a cycle.
_OPEN = 0
_DEFERRED = 1
_BLOCKED = 2

_MEMO_LIMIT = 4096

_tuple_new = tuple.__new__


_QUOTA = PendingReason.WAITING_FOR_QUOTA.value
_EXCEEDS = PendingReason.EXCEEDS_QUOTA.value
_NO_FLAVOR = PendingReason.NO_MATCHING_FLAVOR.value
_FIFO_BLOCKED = PendingReason.STRICT_FIFO_BLOCKED.value


def _wait(wid: str, queue: str, pos: int, reason: str, blocking: tuple[Any, ...], could: tuple[Any, ...], code: str = _QUOTA) -> Wait:
    """A Wait, built without the NamedTuple constructor's Python-level call."""
    return _tuple_new(Wait, (wid, queue, pos, reason, blocking, could, code))


class _Out:
    __slots__ = ("kind", "pos", "targets", "reason", "blocking", "could", "code")

    def __init__(self, kind: int, pos: int = -1, targets: Any = (), reason: str = "", blocking: Any = (), could: Any = (),
                 code: str = _QUOTA) -> None:
        self.kind = kind
        self.pos = pos
        self.targets = targets
        self.reason = reason
        self.blocking = blocking
        self.could = could
        self.code = code


_DEFER_OUT = _Out(_DEFER)


def _wait_order(w: Wait) -> tuple[str, int]:
    return w.queue, w.position


class QuotaState:
    """Queues, cohorts, admitted and pending workloads; decides admissions in batches.

    ``now`` is always given by the caller (seconds since the epoch, or any monotonic clock when no
    quota schedule is used): the state never reads a clock.
    """

    def __init__(self, config: QuotaConfig, now: float = 0.0) -> None:
        config.validate()
        self._config = config
        self._admitted: dict[str, Adm] = {}
        self._pending: dict[str, Workload] = {}
        self._orphans: dict[str, Workload] = {}  # pending, for queues that do not exist
        self._seq = 0
        self._window_key: tuple[Any, ...] | None = None
        self._cycle: dict[str, tuple[int, int]] = {}
        self._queues: dict[str, QueueRt] = {}
        self._trees: list[TreeRt] = []
        self._build(effective_config(config, now))
        self._window_key = self._windows_at(now)
        self._tick_minute = int(now // 60)

    # ------------------------------------------------------------------ building

    def _build(self, eff: QuotaConfig) -> list[tuple[Adm, str]]:
        """(Re)build the tree for ``eff`` (schedules already applied). Admitted workloads are
        carried over; returns those that no longer have a place (queue or flavor gone)."""
        frs: set[FlavorResource] = set()
        for qcfg in eff.queues:
            frs.update(qcfg.quotas)
        for c in eff.cohorts:
            frs.update(c.quotas)
        fr_list = sorted(frs)
        self._fr_list = fr_list
        self._fr_index = {fr: k for k, fr in enumerate(fr_list)}
        n = self._n = len(fr_list)
        index = self._fr_index

        cnodes: dict[str, Node] = {}
        for c in eff.cohorts:
            node = Node(c.name, False, n, c.fair_share_weight)
            node.quotas = {index[fr]: rq for fr, rq in c.quotas.items()}
            cnodes[c.name] = node
        for c in eff.cohorts:
            if c.parent is not None:
                cnodes[c.name].parent = cnodes[c.parent]
                cnodes[c.parent].children.append(cnodes[c.name])
        queues: dict[str, QueueRt] = {}
        for qc in sorted(eff.queues, key=lambda x: x.name):
            node = Node(qc.name, True, n, qc.fair_share_weight)
            node.quotas = {index[fr]: rq for fr, rq in qc.quotas.items()}
            if qc.cohort is not None:
                node.parent = cnodes[qc.cohort]
                node.parent.children.append(node)
            queues[qc.name] = QueueRt(qc, node, eff.fair_sharing)
        all_nodes = list(cnodes.values()) + [q.node for q in queues.values()]
        for node in all_nodes:
            node.depth = len(node.path()) - 1
            node.children.sort(key=lambda x: (x.is_queue, x.name))
        bottom_up = sorted(all_nodes, key=lambda x: (-x.depth, x.is_queue is False, x.name))
        build_quotas(bottom_up, n)
        build_potential(list(reversed(bottom_up)), n)

        trees: dict[tuple[str, bool], TreeRt] = {}
        for q in queues.values():
            root = q.node.root()
            tree = trees.get((root.name, root.is_queue))
            if tree is None:
                tree = trees[(root.name, root.is_queue)] = TreeRt(root.name, root)
            tree.queues.append(q)
            tree.by_node[id(q.node)] = q
            q.tree = tree
        for tree in trees.values():
            ids = {id(n) for q in tree.queues for n in q.node.path()}
            tree.nodes_bottom_up = [nd for nd in bottom_up if id(nd) in ids]
        self._queues = queues
        self._trees = [trees[k] for k in sorted(trees)]
        self._shares = ShareCalc([r for (_, r) in fr_list], all_nodes) if eff.fair_sharing else None
        self._strategies = [strategy_fn(s) for s in eff.fair_sharing_strategies]
        self._fair = eff.fair_sharing
        self._effective = eff

        # Carry over admitted workloads, in admission order.
        lost: list[tuple[Adm, str]] = []
        old = sorted(self._admitted.values(), key=lambda a: a.order)
        self._admitted = {}
        for a in old:
            aq = queues.get(a.wl.queue)
            if aq is None:
                lost.append((a, f"queue {a.wl.queue!r} no longer exists"))
                continue
            req = []
            missing = None
            for r, v in a.wl.totals:
                k = index.get((a.flavor, r))
                if k is None or (a.flavor, r) not in aq.cfg.quotas:
                    missing = r
                    break
                req.append((k, v))
            if missing is not None or a.flavor not in aq.flavors:
                lost.append((a, f"queue {aq.name!r} no longer has quota for {missing or 'anything'} on flavor {a.flavor!r}"))
                continue
            na = Adm(a.wl, aq, a.flavor, tuple(req), a.order, a.at)
            for k, v in na.req:
                add_usage(aq.node, k, v)
            aq.admitted[a.wl.id] = na
            self._admitted[a.wl.id] = na
        # Re-bucket pending workloads.
        self._orphans = {}
        for wl in sorted(self._pending.values(), key=lambda w: w.order_key):
            pq = queues.get(wl.queue)
            if pq is not None:
                pq.tree.pending[wl.id] = wl
                pq.add_pending(wl)
            else:
                self._orphans[wl.id] = wl
        return lost

    # ------------------------------------------------------------------ pending set

    def submit(self, wl: Workload) -> None:
        """Add (or replace) a pending workload."""
        if wl.id in self._admitted:
            raise ValueError(f"workload {wl.id!r} is admitted; release it before submitting it again")
        old = self._pending.get(wl.id)
        if old is wl:
            return
        if old is not None:
            self.withdraw(wl.id)
        self._pending[wl.id] = wl
        q = self._queues.get(wl.queue)
        if q is not None:
            t = q.tree
            t.pending[wl.id] = wl
            q.add_pending(wl)
            t.pgen += 1
        else:
            self._orphans[wl.id] = wl

    def withdraw(self, workload_id: str) -> bool:
        """Remove a pending workload; False if it was not pending."""
        wl = self._pending.pop(workload_id, None)
        if wl is None:
            return False
        self._orphans.pop(workload_id, None)
        q = self._queues.get(wl.queue)
        if q is not None:
            t = q.tree
            t.parked.discard(workload_id)
            t.pending.pop(workload_id, None)
            q.remove_pending(workload_id)
            t.pgen += 1
        return True

    def _sync_pending(self, pending: Iterable[Workload]) -> None:
        want: dict[str, Workload] = {}
        for wl in pending:
            if wl.id in want:
                raise ValueError(f"workload {wl.id!r} is listed twice among the pending workloads")
            want[wl.id] = wl
        for wid in [w for w in self._pending if w not in want]:
            self.withdraw(wid)
        for wl in want.values():
            cur = self._pending.get(wl.id)
            if cur is wl:
                continue
            if cur is not None and cur == wl:
                continue
            self.submit(wl)

    @property
    def pending(self) -> Mapping[str, Workload]:
        return self._pending

    # ------------------------------------------------------------------ admitted set

    @property
    def admitted(self) -> dict[str, AdmittedWorkload]:
        """Admitted workloads by id, in admission order."""
        return {
            a.wl.id: AdmittedWorkload(a.wl, a.flavor, dict(a.wl.totals), a.order, a.at)
            for a in sorted(self._admitted.values(), key=lambda a: a.order)
        }

    def is_admitted(self, workload_id: str) -> bool:
        return workload_id in self._admitted

    def restore(self, wl: Workload, flavor: str, *, order: int | None = None, admitted_at: float = 0.0) -> AdmittedWorkload:
        """Record a workload admitted earlier (e.g. loading today's state), without checking quota.

        ``order`` is its admission sequence number (later admissions higher); by default it comes
        after everything admitted so far. A state over quota after restoring is brought back
        within limits by the next :meth:`tick` / :meth:`set_config` (reason QuotaShrunk).
        """
        if wl.id in self._admitted:
            raise ValueError(f"workload {wl.id!r} is already admitted")
        q = self._queues.get(wl.queue)
        if q is None:
            raise ValueError(f"workload {wl.id!r}: unknown queue {wl.queue!r}")
        if flavor not in q.flavors:
            raise ValueError(f"workload {wl.id!r}: flavor {flavor!r} is not a flavor of queue {q.name!r}")
        req = []
        for r, v in wl.totals:
            if (flavor, r) not in q.cfg.quotas:
                raise ValueError(f"workload {wl.id!r}: queue {q.name!r} has no quota for {r} on flavor {flavor!r}")
            req.append((self._fr_index[(flavor, r)], v))
        self.withdraw(wl.id)
        if order is None:
            order = self._seq
        self._seq = max(self._seq, order + 1)
        a = Adm(wl, q, flavor, tuple(req), order, admitted_at)
        self._account(a)
        return AdmittedWorkload(wl, flavor, dict(wl.totals), order, admitted_at)

    def fits(self, wl: Workload, flavor: str) -> bool:
        """Whether quota would admit ``wl`` on ``flavor`` now without preempting anything (within
        nominal quota or by borrowing), as if it were pending; nothing changes. A query for moving
        an admitted workload back to a preferred flavor (compute-class active migration): its own
        usage is on another flavor, so it does not count against this one."""
        q = self._queues.get(wl.queue)
        if q is None or flavor not in q.flavors:
            return False
        req = []
        for r, v in wl.totals:
            if (flavor, r) not in q.cfg.quotas:
                return False
            req.append((self._fr_index[(flavor, r)], v))
        rank, _ = self._eval(q, tuple(req))
        return rank in (0, 1)

    def _account(self, a: Adm) -> None:
        q = a.queue
        for k, v in a.req:
            add_usage(q.node, k, v)
        q.admitted[a.wl.id] = a
        self._admitted[a.wl.id] = a
        q.tree.gen += 1

    def _unaccount(self, a: Adm) -> None:
        q = a.queue
        for k, v in a.req:
            remove_usage(q.node, k, v)
        del q.admitted[a.wl.id]
        del self._admitted[a.wl.id]
        t = q.tree
        t.gen += 1
        t.releases += 1
        # Freed capacity: heads set aside in one-head mode get another look (Kueue requeues
        # inadmissible workloads when a workload finishes).
        t.parked.clear()

    def releases_by_tree(self) -> dict[tuple[str, bool], int]:
        """Quota given back so far in each cohort tree, by its root (name, is a queue): only a release
        in a queue's own tree can let what waited in that queue in. Counted from the last change of
        the quotas in force (the trees are built again then)."""
        return {(t.root.name, t.root.is_queue): t.releases for t in self._trees}

    def tree_of(self, queue: str) -> tuple[str, bool] | None:
        """The root (name, is a queue) of ``queue``'s cohort tree; None for a queue quota does not know."""
        q = self._queues.get(queue)
        return None if q is None else (q.tree.root.name, q.tree.root.is_queue)

    def release(self, workload_id: str) -> AdmittedWorkload:
        """A workload finished (or was stopped): give its quota back."""
        a = self._admitted.get(workload_id)
        if a is None:
            raise KeyError(f"workload {workload_id!r} is not admitted")
        self._unaccount(a)
        return AdmittedWorkload(a.wl, a.flavor, dict(a.wl.totals), a.order, a.at)

    # ------------------------------------------------------------------ config and schedules

    @property
    def config(self) -> QuotaConfig:
        return self._config

    @property
    def effective_config(self) -> QuotaConfig:
        """The configuration in force (quota schedules applied at the last tick)."""
        return self._effective

    def _windows_at(self, now: float) -> tuple[Any, ...]:
        from .schedule import window_active

        return tuple(
            tuple(window_active(w, now) for w in q.schedule) for q in self._config.queues if q.schedule
        )

    def set_config(self, config: QuotaConfig, now: float) -> list[Preempt]:
        """Replace the configuration. Returns the preemptions it causes: workloads whose queue or
        flavor is gone, and whatever is now over a limit (reason QuotaShrunk)."""
        config.validate()
        self._config = config
        self._window_key = self._windows_at(now)
        self._tick_minute = int(now // 60)
        return self._apply(effective_config(config, now))

    def reconcile(self, now: float) -> list[Preempt]:
        """Re-apply the configuration at ``now`` and reclaim whatever is over a limit (e.g. after
        :meth:`restore` loaded a state admitted under other quotas). Reason OverQuota: nothing
        shrank, the state loaded is more than the quota in force allows."""
        self._window_key = self._windows_at(now)
        self._tick_minute = int(now // 60)
        return self._apply(effective_config(self._config, now), PreemptionReason.OVER_QUOTA)

    def tick(self, now: float) -> list[Preempt]:
        """Apply the quota schedules at ``now``; returns the reclaims a shrinking quota causes."""
        minute = int(now // 60)  # windows start and end on whole minutes
        if minute == self._tick_minute:
            return []
        self._tick_minute = minute
        key = self._windows_at(now)
        if key == self._window_key:
            return []
        self._window_key = key
        eff = effective_config(self._config, now)
        if eff == self._effective:
            return []
        return self._apply(eff)

    def _apply(self, eff: QuotaConfig, reason: PreemptionReason = PreemptionReason.QUOTA_SHRUNK) -> list[Preempt]:
        lost = self._build(eff)
        out = [
            Preempt(a.wl.id, a.wl.queue, None, reason, msg) for a, msg in lost
        ]
        for tree in self._trees:
            for a in reclaim_over_limits(tree, self._n):
                # reclaim_over_limits already removed the usage; drop the bookkeeping.
                for k, v in a.req:
                    add_usage(a.queue.node, k, v)
                self._unaccount(a)
                flavor = a.flavor
                why = (f"quota on flavor {flavor!r} shrank below what is admitted in cohort tree {tree.name!r}"
                       if reason == PreemptionReason.QUOTA_SHRUNK else
                       f"what is admitted on flavor {flavor!r} in cohort tree {tree.name!r} is over the quota in force "
                       "(the state was admitted under other quotas)")
                out.append(Preempt(a.wl.id, a.queue.name, None, reason, why))
        return out

    # ------------------------------------------------------------------ accessors

    def queue_names(self) -> list[str]:
        return sorted(self._queues)

    def queue_usage(self, name: str) -> QueueUsage:
        """Nominal quota, usage, borrowed and lent amounts of a queue, by (flavor, resource)."""
        q = self._queues[name]
        return self._usage_of(q, self._lent(q.tree))

    def queue_usages(self) -> dict[str, QueueUsage]:
        """:meth:`queue_usage` of every queue, in name order, with each cohort tree's lending worked
        out once (not once per queue of the tree)."""
        lent: dict[int, dict[str, dict[int, int]]] = {}
        out: dict[str, QueueUsage] = {}
        for name in sorted(self._queues):
            q = self._queues[name]
            by_queue = lent.get(id(q.tree))
            if by_queue is None:
                by_queue = lent[id(q.tree)] = self._lent(q.tree)
            out[name] = self._usage_of(q, by_queue)
        return out

    def _usage_of(self, q: QueueRt, lent_in_tree: dict[str, dict[int, int]]) -> QueueUsage:
        name, node = q.name, q.node
        fr = self._fr_list
        nominal = {fr[k]: rq.nominal for k, rq in sorted(node.quotas.items())}
        usage = {fr[k]: node.usage[k] for k in sorted(node.quotas) if node.usage[k]}
        borrowed = {
            fr[k]: node.usage[k] - node.subtree[k] for k in sorted(node.quotas) if node.usage[k] > node.subtree[k]
        }
        lent = lent_in_tree.get(name, {})
        pending = len(q.pend)
        return QueueUsage(name, q.cfg.cohort, nominal, usage, borrowed, {fr[k]: v for k, v in lent.items()}, pending, len(q.admitted))

    def _lent(self, tree: TreeRt) -> dict[str, dict[int, int]]:
        """Attribute each cohort's borrowing to its lenders (see QueueUsage.lent)."""
        out: dict[str, dict[int, int]] = {}
        for node in tree.nodes_bottom_up:
            if node.is_queue or not node.children:
                continue
            for k in range(self._n):
                borrowed = sum(max(0, c.usage[k] - c.subtree[k]) for c in node.children)
                if borrowed <= 0:
                    continue
                own = node.subtree[k] - sum(c.subtree[k] - c.guar[k] for c in node.children)
                rest = borrowed - min(borrowed, max(0, own))
                offers = []
                for c in node.children:
                    if not c.is_queue:
                        continue
                    offer = min(max(0, c.subtree[k] - c.usage[k]), c.subtree[k] - c.guar[k])
                    if offer > 0:
                        offers.append((c.name, offer))
                total = sum(o for _, o in offers)
                if rest <= 0 or total <= 0:
                    continue
                rest = min(rest, total)
                given = 0
                shares: list[list[Any]] = []
                for name, offer in offers:
                    s = rest * offer // total
                    shares.append([name, s, offer])
                    given += s
                for item in shares:  # remainders, in name order
                    if given >= rest:
                        break
                    if item[1] < item[2]:
                        item[1] += 1
                        given += 1
                for name, s, _ in shares:
                    if s:
                        out.setdefault(name, {})[k] = s
        return out

    def cohort_usage(self, name: str) -> dict[FlavorResource, tuple[int, int]]:
        """(usage, capacity) of a cohort by (flavor, resource): what its members use above their
        guaranteed quota against its subtree quota."""
        for tree in self._trees:
            for node in tree.nodes_bottom_up:
                if not node.is_queue and node.name == name:
                    return {
                        self._fr_list[k]: (node.usage[k], node.subtree[k])
                        for k in range(self._n)
                        if node.subtree[k] or node.usage[k]
                    }
        raise KeyError(f"unknown cohort {name!r}")

    # ------------------------------------------------------------------ the cycle

    def schedule(
        self, now: float, pending: Iterable[Workload] | None = None, *, one_head_per_queue: bool = False
    ) -> CycleResult:
        """Run one scheduling cycle at ``now``.

        ``pending``, when given, is the complete set of pending workloads (it replaces what
        :meth:`submit` / :meth:`withdraw` built up). Quota schedules are applied first; reclaims
        they cause come back among ``preempted``. With ``one_head_per_queue`` only the head of
        each queue is considered (Kueue's cycle; for comparison), and only heads get decisions.
        """
        res = CycleResult(now)
        self._cycle = {}  # admitted in this cycle: (index in res.admitted, position)
        res.preempted.extend(self.tick(now))
        if pending is not None:
            self._sync_pending(pending)
        orphans: dict[str, int] = {}
        for wl in sorted(self._orphans.values(), key=lambda w: w.order_key):
            if wl.queue not in self._queues:
                pos = orphans.get(wl.queue, 0)
                orphans[wl.queue] = pos + 1
                res.waiting.append(Wait(wl.id, wl.queue, pos, f"queue {wl.queue!r} does not exist", code=PendingReason.QUEUE_NOT_FOUND.value))
        for tree in self._trees:
            if not tree.pending:
                continue
            if one_head_per_queue:
                self._heads(tree, now, res)
            else:
                self._batch(tree, now, res)
        if len(res.admitted) != len(self._cycle):
            res.admitted = [a for a in res.admitted if a is not None]
        self._cycle = {}
        res.waiting.sort(key=_wait_order)   # one order, however the cycle reached each decision
        return res

    def _batch(self, tree: TreeRt, now: float, res: CycleResult) -> None:
        cache = tree.cache
        if cache is not None and cache[0] == (tree.gen, tree.pgen):
            res.waiting.extend(cache[1])
            return
        gen0 = tree.gen
        qs = [q for q in tree.queues if q.pend]
        for q in qs:
            q.lst = q.ordered()
            q.i = 0
            q.state = _OPEN
            q.sleep_end = -1
        waits: list[Wait] = []
        self._phase(tree, qs, 1, now, res, waits)
        deferred = [q for q in qs if q.state == _DEFERRED]
        if deferred:
            for q in deferred:
                q.state = _OPEN
            if self._fair:
                self._phase2_fair(deferred, now, res, waits)
            else:
                self._phase(tree, deferred, 2, now, res, waits)
        res.waiting.extend(waits)
        tree.cache = ((tree.gen, tree.pgen), waits) if tree.gen == gen0 else None

    def _phase(self, tree: TreeRt, qs: list[QueueRt], phase: int, now: float, res: CycleResult, waits: list[Wait]) -> None:
        """Decide the queues' workloads from their cursors on, in priority-then-creation order
        across the queues (a heap merge of the per-queue orders).

        A workload that waits puts the rest of its run (the following workloads of its queue with
        the same shape and priority) to sleep: they would get the same answer, and do, in bulk,
        unless an admission changes the tree first; then those not yet reached in the merge order
        are woken and decided one by one again.
        """
        heap: list[tuple[tuple[Any, ...], int]] = []
        for k, q in enumerate(qs):
            if q.i < len(q.lst):
                q.live = q.keys[q.i]
                heap.append((q.live, k))
            else:
                q.live = None
        heapq.heapify(heap)
        sleepers: set[int] = set()
        pop, push = heapq.heappop, heapq.heappush
        for_phase1 = phase == 1
        while heap:
            key, k = pop(heap)
            q = qs[k]
            if key != q.live:
                continue  # stale entry
            if q.sleep_end >= 0:
                # The run slept through without a change in the tree: all of it waits.
                self._emit_run(q, q.i, q.sleep_end, q.sleep_out, waits)
                q.i = q.sleep_end
                q.sleep_end = -1
                sleepers.discard(k)
            wl = q.lst[q.i]
            hit = (q.memo1 if for_phase1 else q.memo2).get(wl.memo_key_created if q.lonep else wl.memo_key)
            if hit is not None and hit[0] == tree.gen:
                out = hit[1]
            else:
                out = self._try(wl, q, phase)
            kind = out.kind
            if kind == _WAIT:
                waits.append(_wait(wl.id, q.name, q.i, out.reason, out.blocking, out.could, out.code))
                q.i += 1
                if q.strict:
                    q.state = _BLOCKED
                    for j in range(q.i, len(q.lst)):
                        waits.append(self._blocked_wait(q.lst[j], q, j, wl.id))
                    q.i = len(q.lst)
                    q.live = None
                    continue
                end = q.run_end(q.i)
                if end > q.i:
                    q.sleep_end = end
                    q.sleep_out = out
                    sleepers.add(k)
                    if end < len(q.lst):
                        q.live = q.keys[end]
                        push(heap, (q.live, k))
                    else:
                        q.live = None
                    continue
            elif kind == _DEFER:
                q.state = _DEFERRED
                q.live = None
                continue
            else:
                self._admit(wl, q, out, now, res, q.i)
                q.i += 1
                if sleepers:
                    self._wake(qs, sleepers, key, heap, waits)
            if q.i < len(q.lst):
                q.live = q.keys[q.i]
                push(heap, (q.live, k))
            else:
                q.live = None
        for k in sorted(sleepers):
            q = qs[k]
            self._emit_run(q, q.i, q.sleep_end, q.sleep_out, waits)
            q.i = q.sleep_end
            q.sleep_end = -1

    def _wake(self, qs: list[QueueRt], sleepers: set[int], key: tuple[Any, ...], heap: list[Any], waits: list[Wait]) -> None:
        """The tree changed while deciding the workload ordered at ``key``: sleeping runs wait up
        to there, and are decided again from there on."""
        for k in sorted(sleepers):
            q = qs[k]
            j = bisect.bisect_left(q.keys, key, q.i, q.sleep_end)
            self._emit_run(q, q.i, j, q.sleep_out, waits)
            q.i = j
            q.sleep_end = -1
            if j < len(q.lst):
                q.live = q.keys[j]
                heapq.heappush(heap, (q.live, k))
            else:
                q.live = None
        sleepers.clear()

    @staticmethod
    def _emit_run(q: QueueRt, start: int, end: int, out: _Out, waits: list[Wait]) -> None:
        name, reason, blocking, could, code, lst = q.name, out.reason, out.blocking, out.could, out.code, q.lst
        new, cls = _tuple_new, Wait
        waits.extend([new(cls, (lst[j].id, name, j, reason, blocking, could, code)) for j in range(start, end)])

    def _phase2_fair(self, deferred: list[QueueRt], now: float, res: CycleResult, waits: list[Wait]) -> None:
        """Decide the borrowing workloads lowest dominant resource share (after admission) first."""
        heap: list[tuple[Any, ...]] = []
        by_name = {q.name: q for q in deferred}
        shares = self._shares
        assert shares is not None  # fair sharing on: the share calculator exists

        def key(q: QueueRt) -> tuple[Any, ...]:
            wl = q.lst[q.i]
            return (shares.path_shares(q.node, self._share_req(wl, q)), wl.order_key)

        for q in deferred:
            if q.i < len(q.lst):
                heap.append((key(q), q.name))
        heapq.heapify(heap)
        blocked_by: dict[str, str] = {}
        while heap:
            k, name = heapq.heappop(heap)
            q = by_name[name]
            fresh = key(q)
            if fresh != k:
                heapq.heappush(heap, (fresh, name))
                continue
            wl, pos = q.lst[q.i], q.i
            if q.state == _BLOCKED:
                waits.append(self._blocked_wait(wl, q, pos, blocked_by[q.name]))
            else:
                before = len(res.preempted)
                out = self._try(wl, q, 2)
                if out.kind == _ADMIT:
                    self._admit(wl, q, out, now, res, pos)
                else:
                    waits.append(_wait(wl.id, q.name, pos, out.reason, out.blocking, out.could, out.code))
                    if q.strict:
                        q.state = _BLOCKED
                        blocked_by[q.name] = wl.id
                if len(res.preempted) != before:
                    # Victims' queues now have lower shares: refresh every key.
                    heap = [(key(by_name[n]), n) for _, n in heap]
                    heapq.heapify(heap)
            q.i += 1
            if q.i < len(q.lst):
                heapq.heappush(heap, (key(q), name))

    def _share_req(self, wl: Workload, q: QueueRt) -> Req | None:
        opts = self._options(q, wl)
        if isinstance(opts, str):
            return None
        rank, pos, _ = self._select(q, opts)
        return opts[pos][1] if rank < 4 else None

    def _heads(self, tree: TreeRt, now: float, res: CycleResult) -> None:
        """Kueue's cycle: one head per queue, heads ordered (under nominal first, then share,
        priority, creation); a BestEffortFIFO head that cannot be admitted is set aside until
        quota is freed in its tree."""
        parked = tree.parked
        entries = []
        for q in tree.queues:
            if not q.pend:
                continue
            head = None
            for pos, wl in enumerate(q.ordered()):
                if wl.id in parked:
                    continue
                if head is None:
                    head = (wl, pos)
                else:
                    res.more = True
                    break
            if head is None:
                continue
            wl, pos = head
            opts = self._options(q, wl)
            borrows = 0
            share: tuple[Any, ...] = ()
            if not isinstance(opts, str):
                rank, p, _ = self._select(q, opts)
                borrows = 1 if rank in (1, 3) else 0
                if self._fair and rank < 4:
                    assert self._shares is not None  # fair sharing on
                    share = self._shares.path_shares(q.node, opts[p][1])
            entries.append(((borrows, share, wl.order_key), wl, q, pos))
        entries.sort(key=lambda e: e[0])
        for _, wl, q, pos in entries:
            out = self._try(wl, q, 2)
            if out.kind == _ADMIT:
                self._admit(wl, q, out, now, res, pos)
            else:
                res.waiting.append(_wait(wl.id, q.name, pos, out.reason, out.blocking, out.could, out.code))
                if not q.strict:
                    parked.add(wl.id)

    def _blocked_wait(self, wl: Workload, q: QueueRt, pos: int, head: str) -> Wait:
        return _wait(wl.id, q.name, pos, f"StrictFIFO: queue {q.name!r} is blocked behind {head!r}, which cannot be admitted yet", (), (), _FIFO_BLOCKED)

    # ------------------------------------------------------------------ one workload

    def _options(self, q: QueueRt, wl: Workload) -> Any:
        """Flavors of ``q`` the workload may use, in order, with its request per flavor; or a
        string saying why there is none."""
        opts = q.options.get(wl.signature)
        if opts is not None:
            return opts
        uncovered = [r for r, _ in wl.totals if r not in q.covered]
        if uncovered:
            opts = f"queue {q.name!r} gives no quota for {', '.join(uncovered)}"
        else:
            allowed = q.flavors if wl.flavors is None else [f for f in q.flavors if f in wl.flavors]
            if not allowed and not wl.flavors:
                opts = f"no flavor of queue {q.name!r} can host it (it may run on no flavor)"
            elif not allowed:
                opts = f"none of the workload's flavors ({', '.join(wl.flavors or ())}) is a flavor of queue {q.name!r}"
            else:
                found = []
                why = []
                quotas = q.cfg.quotas
                index = self._fr_index
                for f in allowed:
                    missing = [r for r, _ in wl.totals if (f, r) not in quotas]
                    if missing:
                        why.append(f"flavor {f!r} has no quota for {', '.join(missing)}")
                        continue
                    found.append((f, tuple((index[(f, r)], v) for r, v in wl.totals)))
                opts = found if found else f"no flavor of queue {q.name!r} fits: " + "; ".join(why)
        if len(q.options) >= _MEMO_LIMIT:
            q.options.clear()
        q.options[wl.signature] = opts
        return opts

    def _eval(self, q: QueueRt, req: Req) -> tuple[int, frozenset[int] | None]:
        """Rank of one flavor: 0 fits, 1 fits by borrowing, 2 fits after preemption within nominal
        quota, 3 fits after preemption while borrowing, 4 does not fit."""
        node = q.node
        usage = node.usage
        sub = node.subtree
        pot = node.potential
        borrow = False
        need: list[int] | None = None
        for i, v in req:
            b = usage[i] + v > sub[i]
            if v <= available(node, i):
                if b:
                    borrow = True
                continue
            if v > pot[i] or not q.can_preempt or (
                    v > sub[i] and not q.preempt_while_borrowing and not (q.reclaim_ok and may_reclaim_in_hierarchy(node, i, v))):
                return 4, None
            if b:
                borrow = True
            if need is None:
                need = [i]
            else:
                need.append(i)
        if need is None:
            return (1 if borrow else 0), None
        return (3 if borrow else 2), frozenset(need)

    def _select(self, q: QueueRt, opts: Any) -> tuple[int, int, frozenset[int] | None]:
        """The flavor Kueue's flavor assigner picks: (rank, position in opts, indices needing
        preemption)."""
        best: tuple[int, int, frozenset[int] | None] | None = None
        for pos, (_, req) in enumerate(opts):
            rank, need = self._eval(q, req)
            if (
                rank == 0
                or (rank == 1 and q.stop_borrow)
                or (rank == 2 and q.stop_preempt)
                or (rank == 3 and q.stop_preempt and q.stop_borrow)
            ):
                return rank, pos, need
            if rank < 4 and (best is None or q.rank_order[rank] < q.rank_order[best[0]]):
                best = (rank, pos, need)
        return best if best is not None else (4, -1, None)

    def _try(self, wl: Workload, q: QueueRt, phase: int) -> _Out:
        key = wl.memo_key_created if q.lonep else wl.memo_key
        tree = q.tree
        memo = q.memo1 if phase == 1 else q.memo2
        hit = memo.get(key)
        if hit is not None and hit[0] == tree.gen:
            out: _Out = hit[1]
            return out
        out = self._decide(wl, q, phase)
        if out.kind != _ADMIT:
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            memo[key] = (tree.gen, out)
        return out

    def _decide(self, wl: Workload, q: QueueRt, phase: int) -> _Out:
        opts = self._options(q, wl)
        if isinstance(opts, str):
            return _Out(_WAIT, reason=opts, code=_NO_FLAVOR)
        rank, pos, need = self._select(q, opts)
        if rank == 0 or (rank == 1 and phase == 2):
            return _Out(_ADMIT, pos)
        if rank == 4:
            return self._wait(q, wl, opts, ())
        if phase == 1 and rank != 2:
            return _DEFER_OUT
        could: dict[str, None] = {}
        tried = {pos}
        targets = self._preempt(wl, q, opts[pos][1], need, could)
        if targets:
            return _Out(_ADMIT, pos, targets)
        # Other flavors, best first: another flavor may fit, or preemption may work there.
        ranked = []
        for p, (_, req) in enumerate(opts):
            if p in tried:
                continue
            r, nd = self._eval(q, req)
            if r < 4:
                ranked.append((r, p, nd))
        ranked.sort(key=lambda x: (q.rank_order[x[0]], x[1]))
        for r, p, nd in ranked:
            if r == 0:
                return _Out(_ADMIT, p)
            if phase == 1 and r in (1, 3):
                return _DEFER_OUT
            if r == 1:
                return _Out(_ADMIT, p)
            targets = self._preempt(wl, q, opts[p][1], nd, could)
            if targets:
                return _Out(_ADMIT, p, targets)
        return self._wait(q, wl, opts, tuple(could))

    def _preempt(self, wl: Workload, q: QueueRt, req: Req, need: Any, could: dict[str, None]) -> Any:
        targets, cands = get_targets(wl, q, req, need, self._shares, self._strategies)
        for c in cands:
            could[c.wl.id] = None
        return targets

    def _wait(self, q: QueueRt, wl: Workload, opts: Any, could: tuple[str, ...]) -> _Out:
        blocking = []
        node = q.node
        fr = self._fr_list
        parts = []
        never = 0   # flavors where the request is more than the queue can ever get
        for f, req in opts:
            ever = True
            for i, v in req:
                avail = available(node, i)
                if v > avail:
                    r = fr[i][1]
                    blocking.append(Blocking(f, r, v, max(0, avail)))
                    if v > node.potential[i]:
                        ever = False
                        parts.append(f"{r} on {f}: requests {format_quantity(r, v)}, more than the queue can ever get "
                                     f"({format_quantity(r, node.potential[i])})")
                    else:
                        parts.append(f"{r} on {f}: requests {format_quantity(r, v)}, {format_quantity(r, max(0, avail))} available")
            never += not ever
        if could:
            head = f"{len(could)} workload(s) could be preempted but that would not free enough quota"
        elif any(self._eval(q, req)[0] in (2, 3) for _, req in opts):
            head = "no admitted workload may be preempted for it under the queue's preemption policy"
        elif not q.can_preempt:
            head = "insufficient quota, and the queue's preemption policy never preempts"
        else:
            head = "insufficient quota"
        reason = head + ("; " + "; ".join(parts) if parts else "")
        return _Out(_WAIT, reason=reason, blocking=tuple(blocking), could=could, code=_EXCEEDS if never == len(opts) else _QUOTA)

    def _admit(self, wl: Workload, q: QueueRt, out: _Out, now: float, res: CycleResult, pos: int) -> None:
        victims = []
        for adm, reason in out.targets:
            self._unaccount(adm)
            placed = self._cycle.pop(adm.wl.id, None)
            if placed is not None:
                # Admitted earlier in this very cycle: undo that admission instead of preempting
                # (a cycle never both admits and preempts a workload); it is pending again.
                index, vpos = placed
                res.admitted[index] = None  # type: ignore[call-overload]
                self.submit(adm.wl)
                res.waiting.append(
                    Wait(
                        adm.wl.id,
                        adm.queue.name,
                        vpos,
                        f"displaced in this cycle by {_taker(wl, q, adm.queue)} ({_REASON_TEXT[reason]})",
                        code=PendingReason.DISPLACED.value,
                    )
                )
                continue
            victims.append(adm.wl.id)
            res.preempted.append(
                Preempt(
                    adm.wl.id,
                    adm.queue.name,
                    wl.id,
                    reason,
                    f"preempted to admit {_taker(wl, q, adm.queue)} ({_REASON_TEXT[reason]})",
                )
            )
        flavor, req = self._options(q, wl)[out.pos]
        node = q.node
        sub = node.subtree
        borrowed: dict[str, int] = {}
        for i, v in req:
            u = node.usage[i]
            before = u - sub[i] if u > sub[i] else 0
            after = u + v - sub[i] if u + v > sub[i] else 0
            if after > before:
                borrowed[self._fr_list[i][1]] = after - before
        a = Adm(wl, q, flavor, req, self._seq, now)
        self._seq += 1
        self._pending.pop(wl.id, None)
        t = q.tree
        t.pending.pop(wl.id, None)
        q.remove_pending(wl.id)
        t.pgen += 1
        self._account(a)
        self._cycle[wl.id] = (len(res.admitted), pos)
        res.admitted.append(Admit(wl.id, q.name, flavor, dict(wl.totals), borrowed, tuple(victims)))


_REASON_TEXT = {
    PreemptionReason.IN_CLUSTER_QUEUE: "prioritization in the queue",
    PreemptionReason.IN_COHORT_RECLAMATION: "reclamation within the cohort",
    PreemptionReason.IN_COHORT_FAIR_SHARING: "fair sharing within the cohort",
    PreemptionReason.IN_COHORT_RECLAIM_WHILE_BORROWING: "reclamation within the cohort while borrowing",
    PreemptionReason.QUOTA_SHRUNK: "quota shrank",
    PreemptionReason.OVER_QUOTA: "over the quota in force",
}


def _taker(wl: Workload, q: QueueRt, victims_queue: QueueRt) -> str:
    """The workload that takes a victim's capacity, as the victim is told: by name within the
    victim's own queue; from another queue only as such (queues are other teams', and a team may not
    learn the names of another team's workloads)."""
    if q.name == victims_queue.name:
        return f"{wl.id!r} of queue {q.name!r}"
    return "a workload of another queue"
