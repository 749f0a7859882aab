"""The capacity fallback of a compute class (pure: the config and a clock passed in).

The end-to-end behaviour (a reservation short of hosts, the job moving to the next flavor) is in
tests/e2e/test_capacity_fallback.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayfleet.api import ComputeClassStep
from rayfleet.capacity import fallback
from rayfleet.config import load_config

GKE = Path(__file__).resolve().parents[1] / "cluster_configs" / "gke-example.yaml"


@pytest.fixture(scope="module")
def cfg():
    return load_config([GKE])


def test_steps_follow_the_compute_class_of_the_queue(cfg):
    # l4-serving: l4-reserved (2m) -> l4-flex (10m) -> l4-spot (indefinitely); used by queue "inference"
    assert fallback.step_of(cfg, "inference", "l4-reserved").wait_for_capacity == 120
    assert fallback.next_flavor(cfg, "inference", "l4-reserved") == "l4-flex"
    assert fallback.next_flavor(cfg, "inference", "l4-flex") == "l4-spot"
    assert fallback.next_flavor(cfg, "inference", "l4-spot") is None
    assert fallback.step_of(cfg, "inference", "h100-reserved") is None


def test_a_step_waits_resubmits_then_gives_the_flavor_up(cfg):
    D = fallback.Decision
    # l4-flex: waitForCapacity 10m from the first launch there, resubmitAfter 4m from each launch
    assert fallback.decide(cfg, "inference", "l4-flex", waiting_since=0, launched_at=0, now=239) is D.WAIT
    assert fallback.decide(cfg, "inference", "l4-flex", waiting_since=0, launched_at=0, now=240) is D.RESUBMIT
    assert fallback.decide(cfg, "inference", "l4-flex", waiting_since=0, launched_at=240, now=470) is D.WAIT
    assert fallback.decide(cfg, "inference", "l4-flex", waiting_since=0, launched_at=480, now=600) is D.NEXT
    # l4-reserved: 2m, no resubmission
    assert fallback.decide(cfg, "inference", "l4-reserved", waiting_since=1000, launched_at=1000, now=1119) is D.WAIT
    assert fallback.decide(cfg, "inference", "l4-reserved", waiting_since=1000, launched_at=1000, now=1120) is D.NEXT
    # the last step and queues without a compute class wait for ever
    assert fallback.decide(cfg, "inference", "l4-spot", waiting_since=0, launched_at=0, now=10**9) is D.WAIT
    queue_without_class = next(n for n, q in cfg.queues.items() if q.spec.compute_class is None)
    assert fallback.decide(cfg, queue_without_class, "l4-reserved", waiting_since=0, launched_at=0, now=10**9) is D.WAIT


@pytest.mark.parametrize(
    "step, problem",
    [
        ({"flavor": "x", "waitForCapacity": "5m", "resubmitAfter": "5m"}, "resubmitAfter: 300s must be shorter than waitForCapacity (300s)"),
        ({"flavor": "x", "resubmitAfter": "0s"}, "resubmitAfter: must be more than 0 seconds"),
    ],
)
def test_resubmit_after_is_checked_naming_the_field(step, problem):
    with pytest.raises(ValueError) as e:
        ComputeClassStep.model_validate(step)
    assert problem in str(e.value)


def test_skipped_flavors_are_not_offered_again_but_a_job_always_has_one():
    assert fallback.remaining(("l4-reserved", "l4-flex", "l4-spot"), ["l4-reserved"]) == ("l4-flex", "l4-spot")
    assert fallback.remaining(("l4-reserved", "l4-flex"), ["l4-reserved", "l4-flex"]) == ("l4-reserved", "l4-flex")
    # a round that gave every flavor up starts the class again from its first step, and goes on
    # to the second step after the first is given up again (not back to the first forever)
    assert fallback.remaining(("l4-reserved", "l4-flex"), ["l4-reserved", "l4-flex", "l4-reserved"]) == ("l4-flex",)
    assert fallback.next_remaining(("l4-reserved", "l4-flex"), ["l4-reserved", "l4-flex"], "l4-reserved") == "l4-flex"
    assert fallback.remaining(("a", "b", "c"), ["a", "b", "c", "a", "b"]) == ("c",)
