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
from .tree import Node, add_usage, available, over_limit, remove_usage
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
    if not q.in_cohort:
        return False
    usage, sub = q.node.usage, q.node.subtree
    for i in idx:
        if usage[i] > sub[i]:
            return True
    return False


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
    cands = find_candidates(wl, q, idx)
    if not cands:
        return [], cands
    same = [c for c in cands if c.queue is q]
    if len(same) == len(cands):
        return _minimal(req, q, idx, cands, True, None), cands
    threshold = _threshold(q, wl)
    if shares is not None:
        return _fair(wl, req, q, idx, cands, threshold, shares, strategies), cands
    if threshold is not None:
        pool = cands
        if not _under_nominal(q, idx):
            pool = [c for c in cands if c.queue is q or c.wl.priority < threshold]
        return _minimal(req, q, idx, pool, True, threshold), cands
    if _under_nominal(q, idx):
        targets = _minimal(req, q, idx, cands, False, None)
        if targets:
            return targets, cands
    return _minimal(req, q, idx, same, True, None), cands


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


def _minimal(
    req: Req, q: QueueRt, idx: frozenset[int], cands: list[Adm], allow_borrowing: bool, threshold: int | None
) -> list[Target]:
    targets: list[Target] = []
    node = q.node
    ok = False
    for c in cands:
        reason = IN_CQ
        if c.queue is not q:
            if not is_borrowing(c.queue, idx):
                continue
            reason = RECLAIM
            if threshold is not None:
                if c.wl.priority >= threshold:
                    allow_borrowing = False
                else:
                    reason = WHILE_BORROWING
        _remove(c)
        targets.append((c, reason))
        if fits(req, node, allow_borrowing):
            ok = True
            break
    if not ok:
        _restore(targets)
        return []
    targets = _fill_back(targets, req, node, allow_borrowing)
    _restore(targets)
    # Report victims in preemption order.
    order = {id(c): k for k, c in enumerate(cands)}
    targets.sort(key=lambda t: order[id(t[0])])
    return targets


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
