"""Flavors (Kueue ResourceFlavors, each bound to one pool) and compute classes (ordered fallback)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Document, Duration, Labels, Model, Name


class FlavorSpec(Model):
    pool: Name = Field(description="The pool whose hosts this flavor stands for.")
    node_labels: Labels = Field(default_factory=dict, description="Extra node labels (beyond the pool's own) that select this flavor's hosts; at most 64.")


class Flavor(Document):
    """Kueue's ResourceFlavor: a named kind of capacity, bound to a pool."""

    KIND = "Flavor"
    kind: Literal["Flavor"] = "Flavor"
    spec: FlavorSpec = Field(description="The pool this flavor draws from.")


class ComputeClassStep(Model):
    flavor: Name = Field(description="Flavor tried at this step.")
    wait_for_capacity: Duration | None = Field(
        default=None,
        description="How long a workload waits for this flavor's capacity before the next step is tried; empty means wait indefinitely (last step).",
    )
    resubmit_after: Duration | None = Field(
        default=None,
        description="Cancel a request for capacity that is not served after this long and submit a new one (a slow DWS flex-start "
        "ProvisioningRequest), until waitForCapacity runs out; empty: never.",
    )

    @model_validator(mode="after")
    def _resubmit_within_wait(self) -> ComputeClassStep:
        if self.resubmit_after is not None and self.resubmit_after <= 0:
            raise ValueError(f"resubmitAfter: must be more than 0 seconds, got {self.resubmit_after}")
        if self.resubmit_after is not None and self.wait_for_capacity is not None and self.resubmit_after >= self.wait_for_capacity:
            raise ValueError(
                f"resubmitAfter: {self.resubmit_after:.0f}s must be shorter than waitForCapacity ({self.wait_for_capacity:.0f}s), "
                "or no request would ever be resubmitted"
            )
        return self


class ActiveMigration(Model):
    optimize_rule_priority: bool = Field(default=False, description="Move work back to a preferred step when it has room again (GKE ComputeClass activeMigration.optimizeRulePriority): a job at its next checkpoint, a service group by group.")


class ComputeClassSpec(Model):
    flavors: list[ComputeClassStep] = Field(min_length=1, description="Flavors in order of preference, e.g. reservation, then DWS flex-start, then spot.")
    active_migration: ActiveMigration = Field(default_factory=ActiveMigration, description="Whether work moves back to a preferred step when it has room again.")
    node_recycling: bool = Field(default=False, description="For DWS-backed steps: provision a replacement before a node's run time ends (serving).")

    @model_validator(mode="after")
    def _unique(self) -> ComputeClassSpec:
        seen: set[str] = set()
        for i, step in enumerate(self.flavors):
            if step.flavor in seen:
                raise ValueError(f"flavors.{i}.flavor: {step.flavor!r} appears twice")
            seen.add(step.flavor)
        return self


class ComputeClass(Document):
    """An ordered capacity fallback (GKE custom compute class semantics)."""

    KIND = "ComputeClass"
    kind: Literal["ComputeClass"] = "ComputeClass"
    spec: ComputeClassSpec = Field(description="Ordered flavors with capacity wait times.")
