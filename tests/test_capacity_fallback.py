"""The capacity fallback of a compute class (pure: the config and a clock passed in).

The end-to-end behaviour (a reservation short of hosts, the job moving to the next flavor) is in
tests/e2e/test_capacity_fallback.py."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_only_a_step_with_a_wait_runs_out_of_time(cfg):
    assert not fallback.out_of_time(cfg, "inference", "l4-reserved", waiting_since=1000, now=1119)
    assert fallback.out_of_time(cfg, "inference", "l4-reserved", waiting_since=1000, now=1120)
    assert fallback.out_of_time(cfg, "inference", "l4-flex", waiting_since=0, now=600)
    assert not fallback.out_of_time(cfg, "inference", "l4-spot", waiting_since=0, now=10**9)  # the last step waits
    queue_without_class = next(n for n, q in cfg.queues.items() if q.spec.compute_class is None)
    assert not fallback.out_of_time(cfg, queue_without_class, "l4-reserved", waiting_since=0, now=10**9)
    assert not fallback.out_of_time(cfg, "inference", "l4-reserved", waiting_since=None, now=10**9)


def test_skipped_flavors_are_not_offered_again_but_a_job_always_has_one():
    assert fallback.remaining(("l4-reserved", "l4-flex", "l4-spot"), ["l4-reserved"]) == ("l4-flex", "l4-spot")
    assert fallback.remaining(("l4-reserved", "l4-flex"), ["l4-reserved", "l4-flex"]) == ("l4-reserved", "l4-flex")
