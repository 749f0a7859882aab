"""Fair sharing: Kueue's dominant resource share (DRS) with weights.

A node's share is, over resource names, the largest ratio of its usage above its subtree quota
(summed over flavors) to what its parent could lend it of that resource (permille), divided by the
node's weight. A node using no more than its nominal quota has share 0; a node with weight 0 that
borrows has an infinite share. Admission prefers the lowest share after admission; preemption for
fair sharing takes from the highest share, under the LessThanOrEqualToFinalShare and
LessThanInitialShare strategies.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from .tree import Node, add_usage, remove_usage
from .types import FairSharingStrategy

MAX_SHARE = sys.maxsize


class ShareCalc:
    """Dominant resource shares over one built tree configuration."""

    __slots__ = ("resource_of", "lendable")

    def __init__(self, resource_of: Sequence[str], nodes: Sequence[Node]) -> None:
        self.resource_of = list(resource_of)
        # What a node's parent could lend it, per resource name (Kueue's calculateLendable).
        self.lendable: dict[int, dict[str, int]] = {}
        for node in nodes:
            if node.parent is None:
                continue
            lend: dict[str, int] = {}
            for i, pot in enumerate(node.parent.potential):
                r = self.resource_of[i]
                lend[r] = lend.get(r, 0) + pot
            self.lendable[id(node)] = lend

    def share(self, node: Node) -> int:
        if node.parent is None:
            return 0
        borrowing: dict[str, int] = {}
        res = self.resource_of
        sub = node.subtree
        for i, u in enumerate(node.usage):
            b = u - sub[i]
            if b > 0:
                r = res[i]
                borrowing[r] = borrowing.get(r, 0) + b
        if not borrowing:
            return 0
        if node.weight_milli <= 0:
            return MAX_SHARE
        lend = self.lendable[id(node)]
        drs = 0
        for r in sorted(borrowing):
            lr = lend.get(r, 0)
            if lr > 0:
                ratio = borrowing[r] * 1000 // lr
                if ratio > drs:
                    drs = ratio
        return drs * 1000 // node.weight_milli

    def share_with(self, node: Node, queue: Node, req: Sequence[tuple[int, int]]) -> int:
        """Share of ``node`` (the queue or one of its ancestors) if ``req`` were added to ``queue``."""
        for i, v in req:
            add_usage(queue, i, v)
        try:
            return self.share(node)
        finally:
            for i, v in req:
                remove_usage(queue, i, v)

    def share_without(self, node: Node, queue: Node, req: Sequence[tuple[int, int]]) -> int:
        """Share of ``node`` if ``req`` (admitted in ``queue``) were removed."""
        for i, v in req:
            remove_usage(queue, i, v)
        try:
            return self.share(node)
        finally:
            for i, v in req:
                add_usage(queue, i, v)

    def path_shares(self, queue: Node, req: Sequence[tuple[int, int]] | None) -> tuple[int, ...]:
        """Shares from the top of the tree down to ``queue`` (with ``req`` added): the admission
        order key of hierarchical fair sharing (a tournament decided at the highest level first)."""
        path = queue.path()[:-1]  # without the root, which has no share
        path.reverse()
        if req:
            for i, v in req:
                add_usage(queue, i, v)
        try:
            return tuple(self.share(n) for n in path)
        finally:
            if req:
                for i, v in req:
                    remove_usage(queue, i, v)


def below_lca(a: Node, b: Node) -> tuple[Node, Node]:
    """The ancestors of ``a`` and ``b`` just below their lowest common ancestor (themselves when
    they are siblings or equal)."""
    if a is b:
        return a, b
    pa, pb = a.path(), b.path()
    ids_b = {id(n): k for k, n in enumerate(pb)}
    for k, n in enumerate(pa):
        j = ids_b.get(id(n))
        if j is not None:
            return pa[k - 1] if k > 0 else pa[0], pb[j - 1] if j > 0 else pb[0]
    return pa[-1], pb[-1]


def strategy_fn(strategy: FairSharingStrategy) -> Callable[[float, float, float], bool]:
    """Rule S2-a / S2-b of Kueue's fair sharing KEP: may a preemptor whose share would become
    ``new_preemptor`` take from a target whose share is ``old_target`` (``new_target`` after)?"""
    if strategy == FairSharingStrategy.LESS_THAN_OR_EQUAL_TO_FINAL_SHARE:
        return lambda new_preemptor, old_target, new_target: new_preemptor <= new_target
    return lambda new_preemptor, old_target, new_target: new_preemptor < old_target
