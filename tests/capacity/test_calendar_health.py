"""Calendar windows at admission, faulty-host accounting and the notice/migration fallback rules
(pure: specs and a clock passed in)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from rayfleet.api import HostHealthPolicy, PoolSpec, TrainJob
from rayfleet.capacity import calendar, fallback, health

START = 1_000_000.0
END = START + 3600


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


CAL = PoolSpec.model_validate({"machineType": "a3-highgpu-8g", "accelerator": "nvidia-h100-80gb", "acceleratorsPerHost": 8,
                               "maxReplicas": 2, "provisioning": {"mode": "dws-calendar", "drainBefore": 600,
                                                                  "window": {"start": _iso(START), "end": _iso(END)}}})
SPOT = PoolSpec.model_validate({"machineType": "n2-standard-8", "maxReplicas": 2, "provisioning": {"mode": "spot"}})


def _job(*, limit: float | None = None, train_app: bool = False, storage: str | None = None, started: float | None = None) -> TrainJob:
    spec: dict = {"queue": "q", "maxRunDuration": limit, "checkpoint": {"storagePath": storage}}
    spec.update({"trainApp": {"module": "train_apps.ddp_synthetic"}} if train_app else {"entrypoint": "python x.py"})
    return TrainJob.model_validate({"metadata": {"name": "j"}, "spec": spec,
                                    "status": {"startedAt": _iso(started) if started else None}})


def test_nothing_is_offered_outside_the_window_or_in_its_drain_time():
    j = _job(train_app=True)
    assert not calendar.offered(CAL, j, START - 1) and "opens in 1s" in calendar.why_not(CAL, j, START - 1)
    assert calendar.offered(CAL, j, START) and calendar.why_not(CAL, j, START) is None
    assert calendar.offered(CAL, j, END - 601)
    assert not calendar.offered(CAL, j, END - 600) and "closing" in calendar.why_not(CAL, j, END - 600)
    assert not calendar.offered(CAL, j, END + 1) and "closed" in calendar.why_not(CAL, j, END + 1)
    assert calendar.offered(SPOT, _job(), START - 10_000)   # not a calendar pool: always


def test_a_job_that_does_not_checkpoint_must_end_before_the_drain():
    assert calendar.offered(CAL, _job(limit=3000), START)            # ends at START+3000 = END-600
    assert not calendar.offered(CAL, _job(limit=3001), START)
    assert "does not checkpoint" in calendar.why_not(CAL, _job(limit=3001), START)
    assert not calendar.offered(CAL, _job(), START)                   # no maxRunDuration: it may never end
    # the rest of its run counts from its first start (a requeued job has used part of it)
    assert calendar.offered(CAL, _job(limit=3500, started=START - 1000), START + 400)


def test_a_job_that_checkpoints_may_run_into_the_drain_and_is_moved():
    assert calendar.checkpoints(_job(train_app=True)) and calendar.checkpoints(_job(storage="/ckpt"))
    assert not calendar.checkpoints(_job())
    assert calendar.offered(CAL, _job(storage="/ckpt"), START + 100)
    assert calendar.drain_deadline(CAL, END - 601) is None
    assert calendar.drain_deadline(CAL, END - 600) == END and calendar.drain_deadline(SPOT, END) is None


@dataclass(frozen=True)
class H:
    name: str
    phase: str = "ready"
    healthy: bool = True
    since: float | None = None
    pool: str = "p"
    message: str = ""


POLICY = HostHealthPolicy(failuresToCordon=3, window=100, repairTime=50)


def test_failures_within_the_window_tip_a_host_once():
    hh = health.HostHealth(POLICY)
    assert hh.failed(["h1", "h1"], 0) == []           # one run, counted once per host
    assert hh.failed(["h1", "h2"], 10) == []
    assert hh.failed(["h1"], 20) == ["h1"]
    hh.mark_cordoned("h1", 20)
    assert hh.failed(["h1"], 30) == [] and hh.count("h2", 30) == 1


def test_old_failures_fall_out_of_the_window():
    hh = health.HostHealth(POLICY)
    hh.failed(["h1"], 0)
    hh.failed(["h1"], 50)
    assert hh.failed(["h1"], 101) == [] and hh.count("h1", 101) == 2


def test_unhealthy_hosts_are_cordoned_and_repaired_ones_come_back():
    hh = health.HostHealth(POLICY)
    hosts = [H("a", healthy=False), H("b"), H("c", phase="cordoned", healthy=False)]
    assert [h.name for h in health.reported_unhealthy(hosts, hh)] == ["a"]
    hh.mark_cordoned("a", 100)
    assert health.reported_unhealthy(hosts, hh) == []
    cordoned = [H("a", phase="cordoned", since=100), H("c", phase="cordoned", since=10, healthy=False),
                H("d", phase="repairing", since=10)]
    assert health.overdue(cordoned, hh, 149) == []
    assert [h.name for h in health.overdue(cordoned, hh, 150)] == ["a"]   # c is unhealthy, d being repaired
    assert health.out_of_service(cordoned, hh) == {"a", "c", "d"}
    assert health.back_in_service(cordoned, hh) == [] and health.back_in_service([H("a")], hh) == ["a"]
    assert health.back_in_service([], hh) == ["a"]     # gone: a new machine in its slot starts clean


def test_a_flavor_is_exhausted_when_nothing_can_replace_the_leaving_host():
    assert fallback.flavor_exhausted("window-end", False, 5, 5, 5)
    assert not fallback.flavor_exhausted("reclaim", False, 0, 0, 1)    # spot may ask for another host
    assert fallback.flavor_exhausted("reclaim", False, 0, 0, 0)
    assert fallback.flavor_exhausted("recycle", True, 0, 0, 3)         # a reservation does not grow
    assert not fallback.flavor_exhausted("unhealthy", True, 1, 0, 0)
    assert fallback.next_remaining(("a", "b", "c"), ["b"], "a") == "c"
    assert fallback.next_remaining(("a",), [], "a") is None
