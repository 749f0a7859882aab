"""Teams, queues (Kueue ClusterQueues), cohorts and priority classes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from . import limits
from .base import RESOURCE_NAMES, Document, Model, Name, Text, format_quantity, parse_quantity


class QueueingStrategy(StrEnum):
    STRICT_FIFO = "StrictFIFO"
    BEST_EFFORT_FIFO = "BestEffortFIFO"


class WithinClusterQueue(StrEnum):
    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"
    LOWER_OR_NEWER_EQUAL_PRIORITY = "LowerOrNewerEqualPriority"


class ReclaimWithinCohort(StrEnum):
    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"
    ANY = "Any"


class BorrowWithinCohortPolicy(StrEnum):
    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"


class WhenCanBorrow(StrEnum):
    BORROW = "Borrow"
    TRY_NEXT_FLAVOR = "TryNextFlavor"


class WhenCanPreempt(StrEnum):
    PREEMPT = "Preempt"
    TRY_NEXT_FLAVOR = "TryNextFlavor"


class FlavorPreference(StrEnum):
    BORROWING_OVER_PREEMPTION = "BorrowingOverPreemption"
    PREEMPTION_OVER_BORROWING = "PreemptionOverBorrowing"


#: Largest quota amount of any resource in its canonical unit (per resource: limits.QUANTITY_MAX).
_AMOUNT_MAX = max(limits.QUANTITY_MAX.values())

_AMOUNT_KEYS = ("nominalQuota", "nominal_quota", "borrowingLimit", "borrowing_limit", "lendingLimit", "lending_limit")


class _QuotaAmounts(Model):
    """Quota amounts (nominalQuota, borrowingLimit, lendingLimit) of one resource: read as
    Kubernetes quantities of that resource, stored canonical, written back as quantities.
    ``_RESOURCE_FIELD`` names the field that holds the resource."""

    _RESOURCE_FIELD: ClassVar[str] = "name"

    @model_validator(mode="before")
    @classmethod
    def _quantities(cls, data: Any) -> Any:
        resource = data.get(cls._RESOURCE_FIELD) if isinstance(data, dict) else None
        if isinstance(resource, str) and resource in RESOURCE_NAMES:
            data = dict(data)
            for key in _AMOUNT_KEYS:
                if data.get(key) is not None:
                    try:
                        data[key] = parse_quantity(resource, data[key])
                    except ValueError as e:
                        raise ValueError(f"{to_camel(key)}: {e}") from None
        return data

    @model_serializer(mode="wrap")
    def _format(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if info.mode == "json":
            resource = getattr(self, self._RESOURCE_FIELD)
            for key in _AMOUNT_KEYS:
                if data.get(key) is not None:
                    data[key] = format_quantity(resource, data[key])
        return data


def _known_resource(v: str) -> str:
    if v not in RESOURCE_NAMES:
        raise ValueError(f"unknown resource {v!r}; expected one of {', '.join(RESOURCE_NAMES)}")
    return v


ResourceName = Annotated[str, AfterValidator(_known_resource)]


class _ResourceQuota(_QuotaAmounts):
    name: ResourceName = Field(description="Resource name: cpu, memory, nvidia.com/gpu or google.com/tpu.")
    nominal_quota: int = Field(ge=0, le=_AMOUNT_MAX, description="Quota guaranteed to this queue (a quantity: 8, 500m, 64Gi); at most 1000000 cpu, 1Ei memory, 1000000 accelerators.")
    borrowing_limit: int | None = Field(default=None, ge=0, le=_AMOUNT_MAX, description="Most this queue may borrow from its cohort above nominalQuota; empty = no limit.")
    lending_limit: int | None = Field(default=None, ge=0, le=_AMOUNT_MAX, description="Most of nominalQuota this queue lends to its cohort; empty = all of it.")


class ResourceQuotaSpec(_ResourceQuota):
    """A queue's quota of one resource on one flavor (Kueue's ClusterQueue ``resources`` entry)."""

    @model_validator(mode="after")
    def _limits(self) -> ResourceQuotaSpec:
        if self.lending_limit is not None and self.lending_limit > self.nominal_quota:
            raise ValueError(f"lendingLimit: {self.lending_limit} exceeds nominalQuota {self.nominal_quota}")
        return self


class CohortResourceQuota(_ResourceQuota):
    """A cohort's own quota of one resource on one flavor (Kueue's Cohort ``resources`` entry)."""

    nominal_quota: int = Field(ge=0, le=_AMOUNT_MAX, description="Quota the cohort itself holds, lent to its members and child cohorts (a quantity: 8, 500m, 64Gi).")
    borrowing_limit: int | None = Field(default=None, ge=0, le=_AMOUNT_MAX, description="Most the whole cohort may take from its parent above its subtree's quota; empty = no limit; only in a cohort with a parent.")
    lending_limit: int | None = Field(default=None, ge=0, le=_AMOUNT_MAX, description="Most of the cohort's subtree quota (its own and what its members lend it) that its parent may lend elsewhere; empty = all of it. Unlike a queue's, it may exceed nominalQuota.")


class _FlavorQuotas(Model):
    name: Name = Field(description="Flavor name.")
    if TYPE_CHECKING:
        resources: Sequence[_ResourceQuota]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [r.name for r in self.resources]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ValueError(f"resources.{i}.name: resource {n!r} listed twice")
        return self


class FlavorQuotas(_FlavorQuotas):
    resources: list[ResourceQuotaSpec] = Field(min_length=1, description="Quota per resource on this flavor.")


class CohortFlavorQuotas(_FlavorQuotas):
    resources: list[CohortResourceQuota] = Field(min_length=1, description="The cohort's quota per resource on this flavor.")


class _ResourceGroup(Model):
    covered_resources: list[ResourceName] = Field(min_length=1, description="Resources whose quota is given together, flavor by flavor.")
    if TYPE_CHECKING:
        flavors: Sequence[_FlavorQuotas]

    @model_validator(mode="after")
    def _cover(self) -> Self:
        covered = set(self.covered_resources)
        for i, fq in enumerate(self.flavors):
            got = [r.name for r in fq.resources]
            if set(got) != covered:
                raise ValueError(
                    f"flavors.{i}.resources: flavor {fq.name!r} must give quota for exactly the covered resources {sorted(covered)}, got {got}"
                )
        return self


class ResourceGroup(_ResourceGroup):
    flavors: list[FlavorQuotas] = Field(min_length=1, description="Flavors in order of preference (the queue's flavor order).")


class CohortResourceGroup(_ResourceGroup):
    flavors: list[CohortFlavorQuotas] = Field(min_length=1, description="Flavors the cohort holds quota on.")


class BorrowWithinCohort(Model):
    policy: BorrowWithinCohortPolicy = Field(default=BorrowWithinCohortPolicy.NEVER, description="Whether a borrowing workload may preempt lower-priority workloads in the cohort.")
    max_priority_threshold: int | None = Field(default=None, ge=-(2**31), le=10**9, description="Only workloads with priority at or below this may be preempted while borrowing.")


class PreemptionSpec(Model):
    within_cluster_queue: WithinClusterQueue = Field(default=WithinClusterQueue.NEVER, description="Preempt workloads of the same queue.")
    reclaim_within_cohort: ReclaimWithinCohort = Field(default=ReclaimWithinCohort.NEVER, description="Reclaim lent quota from cohort members that borrow it.")
    borrow_within_cohort: BorrowWithinCohort = Field(default_factory=BorrowWithinCohort, description="Preempt in the cohort while borrowing.")


class FlavorFungibility(Model):
    when_can_borrow: WhenCanBorrow = Field(default=WhenCanBorrow.BORROW, description="Borrow on this flavor, or try the next flavor first.")
    when_can_preempt: WhenCanPreempt = Field(default=WhenCanPreempt.TRY_NEXT_FLAVOR, description="Preempt on this flavor, or try the next flavor first.")
    preference: FlavorPreference | None = Field(
        default=None,
        description="With both whenCanBorrow and whenCanPreempt TryNextFlavor, which flavor wins when none fits without borrowing or preemption: "
                    "BorrowingOverPreemption (the default) takes a flavor where the gang fits by borrowing before one where it must preempt; "
                    "PreemptionOverBorrowing takes a flavor where it fits within the queue's nominal quota after preemption before one where it borrows.")

    @model_validator(mode="after")
    def _preference(self) -> FlavorFungibility:
        if self.preference is not None and (self.when_can_borrow, self.when_can_preempt) != (WhenCanBorrow.TRY_NEXT_FLAVOR, WhenCanPreempt.TRY_NEXT_FLAVOR):
            raise ValueError("preference: can only be set when both whenCanBorrow and whenCanPreempt are TryNextFlavor")
        return self


class FairSharing(Model):
    weight: float = Field(default=1.0, ge=0, le=limits.WEIGHT_MAX, description="Share weight: higher weights get a larger share of borrowed capacity; at most 1000000.")


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d|24:00")


class ScheduledQuota(_QuotaAmounts):
    _RESOURCE_FIELD: ClassVar[str] = "resource"

    flavor: Name = Field(description="Flavor whose quota changes in the window.")
    resource: ResourceName = Field(description="Resource whose quota changes.")
    nominal_quota: int = Field(ge=0, le=_AMOUNT_MAX, description="Nominal quota during the window.")
    borrowing_limit: int | None = Field(default=None, ge=0, le=_AMOUNT_MAX, description="Borrowing limit during the window (empty: unchanged).")
    lending_limit: int | None = Field(default=None, ge=0, le=_AMOUNT_MAX, description="Lending limit during the window (empty: unchanged).")


class QuotaWindow(Model):
    name: str = Field(min_length=1, max_length=256, description="Name of the window, e.g. business-hours.")
    days: list[Day] = Field(default_factory=lambda: list(_DAYS), description="Days of the week the window applies.")
    start: str = Field(description="Start time HH:MM (inclusive).")
    end: str = Field(description="End time HH:MM (exclusive); an end before start wraps past midnight.")
    timezone: str = Field(default="UTC", max_length=256, description="IANA time zone of start and end.")
    quotas: list[ScheduledQuota] = Field(min_length=1, description="Quotas in force during the window.")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.fullmatch(v):
            raise ValueError(f"{v!r} is not a time of day HH:MM")
        return v


def _flavor_order(groups: Sequence[_ResourceGroup]) -> list[str]:
    out: list[str] = []
    for group in groups:
        out.extend(f.name for f in group.flavors if f.name not in out)
    return out


def _quotas(groups: Sequence[_ResourceGroup]) -> dict[tuple[str, str], Any]:
    return {(f.name, r.name): r for g in groups for f in g.flavors for r in f.resources}


class QueueSpec(Model):
    team: Name = Field(description="Team that owns the queue; its tokens submit here.")
    cohort: Name | None = Field(default=None, description="Cohort whose members lend and borrow idle quota.")
    compute_class: Name | None = Field(default=None, description="Compute class whose capacity fallback applies to this queue's flavors.")
    resource_groups: list[ResourceGroup] = Field(min_length=1, description="Quota per flavor and resource (Kueue resourceGroups).")
    queueing_strategy: QueueingStrategy = Field(default=QueueingStrategy.BEST_EFFORT_FIFO, description="StrictFIFO blocks behind the head; BestEffortFIFO lets later workloads that fit go first.")
    preemption: PreemptionSpec = Field(default_factory=PreemptionSpec, description="Preemption policy.")
    flavor_fungibility: FlavorFungibility = Field(default_factory=FlavorFungibility, description="When to move on to the next flavor.")
    fair_sharing: FairSharing = Field(default_factory=FairSharing, description="Fair-sharing weight.")
    quota_schedule: list[QuotaWindow] = Field(default_factory=list, description="Time windows with other quotas (e.g. inference by day, training by night).")

    def flavor_order(self) -> list[str]:
        return _flavor_order(self.resource_groups)

    def quotas(self) -> dict[tuple[str, str], ResourceQuotaSpec]:
        return _quotas(self.resource_groups)


class QueueStatus(Model):
    pending: int = Field(default=0, description="Workloads waiting.")
    admitted: int = Field(default=0, description="Workloads admitted.")
    usage: dict[str, dict[str, int]] = Field(default_factory=dict, description="Usage by flavor and resource.")
    borrowed: dict[str, dict[str, int]] = Field(default_factory=dict, description="Borrowed from the cohort, by flavor and resource.")
    lent: dict[str, dict[str, int]] = Field(default_factory=dict, description="Lent to the cohort, by flavor and resource.")


class Queue(Document):
    """Kueue's ClusterQueue, owned by a team."""

    KIND = "Queue"
    kind: Literal["Queue"] = "Queue"
    spec: QueueSpec = Field(description="Quota and policies.")
    status: QueueStatus = Field(default_factory=QueueStatus, description="Observed usage.")


class CohortSpec(Model):
    parent: Name | None = Field(default=None, description="Parent cohort (hierarchical cohorts).")
    resource_groups: list[CohortResourceGroup] = Field(
        default_factory=list,
        description="Quota of the cohort itself (Kueue Cohort resourceGroups), per flavor and resource: its members and child cohorts "
                    "borrow it as they borrow each other's idle quota; borrowingLimit bounds what the whole cohort takes from its parent, "
                    "lendingLimit what of the cohort's quota (its own and its members' lent quota) its parent may lend elsewhere.")
    fair_sharing: FairSharing = Field(default_factory=FairSharing, description="Fair-sharing weight of the cohort in its parent.")

    def flavor_order(self) -> list[str]:
        return _flavor_order(self.resource_groups)

    def quotas(self) -> dict[tuple[str, str], CohortResourceQuota]:
        return _quotas(self.resource_groups)


class Cohort(Document):
    KIND = "Cohort"
    kind: Literal["Cohort"] = "Cohort"
    spec: CohortSpec = Field(default_factory=CohortSpec, description="Parent, quota and weight.")


class PriorityClassSpec(Model):
    value: int = Field(ge=-(2**31), le=10**9, description="Higher values are admitted first and may preempt lower ones.")
    description: Text = Field(default="", description="What the class is for.")
    default: bool = Field(default=False, description="Used when a workload names no priority class.")


class PriorityClass(Document):
    """Kueue's WorkloadPriorityClass."""

    KIND = "PriorityClass"
    kind: Literal["PriorityClass"] = "PriorityClass"
    spec: PriorityClassSpec = Field(description="Priority value.")


class TeamSpec(Model):
    display_name: Text = Field(default="", description="Human name of the team.")
    cost_center: Text = Field(default="", description="Cost centre charged for the team's usage.")
    monthly_budget: float | None = Field(default=None, ge=0, le=limits.BUDGET_MAX, description="Budget in USD per month (reported against, not enforced); at most 1e12.")
    namespace: Name | None = Field(default=None, description="Kubernetes namespace of the team on GKE (defaults to the team name).")


class Team(Document):
    KIND = "Team"
    kind: Literal["Team"] = "Team"
    spec: TeamSpec = Field(default_factory=TeamSpec, description="Team details.")
