"""Value types of the quota layer: configuration, workloads and decisions.

Everything here is a plain frozen dataclass: no pydantic, no I/O. Resource amounts are ``int`` in
canonical units (``cpu`` in millicores, ``memory`` in bytes, accelerators as counts). Names follow
Kueue v1beta2 (nominalQuota, borrowingLimit, lendingLimit, reclaimWithinCohort, ...).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from ..api.job import PendingReason as PendingReason
from ..api.queue import FlavorPreference as FlavorPreference
from ..api.queue import QueueingStrategy as QueueingStrategy  # the same Kueue values as the api
from ..api.queue import WhenCanBorrow as WhenCanBorrow
from ..api.queue import WhenCanPreempt as WhenCanPreempt

FlavorResource = tuple[str, str]  # (flavor, resource)


class QuotaConfigError(ValueError):
    """The quota configuration is inconsistent; ``field`` names the offending field."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class PreemptionPolicy(StrEnum):
    """Values of ``withinClusterQueue`` (Never, LowerPriority, LowerOrNewerEqualPriority) and
    ``reclaimWithinCohort`` (Never, LowerPriority, Any)."""

    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"
    LOWER_OR_NEWER_EQUAL_PRIORITY = "LowerOrNewerEqualPriority"
    ANY = "Any"


class PreemptionReason(StrEnum):
    """Why a workload was preempted, in Kueue's words, plus QuotaShrunk (a quota schedule or a new
    config took the capacity back) and OverQuota (a state restored under other quotas is over the
    quota in force: :meth:`~rayfleet.quota.QuotaState.reconcile`)."""

    IN_CLUSTER_QUEUE = "InClusterQueue"
    IN_COHORT_RECLAMATION = "InCohortReclamation"
    IN_COHORT_FAIR_SHARING = "InCohortFairSharing"
    IN_COHORT_RECLAIM_WHILE_BORROWING = "InCohortReclaimWhileBorrowing"
    QUOTA_SHRUNK = "QuotaShrunk"
    OVER_QUOTA = "OverQuota"


class FairSharingStrategy(StrEnum):
    LESS_THAN_OR_EQUAL_TO_FINAL_SHARE = "LessThanOrEqualToFinalShare"
    LESS_THAN_INITIAL_SHARE = "LessThanInitialShare"


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class ResourceQuota:
    """Quota of one (flavor, resource) of a queue or cohort.

    ``lending_limit`` is the part of ``nominal`` that may be lent to the cohort (None: all of it);
    the rest (nominal - lendingLimit) is guaranteed to the queue. ``borrowing_limit`` is the most
    the queue may use above its nominal quota (None: no limit but the cohort's capacity).
    """

    nominal: int
    borrowing_limit: int | None = None
    lending_limit: int | None = None


@dataclass(frozen=True, slots=True)
class BorrowWithinCohort:
    """Kueue's ``borrowWithinCohort``: preempt lower-priority workloads of other queues while borrowing.

    ``policy`` is "Never" or "LowerPriority"; only workloads with priority <= ``max_priority_threshold``
    (when set) may be preempted that way.
    """

    policy: str = "Never"
    max_priority_threshold: int | None = None


@dataclass(frozen=True, slots=True)
class PreemptionConfig:
    within_cluster_queue: PreemptionPolicy = PreemptionPolicy.NEVER
    reclaim_within_cohort: PreemptionPolicy = PreemptionPolicy.NEVER
    borrow_within_cohort: BorrowWithinCohort = BorrowWithinCohort()


@dataclass(frozen=True, slots=True)
class FlavorFungibility:
    when_can_borrow: WhenCanBorrow = WhenCanBorrow.BORROW
    when_can_preempt: WhenCanPreempt = WhenCanPreempt.TRY_NEXT_FLAVOR
    #: Which of the flavors found wins when each needs borrowing or preemption (both TryNextFlavor).
    preference: FlavorPreference = FlavorPreference.BORROWING_OVER_PREEMPTION


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class QuotaWindow:
    """A time window in which some quotas of a queue are different (see ``quota.schedule``).

    ``days`` are day names (mon..sun) on which the window *starts*; ``start``/``end`` are "HH:MM" in
    ``timezone``; an end at or before the start wraps past midnight. ``quotas`` maps
    (flavor, resource) to the quota in force during the window; a None borrowing/lending limit in an
    override keeps the queue's own limit.
    """

    name: str
    start: str
    end: str
    quotas: Mapping[FlavorResource, ResourceQuota]
    days: tuple[str, ...] = DAYS
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A queue (Kueue ClusterQueue).

    ``flavors`` is the flavor order (the compute class order); ``quotas`` gives a quota per
    (flavor, resource). Every flavor in ``flavors`` should have quota entries; a resource the queue
    gives quota for on no flavor at all is not covered, and a workload asking for it cannot be
    admitted through this queue (as in Kueue).
    """

    name: str
    flavors: tuple[str, ...]
    quotas: Mapping[FlavorResource, ResourceQuota]
    cohort: str | None = None
    queueing_strategy: QueueingStrategy = QueueingStrategy.BEST_EFFORT_FIFO
    preemption: PreemptionConfig = PreemptionConfig()
    flavor_fungibility: FlavorFungibility = FlavorFungibility()
    fair_share_weight: float = 1.0
    schedule: tuple[QuotaWindow, ...] = ()


@dataclass(frozen=True, slots=True)
class CohortConfig:
    """A cohort: queues (and child cohorts) that lend each other idle quota.

    A cohort may have a ``parent`` (hierarchical cohorts) and quota of its own (Kueue's Cohort
    ``resourceGroups``), shared by its members; its ``lending_limit``/``borrowing_limit`` bound what
    it lends to / borrows from its parent.
    """

    name: str
    parent: str | None = None
    quotas: Mapping[FlavorResource, ResourceQuota] = field(default_factory=dict)
    fair_share_weight: float = 1.0


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    queues: tuple[QueueConfig, ...]
    cohorts: tuple[CohortConfig, ...] = ()
    fair_sharing: bool = False
    fair_sharing_strategies: tuple[FairSharingStrategy, ...] = (
        FairSharingStrategy.LESS_THAN_OR_EQUAL_TO_FINAL_SHARE,
        FairSharingStrategy.LESS_THAN_INITIAL_SHARE,
    )

    def validate(self) -> None:
        """Raise QuotaConfigError for the first inconsistency found."""
        cohorts: dict[str, CohortConfig] = {}
        for i, c in enumerate(self.cohorts):
            if not c.name:
                raise QuotaConfigError(f"cohorts.{i}.name", "must not be empty")
            if c.name in cohorts:
                raise QuotaConfigError(f"cohorts.{i}.name", f"cohort {c.name!r} defined twice")
            cohorts[c.name] = c
        for i, c in enumerate(self.cohorts):
            if c.parent is not None and c.parent not in cohorts:
                raise QuotaConfigError(f"cohorts.{i}.parent", f"unknown cohort {c.parent!r}")
            seen = {c.name}
            cur = c.parent
            while cur is not None:
                if cur in seen:
                    raise QuotaConfigError(f"cohorts.{i}.parent", f"cohort cycle through {cur!r}")
                seen.add(cur)
                cur = cohorts[cur].parent
            if c.fair_share_weight < 0:
                raise QuotaConfigError(f"cohorts.{i}.fairShareWeight", "must not be negative")
            _check_quotas(c.quotas, f"cohorts.{i}.quotas", None, cohort=True)
        names: set[str] = set()
        for i, q in enumerate(self.queues):
            if not q.name:
                raise QuotaConfigError(f"queues.{i}.name", "must not be empty")
            if q.name in names:
                raise QuotaConfigError(f"queues.{i}.name", f"queue {q.name!r} defined twice")
            names.add(q.name)
            if q.cohort is not None and q.cohort not in cohorts:
                raise QuotaConfigError(f"queues.{i}.cohort", f"unknown cohort {q.cohort!r}")
            if len(set(q.flavors)) != len(q.flavors):
                raise QuotaConfigError(f"queues.{i}.flavors", "a flavor is listed twice")
            _check_quotas(q.quotas, f"queues.{i}.quotas", set(q.flavors))
            if q.fair_share_weight < 0:
                raise QuotaConfigError(f"queues.{i}.fairShareWeight", "must not be negative")
            bwc = q.preemption.borrow_within_cohort
            if bwc.policy not in ("Never", "LowerPriority"):
                raise QuotaConfigError(f"queues.{i}.preemption.borrowWithinCohort.policy", f"unknown policy {bwc.policy!r}")
            if q.preemption.within_cluster_queue == PreemptionPolicy.ANY:
                raise QuotaConfigError(f"queues.{i}.preemption.withinClusterQueue", "Any is not a withinClusterQueue policy")
            if q.preemption.reclaim_within_cohort == PreemptionPolicy.LOWER_OR_NEWER_EQUAL_PRIORITY:
                raise QuotaConfigError(f"queues.{i}.preemption.reclaimWithinCohort", "LowerOrNewerEqualPriority is not a reclaimWithinCohort policy")
            for w, window in enumerate(q.schedule):
                path = f"queues.{i}.schedule.{w}"
                _check_window(window, path)
                for fr in window.quotas:
                    if fr not in q.quotas:
                        raise QuotaConfigError(f"{path}.quotas", f"the queue has no quota for {fr[1]} on flavor {fr[0]!r} to change")
                _check_quotas(
                    {fr: merge_quota(q.quotas[fr], rq) for fr, rq in window.quotas.items()}, f"{path}.quotas", None
                )


def merge_quota(base: ResourceQuota, override: ResourceQuota) -> ResourceQuota:
    """A window's quota over the queue's own: None limits keep the queue's; a kept lending limit
    above the window's nominal quota is capped at it."""
    lending = base.lending_limit if override.lending_limit is None else override.lending_limit
    if lending is not None and override.lending_limit is None and lending > override.nominal:
        lending = override.nominal
    return ResourceQuota(
        nominal=override.nominal,
        borrowing_limit=base.borrowing_limit if override.borrowing_limit is None else override.borrowing_limit,
        lending_limit=lending,
    )


def _check_quotas(
    quotas: Mapping[FlavorResource, ResourceQuota], path: str, flavors: set[str] | None, *, cohort: bool = False
) -> None:
    for (flavor, resource), rq in quotas.items():
        where = f"{path}[{flavor}/{resource}]"
        if flavors is not None and flavor not in flavors:
            raise QuotaConfigError(where, f"flavor {flavor!r} is not in the queue's flavor order")
        if rq.nominal < 0:
            raise QuotaConfigError(f"{where}.nominalQuota", "must not be negative")
        if rq.borrowing_limit is not None and rq.borrowing_limit < 0:
            raise QuotaConfigError(f"{where}.borrowingLimit", "must not be negative")
        if rq.lending_limit is not None:
            if rq.lending_limit < 0:
                raise QuotaConfigError(f"{where}.lendingLimit", "must not be negative")
            # A cohort's lending limit bounds its whole subtree (its members' quota too).
            if rq.lending_limit > rq.nominal and not cohort:
                raise QuotaConfigError(f"{where}.lendingLimit", f"{rq.lending_limit} exceeds nominalQuota {rq.nominal}")


def parse_hhmm(text: str) -> int:
    """Minutes since midnight of "HH:MM" (24:00 allowed as the end of day)."""
    try:
        hh, mm = text.split(":")
        h, m = int(hh), int(mm)
    except ValueError:
        raise ValueError(f"{text!r} is not a time of day HH:MM") from None
    if not (0 <= m < 60 and (0 <= h < 24 or (h == 24 and m == 0))):
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    return h * 60 + m


def _check_window(window: QuotaWindow, path: str) -> None:
    for key in ("start", "end"):
        try:
            parse_hhmm(getattr(window, key))
        except ValueError as e:
            raise QuotaConfigError(f"{path}.{key}", str(e)) from None
    for d in window.days:
        if d not in DAYS:
            raise QuotaConfigError(f"{path}.days", f"unknown day {d!r}; expected one of {', '.join(DAYS)}")
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(window.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise QuotaConfigError(f"{path}.timezone", f"unknown time zone {window.timezone!r}") from None


# ---------------------------------------------------------------- workloads


@dataclass(frozen=True, slots=True)
class PodSet:
    """``count`` hosts, each asking for ``resources``."""

    count: int
    resources: Mapping[str, int]
    name: str = "main"

    def __hash__(self) -> int:
        return hash((self.count, self.name, tuple(sorted(self.resources.items()))))


@dataclass(frozen=True, slots=True)
class Workload:
    """A gang: admitted whole, on one flavor for all of its pod sets, or not at all.

    ``flavors`` restricts the flavors it may run on (e.g. by accelerator type); None means any
    flavor of its queue, in the queue's order. ``created`` orders workloads of equal priority
    (seconds; earlier first).
    """

    id: str
    queue: str
    podsets: tuple[PodSet, ...]
    priority: int = 0
    created: float = 0.0
    flavors: tuple[str, ...] | None = None
    # Derived, computed once.
    totals: tuple[tuple[str, int], ...] = field(init=False, repr=False, compare=False)
    order_key: tuple[int, float, str] = field(init=False, repr=False, compare=False)
    signature: tuple[Any, ...] = field(init=False, repr=False, compare=False)
    # Memo keys (strings cache their hash): same request shape and priority, and the same plus
    # creation time (LowerOrNewerEqualPriority makes creation time matter for preemption).
    memo_key: str = field(init=False, repr=False, compare=False)
    memo_key_created: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sums: dict[str, int] = {}
        for ps in self.podsets:
            if ps.count < 0:
                raise ValueError(f"workload {self.id}: pod set {ps.name!r} has a negative count")
            for r, v in ps.resources.items():
                if v < 0:
                    raise ValueError(f"workload {self.id}: negative request for {r}")
                if v and ps.count:
                    sums[r] = sums.get(r, 0) + v * ps.count
        totals = tuple(sorted(sums.items()))
        object.__setattr__(self, "totals", totals)
        object.__setattr__(self, "order_key", (-self.priority, self.created, self.id))
        object.__setattr__(self, "signature", (totals, self.flavors))
        key = sys.intern(f"{totals!r}|{self.flavors!r}|{self.priority}")
        object.__setattr__(self, "memo_key", key)
        object.__setattr__(self, "memo_key_created", f"{key}|{self.created!r}")

    def total(self) -> dict[str, int]:
        return dict(self.totals)

    def __hash__(self) -> int:
        return hash(self.id)


# ---------------------------------------------------------------- decisions


class Blocking(NamedTuple):
    """A quota that keeps a workload out: on ``flavor``, ``requested`` of ``resource`` but only
    ``available`` is left to the queue (after borrowing, within its limits)."""

    flavor: str
    resource: str
    requested: int
    available: int


@dataclass(slots=True)
class Admit:
    """Admit ``workload_id`` on ``flavor``; ``usage`` is its charge by resource and ``borrowed`` the
    part of it above the queue's nominal quota. ``preempted`` lists victims that must be stopped
    first (each also appears as a :class:`Preempt`)."""

    workload_id: str
    queue: str
    flavor: str
    usage: Mapping[str, int]
    borrowed: Mapping[str, int]
    preempted: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "workload": self.workload_id,
            "queue": self.queue,
            "flavor": self.flavor,
            "usage": dict(self.usage),
            "borrowed": {k: v for k, v in self.borrowed.items() if v},
        }
        if self.preempted:
            out["preempted"] = list(self.preempted)
        return out


@dataclass(slots=True)
class Preempt:
    """Stop ``victim_id`` (admitted in ``victim_queue``); ``preemptor_id`` is None when a quota
    change, not a workload, takes the capacity back."""

    victim_id: str
    victim_queue: str
    preemptor_id: str | None
    reason: PreemptionReason
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.victim_id,
            "queue": self.victim_queue,
            "preemptor": self.preemptor_id,
            "reason": str(self.reason),
            "message": self.message,
        }


class Wait(NamedTuple):
    """``workload_id`` stays pending: ``position`` in its queue (0 = head), ``reason`` in words (and
    as a ``code``), the ``blocking`` quotas, and ``could_preempt``: admitted workloads the preemption
    policy would allow it to preempt (not enough of them, or none would help).

    A NamedTuple of strings, ints and tuples: a cycle makes one per waiting workload, and such
    tuples cost the garbage collector nothing once it has looked at them.
    """

    workload_id: str
    queue: str
    position: int
    reason: str
    blocking: tuple[Blocking, ...] = ()
    could_preempt: tuple[str, ...] = ()
    #: ``reason`` as a code (:class:`rayfleet.api.PendingReason`).
    code: str = PendingReason.WAITING_FOR_QUOTA.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload_id,
            "queue": self.queue,
            "position": self.position,
            "reason": self.reason,
            "code": self.code,
            "blocking": [b._asdict() for b in self.blocking],
            "couldPreempt": list(self.could_preempt),
        }


@dataclass(slots=True)
class CycleResult:
    """What one scheduling cycle decided, in decision order."""

    now: float
    admitted: list[Admit] = field(default_factory=list)
    preempted: list[Preempt] = field(default_factory=list)
    #: By queue name, then place in the queue.
    waiting: list[Wait] = field(default_factory=list)
    #: True when some pending workloads were not considered (one-head-per-queue mode only).
    more: bool = False

    @property
    def decisions(self) -> int:
        return len(self.admitted) + len(self.preempted) + len(self.waiting)

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "admitted": [a.to_dict() for a in self.admitted],
            "preempted": [p.to_dict() for p in self.preempted],
            "waiting": [w.to_dict() for w in self.waiting],
        }


@dataclass(frozen=True, slots=True)
class AdmittedWorkload:
    """An admitted workload as the state holds it. ``order`` is the admission sequence number
    (later admissions have higher numbers; preemption prefers the most recent)."""

    workload: Workload
    flavor: str
    usage: Mapping[str, int]
    order: int
    admitted_at: float


@dataclass(frozen=True, slots=True)
class QueueUsage:
    """What the control service shows for a queue, by (flavor, resource).

    ``borrowed`` is usage above nominal quota; ``lent`` is this queue's unused nominal quota that
    cohort members use right now (an attribution: borrowing in a cohort is first charged to the
    cohorts' own quota, then to lenders in proportion to what each has to lend).
    """

    queue: str
    cohort: str | None
    nominal: Mapping[FlavorResource, int]
    usage: Mapping[FlavorResource, int]
    borrowed: Mapping[FlavorResource, int]
    lent: Mapping[FlavorResource, int]
    pending: int
    admitted: int
