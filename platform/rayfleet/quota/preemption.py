"""Choosing preemption victims (Kueue's classical and fair-sharing preemption), and reclaiming
what is over quota after a quota change.

The search simulates removing candidates from the live tree (and always puts them back): it
removes candidates in order until the preemptor fits, then adds back, newest removal first, every
one it can do without (Kueue's minimalPreemptions). Candidates are ordered: other queues before
the preemptor's own, lower priority first, most recently admitted first. Nothing is preempted for
a workload that still would not fit afterwards.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

from .fairshare import ShareCalc, below_lca
from .runtime import Adm, QueueRt, Req, TreeRt
from .tree import Node, add_usage, available, fits_in_quota, over_limit, remove_usage, within_quota
from .types import PreemptionPolicy, PreemptionReason, Workload

Target = tuple[Adm, PreemptionReason]

IN_CQ = PreemptionReason.IN_CLUSTER_QUEUE
RECLAIM = PreemptionReason.IN_COHORT_RECLAMATION
FAIR = PreemptionReason.IN_COHORT_FAIR_SHARING
WHILE_BORROWING = PreemptionReason.IN_COHORT_RECLAIM_WHILE_BORROWING


def _remove(adm: Adm) -> None:
    node = adm.queue.node
    for i, v in adm.req:
        remove_usage(node, i, v)


def _add(adm: Adm) -> None:
    node = adm.queue.node
    for i, v in adm.req:
        add_usage(node, i, v)


def fits(req: Req, node: Node, allow_borrowing: bool) -> bool:
    usage, sub = node.usage, node.subtree
    for i, v in req:
        if not allow_borrowing and usage[i] + v > sub[i]:
            return False
        if v > available(node, i):
            return False
    return True


def is_borrowing(q: QueueRt, idx: frozenset[int]) -> bool:
    return q.in_cohort and not within_quota(q.node, idx)


def _under_nominal(q: QueueRt, idx: frozenset[int]) -> bool:
    usage, sub = q.node.usage, q.node.subtree
    for i in idx:
        if usage[i] >= sub[i]:
            return False
    return True


def _candidate_key(q: QueueRt) -> Callable[[Adm], tuple[bool, int, int, str]]:
    def key(a: Adm) -> tuple[bool, int, int, str]:
        return (a.queue is q, a.wl.priority, -a.order, a.wl.id)

    return key


def find_candidates(wl: Workload, q: QueueRt, idx: frozenset[int]) -> list[Adm]:
    """Admitted workloads the queue's preemption policy lets ``wl`` preempt, among those using a
    (flavor, resource) that needs preemption, in preemption order."""
    out: list[Adm] = []
    prio = wl.priority
    if q.within != PreemptionPolicy.NEVER:
        lonep = q.lonep
        for a in q.admitted.values():
            ap = a.wl.priority
            if ap > prio:
                continue
            if ap == prio and not (lonep and wl.created < a.wl.created):
                continue
            if a.uses_any(idx):
                out.append(a)
    if q.in_cohort and q.reclaim != PreemptionPolicy.NEVER:
        lower_only = q.reclaim == PreemptionPolicy.LOWER_PRIORITY
        tree: TreeRt = q.tree
        for other in tree.queues:
            if other is q or not other.admitted or not is_borrowing(other, idx):
                continue
            for a in other.admitted.values():
                if lower_only and a.wl.priority >= prio:
                    continue
                if a.uses_any(idx):
                    out.append(a)
    out.sort(key=_candidate_key(q))
    return out


def _threshold(q: QueueRt, wl: Workload) -> int | None:
    """borrowWithinCohort: candidates of other queues strictly below this priority may be
    preempted while borrowing (None: the policy is off)."""
    if not q.bwc:
        return None
    t = wl.priority
    if q.bwc_max is not None and q.bwc_max < t:
        t = q.bwc_max + 1
    return t


def get_targets(
    wl: Workload,
    q: QueueRt,
    req: Req,
    idx: frozenset[int],
    shares: ShareCalc | None,
    strategies: Sequence[Callable[[int, int, int], bool]],
) -> tuple[list[Target], list[Adm]]:
    """Victims that let ``wl`` fit on the flavor of ``req`` (empty if none would), and the
    candidates the policy allowed."""
    if shares is None:
        return _classical(wl, q, req, idx)
    cands = find_candidates(wl, q, idx)
    if not cands:
        return [], cands
    if all(c.queue is q for c in cands):
        return _own_queue(req, q, cands), cands
    return _fair(wl, req, q, idx, cands, _threshold(q, wl), shares, strategies), cands


# ---------------------------------------------------------------- classical, in a cohort tree
#
# Kueue's classical preemption over hierarchical cohorts: the preemptor's queue looks for victims
# level by level up its path, at each cohort among the subtrees it has not looked at yet, and only
# in queues (and cohorts) that use more than their own quota. Where the preemptor's request fits
# within the quota of its own queue, or of a cohort on its path below the level, it has the
# *hierarchical advantage*: it reclaims there whatever the victims' priority allows under
# reclaimWithinCohort, even while it borrows inside its own subtree. Elsewhere victims are taken
# by priority, and borrowWithinCohort decides whether the preemptor may borrow after preempting.

_HIERARCHICAL, _WITHOUT_BORROWING, _WHILE_BORROWING, _WITHIN = range(4)


class _Cand:
    __slots__ = ("adm", "lca", "variant")

    def __init__(self, adm: Adm, lca: Node | None, variant: int) -> None:
        self.adm, self.lca, self.variant = adm, lca, variant


def _priority_allows(wl: Workload, q: QueueRt, a: Adm) -> bool:
    """The preemptor's queue's policy (withinClusterQueue for its own workloads,
    reclaimWithinCohort for others') lets ``wl`` preempt ``a`` by priority."""
    prio, ap = wl.priority, a.wl.priority
    if a.queue is q:
        if q.within == PreemptionPolicy.NEVER or ap > prio:
            return False
        return ap < prio or (q.lonep and wl.created < a.wl.created)
    if q.reclaim == PreemptionPolicy.NEVER:
        return False
    return q.reclaim == PreemptionPolicy.ANY or ap < prio


def _variant(wl: Workload, q: QueueRt, a: Adm, advantage: bool) -> int:
    if advantage:
        return _HIERARCHICAL
    if not q.bwc or a.wl.priority >= wl.priority or (q.bwc_max is not None and a.wl.priority > q.bwc_max):
        return _WITHOUT_BORROWING
    return _WHILE_BORROWING


def _collect(wl: Workload, q: QueueRt, req: Req, idx: frozenset[int]) -> tuple[list[_Cand], list[_Cand], list[_Cand]]:
    """(hierarchical, by priority, own queue) candidates, each list in preemption order."""
    key = _candidate_key(q)
    same = [_Cand(a, None, _WITHIN) for a in q.admitted.values() if a.uses_any(idx) and _priority_allows(wl, q, a)]
    hier: list[_Cand] = []
    prio: list[_Cand] = []
    if q.in_cohort and q.reclaim != PreemptionPolicy.NEVER:
        queues = q.tree.by_node
        need: dict[int, int] = {}
        for i, v in req:
            need[i] = need.get(i, 0) + v
        advantage, rest = fits_in_quota(q.node, need)
        below: Node = q.node
        level = q.node.parent
        while level is not None:
            out = hier if advantage else prio

            def visit(cohort: Node, lca: Node = level, skip: Node = below, adv: bool = advantage, out: list[_Cand] = out) -> None:
                for child in cohort.children:
                    if child is skip or child is q.node or within_quota(child, idx):
                        continue
                    if not child.is_queue:
                        visit(child)
                        continue
                    other = queues.get(id(child))
                    for a in other.admitted.values() if other is not None else ():
                        if a.uses_any(idx) and _priority_allows(wl, q, a):
                            out.append(_Cand(a, lca, _variant(wl, q, a, adv)))

            visit(level)
            fits_here, rest = fits_in_quota(level, rest)
            advantage = advantage or fits_here
            below, level = level, level.parent
    for lst in (hier, prio, same):
        lst.sort(key=lambda c: key(c.adm))
    return hier, prio, same


def _valid(c: _Cand, q: QueueRt, idx: frozenset[int], borrow: bool) -> bool:
    """A candidate still worth preempting, as the search has removed others: its queue, and every
    cohort between it and the level it was found at, still over quota."""
    a = c.adm
    if a.queue is q:
        return True
    if borrow and c.variant == _WITHOUT_BORROWING:
        return False
    node: Node | None = a.queue.node
    while node is not None and node is not c.lca:
        if within_quota(node, idx):
            return False
        node = node.parent
    return True


def _classical(wl: Workload, q: QueueRt, req: Req, idx: frozenset[int]) -> tuple[list[Target], list[Adm]]:
    hier, prio, same = _collect(wl, q, req, idx)
    cands = hier + prio + same
    if not cands:
        return [], []
    # Kueue tries with and without the preemptor borrowing afterwards, in this order
    if (not hier and not prio) or (not q.bwc and not _under_nominal(q, idx)):
        attempts: tuple[bool, ...] = (True,)
    elif not q.bwc and not hier:
        attempts = (False, True)
    else:
        attempts = (True, False)
    node = q.node
    for borrow in attempts:
        targets: list[Target] = []
        for c in cands:
            if not _valid(c, q, idx, borrow):
                continue
            _remove(c.adm)
            reason = IN_CQ if c.variant == _WITHIN else WHILE_BORROWING if c.variant == _WHILE_BORROWING else RECLAIM
            targets.append((c.adm, reason))
            if fits(req, node, borrow):
                targets = _fill_back(targets, req, node, borrow)
                _restore(targets)
                order = {id(x.adm): k for k, x in enumerate(cands)}
                targets.sort(key=lambda t: order[id(t[0])])
                return targets, [x.adm for x in cands]
        _restore(targets)
    return [], [x.adm for x in cands]


def _fill_back(targets: list[Target], req: Req, node: Node, allow_borrowing: bool) -> list[Target]:
    for k in range(len(targets) - 2, -1, -1):
        adm = targets[k][0]
        _add(adm)
        if fits(req, node, allow_borrowing):
            targets[k] = targets[-1]
            targets.pop()
        else:
            _remove(adm)
    return targets


def _restore(targets: list[Target]) -> None:
    for adm, _ in targets:
        _add(adm)


def _own_queue(req: Req, q: QueueRt, cands: list[Adm]) -> list[Target]:
    """Victims among the preemptor's own queue's workloads (``cands``, in preemption order), the
    preemptor allowed to borrow afterwards."""
    targets: list[Target] = []
    node = q.node
    for c in cands:
        _remove(c)
        targets.append((c, IN_CQ))
        if fits(req, node, True):
            targets = _fill_back(targets, req, node, True)
            _restore(targets)
            order = {id(c): k for k, c in enumerate(cands)}
            targets.sort(key=lambda t: order[id(t[0])])   # reported in preemption order
            return targets
    _restore(targets)
    return []


class _CandQueue:
    __slots__ = ("q", "node", "pre_node", "wls", "share")

    def __init__(self, q: QueueRt, node: Node, pre_node: Node, share: int) -> None:
        self.q = q
        self.node = node
        self.pre_node = pre_node
        self.wls: list[Adm] = []
        self.share = share


def _fair(
    wl: Workload,
    req: Req,
    q: QueueRt,
    idx: frozenset[int],
    cands: list[Adm],
    threshold: int | None,
    shares: ShareCalc,
    strategies: Sequence[Callable[[int, int, int], bool]],
) -> list[Target]:
    """Kueue's fair-sharing preemption: take from the queues with the highest share first, as long
    as the preemptor's share after admission stays within the strategy's bound."""
    node = q.node

    def build(cs: list[Adm], first_only: bool) -> tuple[list[tuple[int, str]], dict[str, _CandQueue]]:
        groups: dict[str, _CandQueue] = {}
        for c in cs:
            g = groups.get(c.queue.name)
            if g is None:
                pre_node, tgt_node = below_lca(node, c.queue.node)
                g = groups[c.queue.name] = _CandQueue(c.queue, tgt_node, pre_node, shares.share(tgt_node))
                g.wls.append(c)
            elif not first_only:
                g.wls.append(c)
        heap = [(-g.share, name) for name, g in groups.items()]
        heapq.heapify(heap)
        return heap, groups

    def preemptor_share(g: _CandQueue) -> int:
        return shares.share_with(g.pre_node, node, req)

    targets: list[Target] = []
    ok = False
    retry: list[Adm] = []
    heap, groups = build(cands, False)
    while heap and not ok:
        _, name = heapq.heappop(heap)
        g = groups[name]
        if g.q is q:
            c = g.wls.pop(0)
            _remove(c)
            targets.append((c, IN_CQ))
            if fits(req, node, True):
                ok = True
                break
            if g.wls:
                g.share = shares.share(g.node)
                heapq.heappush(heap, (-g.share, name))
            continue
        new_pre = preemptor_share(g)
        for k, c in enumerate(g.wls):
            below = threshold is not None and c.wl.priority < threshold
            new_cand = shares.share_without(g.node, c.queue.node, c.req)
            allowed = strategies[0](new_pre, g.share, new_cand)
            if below or allowed:
                _remove(c)
                targets.append((c, FAIR if allowed else WHILE_BORROWING))
                if fits(req, node, True):
                    ok = True
                    break
                g.wls = g.wls[k + 1 :]
                if g.wls and is_borrowing(g.q, idx):
                    g.share = shares.share(g.node)
                    heapq.heappush(heap, (-g.share, name))
                break
            retry.append(c)
    if not ok and len(strategies) > 1 and retry:
        heap, groups = build(retry, True)
        while heap and not ok:
            _, name = heapq.heappop(heap)
            g = groups[name]
            if strategies[1](preemptor_share(g), g.share, 0):
                c = g.wls[0]
                _remove(c)
                targets.append((c, FAIR))
                if fits(req, node, True):
                    ok = True
    if not ok:
        _restore(targets)
        return []
    targets = _fill_back(targets, req, node, True)
    _restore(targets)
    return targets


def reclaim_over_limits(tree: TreeRt, n: int) -> list[Adm]:
    """Workloads to evict so that no node of ``tree`` is above its limits (after quota shrank).

    For each node, bottom-up, and each over-limit (flavor, resource): candidates are admitted
    workloads under the node using it, from borrowing queues first, then lowest priority, then most
    recently admitted; removed until the node is within limits, then added back where possible.
    Evicted workloads are removed from the tree's usage; the caller drops their bookkeeping.
    """
    victims: list[Adm] = []
    under: dict[int, list[QueueRt]] = {}
    for q in tree.queues:
        for anc in q.node.path():
            under.setdefault(id(anc), []).append(q)
    gone: set[int] = set()
    for node in tree.nodes_bottom_up:
        for i in range(n):
            if over_limit(node, i) <= 0:
                continue
            cands = [
                a
                for q in under.get(id(node), ())
                for a in q.admitted.values()
                if id(a) not in gone and any(j == i for j, _ in a.req)
            ]
            cands.sort(key=lambda a: (a.queue.node.usage[i] <= a.queue.node.subtree[i], a.wl.priority, -a.order, a.wl.id))
            removed: list[Adm] = []
            for a in cands:
                before = over_limit(node, i)
                _remove(a)
                if over_limit(node, i) >= before:
                    _add(a)
                    continue
                removed.append(a)
                if over_limit(node, i) <= 0:
                    break
            for k in range(len(removed) - 2, -1, -1):
                a = removed[k]
                _add(a)
                if over_limit(node, i) <= 0:
                    removed.pop(k)
                else:
                    _remove(a)
            for a in removed:
                gone.add(id(a))
                victims.append(a)
    return victims
