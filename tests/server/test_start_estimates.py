"""Estimated starts through the controller on the simulated backend: a waiting job's
``estimatedStart`` from the running jobs' maxRunDuration, then from their kind's learned run time;
shown in the queue view, ``rayfleet job status``'s fields and Ray's job message."""

from __future__ import annotations

import io

import pytest
import test_controller_sim
from rich.console import Console

from rayfleet.api import JobState, PendingReason
from rayfleet.cli import job_cmd
from rayfleet.cli.output import estimated_start
from rayfleet.server import ray_jobs_api, transitions

world = test_controller_sim.world   # the controller tests' fixture: a World on the simulated backend


def _ts(job) -> float:
    return job.status.estimated_start.timestamp()


def test_a_waiting_job_is_told_when_it_will_start_and_the_estimate_learns_the_run_time_of_its_kind(world):
    world.sim.script_run("first", runtime=1000)
    world.sim.script_run("second", runtime=1000)
    world.start()
    world.submit("first", queue="team-b", workers=2, max_run_duration=3000)
    world.tick()
    world.tick(1)
    assert world.state("first") == JobState.RUNNING
    started = world.job("first").status.started_at.timestamp()
    world.submit("second", queue="team-b", workers=2, max_run_duration=3000)
    world.tick()
    second = world.job("second")
    assert second.status.pending_reason == PendingReason.WAITING_FOR_QUOTA
    # no run of this kind has ended: the running job's maxRunDuration bounds its end
    assert _ts(second) == pytest.approx(started + 3000)
    assert second.status.estimated_start_reason == "when first ends"
    entry = next(w for w in world.fleet.queue_view("team-b")["status"]["waiting"] if w["workload"] == "second")
    assert entry["estimatedStart"].endswith("Z") and entry["estimatedStartReason"] == "when first ends"
    assert "; estimated start " in ray_jobs_api.pending_message(second.status) and "(when first ends)" in ray_jobs_api.pending_message(second.status)
    # the CLI: `rayfleet queue show`'s column and `rayfleet job status`'s row, from the API's JSON
    assert estimated_start(entry) == f"{entry['estimatedStart']} (when first ends)"
    doc = second.model_dump(mode="json", by_alias=True)
    shown = Console(width=200, file=io.StringIO())
    shown.print(job_cmd._status_table(doc, None))
    assert f"estimated start │ {doc['status']['estimatedStart']} (when first ends)" in shown.file.getvalue()
    # first ends after 1000 s: second is admitted, and its kind's run time is learned
    world.tick(1000)
    world.tick()
    world.tick(1)
    assert world.state("first") == JobState.SUCCEEDED and world.state("second") == JobState.RUNNING
    assert world.job("second").status.estimated_start is None   # not QUEUED any more: no estimate
    second_started = world.job("second").status.started_at.timestamp()
    world.crash()   # a restarted control service learns the run times again from the store's successes
    world.submit("third", queue="team-b", workers=2, max_run_duration=3000)
    world.tick(10)
    third = world.job("third")
    # the kind's average (1000 s) is the better guess, below the maxRunDuration
    assert _ts(third) == pytest.approx(second_started + 1000, abs=2)
    assert third.status.estimated_start_reason == "when second ends"


def test_a_job_behind_one_with_no_expected_end_has_no_time_but_a_reason(world):
    world.sim.script_run("endless", runtime=10**6)
    world.start()
    world.submit("endless", queue="team-b", workers=2)
    world.tick()
    world.submit("next", queue="team-b", workers=2)
    world.tick(10)
    st = world.job("next").status
    assert st.estimated_start is None
    assert "no expected end" in st.estimated_start_reason and "endless" in st.estimated_start_reason
    assert "no estimated start: " in ray_jobs_api.pending_message(st)
    assert estimated_start(st.model_dump(mode="json", by_alias=True)) == f"none: {st.estimated_start_reason}"
    assert estimated_start({"estimatedStart": None, "estimatedStartReason": ""}) is None


def test_an_estimate_is_written_again_only_when_it_moves_by_more_than_its_slack():
    from rayfleet.api import TrainJob

    job = TrainJob.model_validate({"metadata": {"name": "j"}, "spec": {"entrypoint": "x", "queue": "q"}})
    job.status.message, job.status.pending_reason = "wait", PendingReason.WAITING_FOR_QUOTA
    t = transitions.waiting(job, "wait", PendingReason.WAITING_FOR_QUOTA, (10_000.0, "when a ends"), now=0.0)
    assert t is not None and t.status.estimated_start.timestamp() == 10_000.0
    job = job.model_copy(update={"status": t.status})
    # 500 s later on a 10,000 s wait: within 10% of the wait left, nothing to write
    assert transitions.waiting(job, "wait", PendingReason.WAITING_FOR_QUOTA, (10_500.0, "when b ends"), now=0.0) is None
    # 2,000 s later: written, with its new reason
    t = transitions.waiting(job, "wait", PendingReason.WAITING_FOR_QUOTA, (12_000.0, "when b ends"), now=0.0)
    assert t is not None and t.status.estimated_start_reason == "when b ends"
    # no estimate given (the projection did not run): kept as it was
    assert transitions.waiting(job, "wait", PendingReason.WAITING_FOR_QUOTA, None, now=0.0) is None


def test_train_app_jobs_are_estimated_and_a_kind_is_the_app_with_its_config(world):
    """A train app's kind is its module with its config (a pass over train-app jobs once crashed on it)."""
    from rayfleet.server.start_estimates import kind_of
    app = {"module": "train_apps.ddp_synthetic", "config": {"steps": 10}}
    world.sim.script_run("first", runtime=1000)
    world.start()
    first = world.submit("first", queue="team-b", workers=2, max_run_duration=3000, train_app=app)
    world.tick()
    world.tick(1)
    assert world.state("first") == JobState.RUNNING
    started = world.job("first").status.started_at.timestamp()
    second = world.submit("second", queue="team-b", workers=2, train_app=app)
    world.tick()
    assert _ts(world.job("second")) == pytest.approx(started + 3000)
    assert world.job("second").status.estimated_start_reason == "when first ends"
    other = world.submit("other", queue="team-b", workers=2, train_app={**app, "config": {"steps": 20}})
    assert kind_of(first) == kind_of(second) != kind_of(other)


def test_projections_come_less_often_as_the_fleet_they_replay_grows():
    from rayfleet.api import TrainJob
    from rayfleet.quota import PodSet, QueueConfig, QuotaConfig, QuotaState, ResourceQuota, Workload
    from rayfleet.server import start_estimates as se

    def waiting(n: int, t0: float = 0.0) -> tuple[QuotaState, se.StartEstimates]:
        state = QuotaState(QuotaConfig(queues=(QueueConfig("a", ("default",), {("default", "cpu"): ResourceQuota(1)}),)), t0)
        est = se.StartEstimates()
        for k in range(n):
            wl = Workload(f"w{k}", "a", (PodSet(1, {"cpu": 2}),), created=float(k))   # more than the queue has: it waits
            state.submit(wl)
            est.told_to_wait(TrainJob.model_validate({"metadata": {"name": wl.id}, "spec": {"entrypoint": "x", "queue": "a"}}), wl)
        return state, est

    state, small = waiting(10)
    small.refresh(state, list, 0.0)
    assert not small.due(se.NEW_WAIT_S / 2) and not small.due(se.REFRESH_S - 1) and small.due(se.REFRESH_S)
    state, big = waiting(1000)
    big.refresh(state, list, 0.0)
    gap = se.PER_WORKLOAD_S * 1000
    assert gap > se.REFRESH_S and not big.due(gap - 1) and big.due(gap)
    # a newly waiting job is not worth a projection sooner than the gap either
    wl = Workload("late", "a", (PodSet(1, {"cpu": 2}),), created=5000.0)
    big.told_to_wait(TrainJob.model_validate({"metadata": {"name": "late"}, "spec": {"entrypoint": "x", "queue": "a"}}), wl)
    assert not big.due(gap - 1) and big.due(gap)
    state, small = waiting(10)
    small.refresh(state, list, 0.0)
    small.told_to_wait(TrainJob.model_validate({"metadata": {"name": "late"}, "spec": {"entrypoint": "x", "queue": "a"}}), wl)
    assert not small.due(se.NEW_WAIT_S - 1) and small.due(se.NEW_WAIT_S)


def test_a_projection_whose_inputs_have_not_moved_is_kept_until_a_moment_it_foresaw():
    from rayfleet.api import TrainJob
    from rayfleet.quota import PodSet, QueueConfig, QuotaConfig, QuotaState, ResourceQuota, Workload
    from rayfleet.server import start_estimates as se

    def job(name: str, **spec) -> TrainJob:
        return TrainJob.model_validate({"metadata": {"name": name}, "spec": {"entrypoint": "x", "queue": "a", **spec}})

    state = QuotaState(QuotaConfig(queues=(QueueConfig("a", ("default",), {("default", "cpu"): ResourceQuota(1)}),)), 0.0)
    run = Workload("run", "a", (PodSet(1, {"cpu": 1}),))
    state.schedule(0.0, [run])
    waiting = Workload("w", "a", (PodSet(1, {"cpu": 1}),), created=1.0)
    state.submit(waiting)
    est = se.StartEstimates()
    est.told_to_wait(job("w"), waiting)
    reads: list[float] = []
    running = job("run", maxRunDuration=600)
    running.status.started_at = transitions.at(0.0)

    def holding(now: float):
        return lambda: reads.append(now) or [running]
    assert est.refresh(state, holding(10.0), 10.0)["w"].at == 600.0
    assert est.refresh(state, holding(100.0), 100.0)["w"].at == 600.0 and reads == [10.0]   # nothing moved: kept, not read
    est.refresh(state, holding(600.0), 600.0)                                                # its foreseen end: projected again
    assert reads == [10.0, 600.0] and est.current["w"].at == 600.0 + 0.25 * 600.0          # overdue: another quarter
    other = Workload("w2", "a", (PodSet(1, {"cpu": 1}),), created=2.0)
    state.submit(other)
    est.told_to_wait(job("w2"), other)
    est.refresh(state, holding(601.0), 601.0)                                                # a new waiting job: projected
    assert reads[-1] == 601.0 and set(est.current) == {"w", "w2"}
