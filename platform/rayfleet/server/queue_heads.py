"""Which queued jobs a controller pass offers to quota: the heads of each queue, not the backlog.

Kueue's scheduler looks at the head workloads of each ClusterQueue per cycle, in the queue's order
(priority, then creation time); so does a pass here. Per queue, the first ``per_queue`` QUEUED jobs
in that order are read from the store through its ``(kind, state, queue, priority class, seq)``
index (:meth:`~rayfleet.server.store.Store.queue_heads`, a few rows per priority class, merged by
the class's priority value) and only those are decoded (shared reads: a job the controller decoded
or wrote before, with the same stored text, is not decoded again); the jobs behind them are not
read at all, so a pass costs the same with 50 or 5,000 jobs queued.

BestEffortFIFO lets a job behind heads that cannot be admitted go first. Heads that quota looked
at and told to wait are *parked*, as Kueue parks inadmissible heads: the next pass reads the jobs
behind them instead (a cursor per queue and priority class), until quota changes in a way that may
admit them: a release of quota in the queue's own cohort tree (quota is shared within a tree only,
so a release elsewhere cannot admit them), or the quota schedule changing the quotas in force
(every queue); or a job goes back to its queue (requeued after a preemption or disruption, at its
old place, which may be behind a cursor). Then those queues are read from their heads again. A
parked job keeps the waiting message it was given.
How many heads a queue offers adapts to what quota makes of them: ``per_queue`` at first and while
the queue's heads are admitted, down to ``MIN_HEADS`` while quota tells all of them to wait (a
saturated queue offers what Kueue's cycle offers, instead of reading, decoding and offering 16
heads a pass to hear "wait" 16 times), doubling again with each pass that admits from the queue.
Nothing is parked past a head quota did not look at (backing off, or waiting for a calendar window),
so no job is hidden once it becomes eligible. StrictFIFO queues are never parked: their head blocks
the jobs behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass

from ..api import JobState, TrainJob
from .store import HeadRow, Store

#: Heads per queue and pass (the controller's ``heads_per_queue``): what one pass may admit from a
#: queue at most; the jobs behind come up in the next passes.
HEADS_PER_QUEUE = 16

#: The fewest heads a queue offers a pass (while all its heads wait).
MIN_HEADS = 2

QUEUED = JobState.QUEUED.value


@dataclass(frozen=True)
class Head:
    job: TrainJob
    seq: int
    group: tuple[str, str]  # (queue, priority class or '')


class QueueHeads:
    """``priority``: a priority class name (None: none given) to its value now; ``strict``: whether
    a queue is StrictFIFO; ``tree``: the cohort tree a queue's quota is shared in (its root)."""

    def __init__(self, store: Store, priority: Callable[[str | None], int], strict: Callable[[str], bool],
                 per_queue: int = HEADS_PER_QUEUE, tree: Callable[[str], Hashable] = lambda queue: None):
        if per_queue < 1:
            raise ValueError("heads_per_queue must be at least 1")
        self.store = store
        self.priority = priority
        self.strict = strict
        self.per_queue = per_queue
        self.tree = tree
        self._after: dict[tuple[str, str], int] = {}   # parked up to this seq, per (queue, class)
        self._stale_all = False                 # every queue unparked since the last read
        self._stale: set[str] = set()           # these queues unparked since the last read
        self._releases: Mapping[Hashable, int] = {}   # quota's releases per tree, last seen
        self._quotas: object = None                    # the quotas in force, last seen
        self._k: dict[str, int] = {}            # heads a queue offers the next pass (default per_queue)

    def unpark(self, queues: Iterable[str] | None = None) -> None:
        """Quota changed, or a job went back to its queue: these queues (None: every queue) are read
        from their heads again (and their heads read before this are not parked: the pass that read
        them saw an older queue)."""
        if queues is None:
            self._after.clear()
            self._stale_all = True
            return
        qs = set(queues)
        for key in [k for k in self._after if k[0] in qs]:
            del self._after[key]
        self._stale |= qs

    def quota_now(self, releases: Mapping[Hashable, int], quotas_in_force: object) -> None:
        """Before a cycle: quota's releases per cohort tree and the quotas in force (the schedule's
        current config object). New quotas in force may admit any parked head; a release, the
        parked heads of its own tree."""
        if quotas_in_force is not self._quotas:
            self.unpark()
        else:
            freed = {t for t, n in releases.items() if self._releases.get(t) != n}
            if freed:
                self.unpark({q for q, _ in self._after if self.tree(q) in freed})
        self._releases, self._quotas = dict(releases), quotas_in_force

    def read(self) -> list[Head]:
        """The heads of every queue with QUEUED jobs, each queue's in its order."""
        self._stale_all, self._stale = False, set()
        by_queue: dict[str, list[tuple[int, str, HeadRow]]] = {}
        for queue, pclass in self.store.queue_groups("TrainJob", QUEUED):
            prio = self.priority(pclass or None)
            found = self.store.queue_heads("TrainJob", QUEUED, queue, pclass, after=self._after.get((queue, pclass), 0),
                                           limit=self._k.get(queue, self.per_queue))
            by_queue.setdefault(queue, []).extend((-prio, pclass, r) for r in found)
        heads: list[Head] = []
        for queue, rows in by_queue.items():
            rows.sort(key=lambda r: (r[0], r[2].seq))
            for _, pclass, r in rows[:self._k.get(queue, self.per_queue)]:
                rec = self.store.decode("TrainJob", r.row, shared=True)
                if rec is not None:
                    heads.append(Head(rec.doc, r.seq, (queue, pclass)))  # type: ignore[arg-type]
        return heads

    def park(self, heads: Iterable[Head], decided: set[str], admitted: set[str] | None = None) -> None:
        """After a cycle: in each BestEffortFIFO queue, move the cursor of each priority class over
        its leading heads quota decided (admitted or told to wait), stopping at the first it did not
        look at. Nothing is parked in a queue unparked since the heads were read. ``admitted``: the
        heads quota admitted, which size each queue's next offer."""
        heads = list(heads)
        if admitted is not None:
            self._size(heads, decided, admitted)
        if self._stale_all:
            return
        stopped: set[tuple[str, str]] = set()
        for h in sorted(heads, key=lambda h: (h.group, h.seq)):
            if h.group in stopped or h.group[0] in self._stale or self.strict(h.group[0]):
                continue
            if h.job.name in decided:
                self._after[h.group] = h.seq
            else:
                stopped.add(h.group)

    def _size(self, heads: list[Head], decided: set[str], admitted: set[str]) -> None:
        """A queue quota admitted n heads of offers 2n the next pass (at most ``per_queue``); one whose
        offered heads were all told to wait offers ``MIN_HEADS``."""
        took: dict[str, int] = {}   # queue -> heads admitted, for the queues quota decided on
        for h in heads:
            if h.job.name in decided:
                took[h.group[0]] = took.get(h.group[0], 0) + (h.job.name in admitted)
        for queue in took:
            k = min(self.per_queue, max(MIN_HEADS, 2 * took[queue]))
            if k == self.per_queue:
                self._k.pop(queue, None)
            else:
                self._k[queue] = k
