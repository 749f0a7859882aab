"""Quota arithmetic over the cohort tree (Kueue's resource nodes).

Queues are leaves, cohorts inner nodes; a queue without a cohort is a tree of its own. Every
(flavor, resource) pair has a small integer index, and each node keeps lists indexed by it:

- ``subtree``: the node's nominal quota plus what its children lend it (child subtree minus the
  child's guaranteed part);
- ``guar``: the guaranteed part, ``max(0, subtree - lendingLimit)`` (0 without a lending limit);
  it is never lent and never shows up in the parent's usage;
- ``usage``: for a queue, what its admitted workloads use; for a cohort, the sum of its children's
  usage above their guaranteed parts;
- ``blimit``: the borrowing limit (None: unlimited).

``available(node, i)`` is what the node may still take: its unused guaranteed quota plus what its
parent has available, capped by its borrowing limit. Usage above the guaranteed part bubbles up.
"""

from __future__ import annotations

from .types import ResourceQuota


class Node:
    __slots__ = (
        "name",
        "is_queue",
        "parent",
        "children",
        "quotas",
        "subtree",
        "guar",
        "usage",
        "blimit",
        "llimit",
        "potential",
        "weight_milli",
        "depth",
    )

    def __init__(self, name: str, is_queue: bool, n: int, weight: float) -> None:
        self.name = name
        self.is_queue = is_queue
        self.parent: Node | None = None
        self.children: list[Node] = []
        self.quotas: dict[int, ResourceQuota] = {}
        self.subtree = [0] * n
        self.guar = [0] * n
        self.usage = [0] * n
        self.blimit: list[int | None] = [None] * n
        self.llimit: list[int | None] = [None] * n
        self.potential = [0] * n
        self.weight_milli = round(weight * 1000)
        self.depth = 0

    def root(self) -> Node:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def path(self) -> list[Node]:
        """This node and its ancestors, bottom-up."""
        out = [self]
        node = self.parent
        while node is not None:
            out.append(node)
            node = node.parent
        return out

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Node({self.name!r})"


def available(node: Node, i: int) -> int:
    """How much of index ``i`` the node may still take (negative when over-admitted)."""
    u = node.usage[i]
    parent = node.parent
    if parent is None:
        return node.subtree[i] - u
    pa = available(parent, i)
    g = node.guar[i]
    bl = node.blimit[i]
    if bl is not None:
        used_in_parent = u - g if u > g else 0
        cap = node.subtree[i] - g - used_in_parent + bl
        if cap < pa:
            pa = cap
    return (g - u if g > u else 0) + pa


def within_quota(node: Node, idx: frozenset[int]) -> bool:
    """The node uses no more than its own (subtree) quota of any of ``idx``."""
    usage, sub = node.usage, node.subtree
    return all(usage[i] <= sub[i] for i in idx)


def local_available(node: Node, i: int) -> int:
    """What the node holds of ``i`` without asking its parent (a root: all it has left)."""
    if node.parent is None:
        return max(0, node.subtree[i] - node.usage[i])
    return max(0, node.guar[i] - node.usage[i])


def fits_in_quota(node: Node, need: dict[int, int]) -> tuple[bool, dict[int, int]]:
    """Whether ``need`` fits within the node's quota as it is used now, and what of it is left
    for the node's parent to give."""
    ok = True
    rest: dict[int, int] = {}
    for i, v in need.items():
        if node.usage[i] + v > node.subtree[i]:
            ok = False
        rest[i] = max(0, v - local_available(node, i))
    return ok, rest


def may_reclaim_in_hierarchy(node: Node, i: int, v: int) -> bool:
    """A queue that must borrow ``v`` of ``i`` may still preempt for it without borrowWithinCohort
    when a cohort on its path, below the root, would hold the request within its own quota
    (Kueue's lowest subtree that fits): it reclaims from the subtrees beside it."""
    if node.parent is None:
        return False
    rest = v - local_available(node, i)
    anc: Node | None = node.parent
    while anc is not None:
        if anc.usage[i] + rest <= anc.subtree[i]:
            return anc.parent is not None
        rest -= local_available(anc, i)
        anc = anc.parent
    return False


def add_usage(node: Node, i: int, v: int) -> None:
    while True:
        g = node.guar[i]
        u = node.usage[i]
        local = g - u if g > u else 0
        node.usage[i] = u + v
        parent = node.parent
        if parent is None or v <= local:
            return
        v -= local
        node = parent


def remove_usage(node: Node, i: int, v: int) -> None:
    while True:
        stored = node.usage[i] - node.guar[i]
        node.usage[i] -= v
        parent = node.parent
        if stored <= 0 or parent is None:
            return
        if stored < v:
            v = stored
        node = parent


def over_limit(node: Node, i: int) -> int:
    """How far the node's usage of ``i`` is above what it may hold (<= 0 when within limits).

    A root may hold its subtree quota; a node with a borrowing limit its subtree quota plus that
    limit. Other nodes are bounded only through their parent.
    """
    if node.parent is None:
        return node.usage[i] - node.subtree[i]
    bl = node.blimit[i]
    if bl is None:
        return 0
    return node.usage[i] - node.subtree[i] - bl


def build_quotas(nodes_bottom_up: list[Node], n: int) -> None:
    """Fill subtree/guar/blimit/llimit from ``quotas`` (children must come before parents)."""
    for node in nodes_bottom_up:
        sub = [0] * n
        for i, rq in node.quotas.items():
            sub[i] = rq.nominal
        for child in node.children:
            csub, cg = child.subtree, child.guar
            for i in range(n):
                sub[i] += csub[i] - cg[i]
        node.subtree = sub
        guar = [0] * n
        blimit: list[int | None] = [None] * n
        llimit: list[int | None] = [None] * n
        for i, rq in node.quotas.items():
            blimit[i] = rq.borrowing_limit
            llimit[i] = rq.lending_limit
            if rq.lending_limit is not None:
                guar[i] = max(0, sub[i] - rq.lending_limit)
        node.guar, node.blimit, node.llimit = guar, blimit, llimit


def build_potential(nodes_top_down: list[Node], n: int) -> None:
    """The most each node could ever take of each index, with no usage anywhere (parents first)."""
    for node in nodes_top_down:
        parent = node.parent
        if parent is None:
            node.potential = list(node.subtree)
            continue
        pot = [0] * n
        for i in range(n):
            a = node.guar[i] + parent.potential[i]
            bl = node.blimit[i]
            if bl is not None and node.subtree[i] + bl < a:
                a = node.subtree[i] + bl
            pot[i] = a
        node.potential = pot
