"""When will it start? The quota layer run forward in time on a copy of today's state.

:func:`estimate_starts` takes the live :class:`~rayfleet.quota.QuotaState` (read, never changed),
when each admitted workload is expected to end and how long each pending one is expected to run,
and replays what the scheduler will do if nothing else arrives: on a scratch state holding the same
admissions and the same pending workloads, it runs a scheduling cycle, moves time to the next
expected end (or the next change of a quota schedule), gives that quota back, runs a cycle again,
and so on. A pending workload's estimated start is the moment of the cycle that admits it, with the
same decisions the real cycle takes (flavor order, borrowing, lending limits, preemption, fair
sharing, StrictFIFO), because it is the same code. A workload admitted in the projection holds its
quota for its expected run time; one preempted in it (a quota schedule taking quota back, a
higher priority arriving from the pending set) goes back to the pending set, and its estimate
stays its first start.

Time moves in steps that grow with the distance from ``now`` (ends within ``resolution`` of the
wait so far are taken together, at least ``min_step`` apart), so a projection costs a bounded
number of cycles (``max_cycles``) however many workloads end, and its error is a small share of
the wait it estimates. What it cannot know it says: a workload still pending when the projection
stops gets no time but a reason (nothing running has an expected end, or the horizon was passed).

Pure: no I/O, no clock (``now`` is passed in).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .schedule import changes
from .state import QuotaState
from .types import QuotaConfig, Workload

#: The longest a projection looks ahead (seconds).
HORIZON_S = 14 * 86400.0
#: The most scheduling cycles one projection runs.
MAX_CYCLES = 256
#: Quota schedules repeat within a week (their windows name days of the week): once nothing is
#: expected to end, a week of their changes with no admission means none will come.
SCHEDULE_PERIOD_S = 7 * 86400.0


#: The quota schedules' edges of the last configs projected: (config, from, to, edges) by id(config).
#: A controller projects every few seconds with the same config; its edges are found once per horizon.
_EDGES: dict[int, tuple[QuotaConfig, float, float, tuple[float, ...]]] = {}


def _schedule_edges(config: QuotaConfig, start: float, end: float) -> tuple[float, ...]:
    """The edges of ``config``'s quota schedules in (``start``, ``end``] (a superset is fine: the
    caller looks for the first one after each moment)."""
    got = _EDGES.get(id(config))
    if got is not None and got[0] is config and got[1] <= start and end <= got[2]:
        return got[3]
    edges = changes(config, start, start + 2 * (end - start))
    if len(_EDGES) >= 8:
        _EDGES.pop(next(iter(_EDGES)))
    _EDGES[id(config)] = (config, start, start + 2 * (end - start), edges)
    return edges


@dataclass(frozen=True, slots=True)
class Estimate:
    """``at``: the expected admission (epoch seconds), None when there is no estimate; ``reason``
    in words either way."""

    at: float | None
    reason: str


def estimate_starts(
    state: QuotaState,
    now: float,
    *,
    ends: Mapping[str, float | None],
    runtime: Callable[[str], float | None],
    horizon: float = HORIZON_S,
    max_cycles: int = MAX_CYCLES,
    resolution: float = 0.05,
    min_step: float = 1.0,
    one_head_per_queue: bool = False,
    extra_pending: Iterable[Workload] = (),
) -> dict[str, Estimate]:
    """An :class:`Estimate` for every pending workload of ``state``.

    ``ends``: the expected end of each admitted workload (epoch seconds; None or absent: unknown,
    it holds its quota past the horizon; an end already past counts as ``now``). ``runtime(id)``:
    how long a pending workload is expected to run once admitted (None: unknown).
    ``one_head_per_queue``: the cycles the real scheduler runs (:meth:`QuotaState.schedule`).
    ``extra_pending``: workloads that wait too but are not in ``state`` (a caller that offers quota
    only some of what waits); they get estimates as well."""
    scratch = QuotaState(state.config, now)
    workloads = dict(state.pending)
    for wl in extra_pending:
        if wl.id not in workloads and not state.is_admitted(wl.id):
            workloads[wl.id] = wl
    asked = list(workloads)
    for held in state.admitted.values():
        scratch.restore(held.workload, held.flavor, order=held.order, admitted_at=held.admitted_at)
        workloads[held.workload.id] = held.workload
    for wid in asked:
        scratch.submit(workloads[wid])
    heap: list[tuple[float, str]] = []
    end_of: dict[str, float] = {}      # the end in force of each workload on the heap
    unknown: set[str] = set()          # admitted, no expected end
    for wid in state.admitted:
        end = ends.get(wid)
        if end is None:
            unknown.add(wid)
        else:
            end_of[wid] = max(end, now)
            heapq.heappush(heap, (end_of[wid], wid))
    out: dict[str, Estimate] = {}
    released: list[str] = []            # what the step just taken gave back
    changed = False                     # the step was a quota schedule's change
    t, cycles, limit = now, 0, now + horizon
    edges = _schedule_edges(scratch.config, now, limit)
    k = bisect.bisect_right(edges, now)
    window = edges[k] if k < len(edges) else None   # the next quota-schedule edge after t
    moved = now                                 # the last cycle that admitted, or followed an end
    while scratch.pending and cycles < max_cycles:
        cycles += 1
        res = scratch.schedule(t, one_head_per_queue=one_head_per_queue)
        for p in res.preempted:       # admitted earlier in the projection (or running now): pending again
            end_of.pop(p.victim_id, None)
            unknown.discard(p.victim_id)
            scratch.submit(workloads[p.victim_id])
        if res.admitted or released:
            moved = t
        for a in res.admitted:
            if a.workload_id not in out:   # its first start (a victim later in the projection starts again)
                out[a.workload_id] = Estimate(t, _why(t, now, [w for w in released if workloads[w].queue == a.queue],
                                                      sum(workloads[w].queue != a.queue for w in released), changed))
            run = runtime(a.workload_id)
            if run is None:
                unknown.add(a.workload_id)
            else:
                end_of[a.workload_id] = t + run
                heapq.heappush(heap, (t + run, a.workload_id))
        if not scratch.pending:
            break
        step = max(min_step, resolution * (t - now))
        if window is not None and window <= t:
            k = bisect.bisect_right(edges, t)
            window = edges[k] if k < len(edges) else None
        while heap and end_of.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)      # an end no longer in force (its workload was preempted)
        nxt = heap[0][0] if heap else None
        if nxt is None and (window is None or window - moved > SCHEDULE_PERIOD_S):
            break   # nothing ends any more, and the quota schedules went round their week with no admission
        t = min(x for x in (nxt, window) if x is not None)
        if t > limit:
            break
        changed = window is not None and t == window
        released = []
        last = t
        while heap and heap[0][0] <= t + step:
            end, wid = heapq.heappop(heap)
            if end_of.get(wid) == end:
                del end_of[wid]
                scratch.release(wid)
                released.append(wid)
                last = end
        t = last   # ends taken together: the cycle after the last of them
    for wid in scratch.pending:
        out[wid] = Estimate(None, _unknown(workloads[wid].queue, unknown, workloads, cycles >= max_cycles or t > limit, horizon))
    return {wid: out[wid] for wid in asked if wid in out}


def _why(t: float, now: float, own: list[str], others: int, changed: bool) -> str:
    """Only the waiting workload's own queue's workloads are named (another team's are counted)."""
    if t <= now:
        return "quota for it is free now"
    parts = []
    if own:
        parts.append(", ".join(own[:3]) + (f" and {len(own) - 3} more" if len(own) > 3 else ""))
    if others:
        parts.append(f"{others} workload{'s' if others > 1 else ''} of other queues")
    if not parts:
        return "when the quota schedule changes"
    ends = "ends" if len(own) + others == 1 else "end"
    return f"when {' and '.join(parts)} {ends}" + (" and the quota schedule changes" if changed else "")


def _unknown(queue: str, unknown: set[str], workloads: Mapping[str, Workload], stopped: bool, horizon: float) -> str:
    """Only ``queue``'s workloads are named (another team's are counted)."""
    if stopped:
        return f"not within the projection (the next {horizon / 86400:g} days, or its cycles)"
    if unknown:
        own = sorted(w for w in unknown if workloads[w].queue == queue)
        others = len(unknown) - len(own)
        named = ", ".join(own[:3]) + (" ..." if len(own) > 3 else "")
        who = " and ".join(p for p in (named, f"{others} of other queues" if others else "") if p)
        return f"waits for quota held by workloads with no expected end ({who}: no maxRunDuration, no finished runs of their kind)"
    return "no admitted workload's end would free enough quota for it"
