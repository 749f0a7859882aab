"""The real controller, store and quota layer over the simulated backend, on an advancing fake clock.

Every test drives ``controller.run_once(now)`` itself (the controller thread is never started) and
scripts the sim by job name. The service is built in one place, :func:`build_service`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rayfleet.api import JobState, Service, ServiceState, TrainJob
from rayfleet.backends.base import run_id_for
from rayfleet.backends.sim import SimBackend, from_config
from rayfleet.config import load_config
from rayfleet.server.auth import Principal
from rayfleet.server.fleet import Fleet
from rayfleet.server.main import assemble
from rayfleet.server.ray_jobs_api import job_from_request

CONFIG = load_config([Path(__file__).with_name("sim_platform.yaml")])
ADMIN = Principal(team=None, admin=True, label="admin")


class Clock:
    def __init__(self) -> None:
        self.t = float(int(time.time()))   # near real time: the store stamps submissions with it

    def __call__(self) -> float:
        return self.t


def build_service(backend: SimBackend, data_dir: Path, clock: Clock) -> Fleet:
    """The control service over ``backend`` and the store in ``data_dir``, controller not started,
    on the same clock as the sim."""
    return assemble(CONFIG, backend, data_dir, clock=clock)


class World:
    """A sim, a clock and a control service; ``crash()`` drops the service and builds a new one
    over the same store file and the same sim."""

    def __init__(self, tmp_path: Path):
        self.clock = Clock()
        self.sim = from_config(CONFIG, clock=self.clock)
        self.dir = tmp_path
        self.fleet: Fleet | None = None

    def start(self) -> World:
        self.sim.up()
        self.fleet = build_service(self.sim, self.dir, self.clock)
        return self

    def crash(self) -> None:
        self.fleet.close()
        self.fleet = build_service(self.sim, self.dir, self.clock)

    def tick(self, seconds: float = 0.0, passes: int = 1) -> None:
        self.clock.t += seconds
        for _ in range(passes):
            self.fleet.controller.run_once(self.clock.t)

    def submit(self, name: str, *, queue: str = "team-a", workers: int = 1, gpus: int = 1, priority: str | None = None,
               max_restarts: int = 3, max_disruptions: int | None = None, max_run_duration: float | None = None,
               train_app: dict | None = None) -> TrainJob:
        policy: dict = {"maxRestarts": max_restarts}
        if max_disruptions is not None:
            policy.update(maxDisruptions=max_disruptions, disruptionBackoff=1)
        spec = {"entrypoint": "python train.py", "queue": queue, "failurePolicy": policy,
                "gang": {"workers": workers, "resourcesPerWorker": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": gpus}}}
        if max_run_duration is not None:
            spec["maxRunDuration"] = max_run_duration
        if train_app is not None:
            del spec["entrypoint"]
            spec["trainApp"] = train_app
        if priority:
            spec["priorityClass"] = priority
        job = TrainJob.model_validate({"metadata": {"name": name}, "spec": spec})
        self.fleet.submit_job(job, ADMIN)
        return job

    def job(self, name: str) -> TrainJob:
        return self.fleet.store.get("TrainJob", name).doc

    def run_id(self, name: str, attempt: int) -> str:
        """The backend run id of one attempt of the stored job (it carries the job's uid)."""
        return run_id_for(name, attempt, self.job(name).metadata.uid)

    def state(self, name: str) -> JobState:
        return self.job(name).status.state

    def events(self, name: str) -> list[str]:
        return [e.type for e in self.fleet.events(self.fleet.store.get("TrainJob", name))]

    def run_until(self, name: str, states: set[JobState], *, step: float = 5.0, limit: float = 3600.0) -> None:
        end = self.clock.t + limit
        while self.state(name) not in states:
            assert self.clock.t < end, f"{name} still {self.state(name)} ({self.job(name).status.message})"
            self.tick(step)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    if w.fleet is not None:
        w.fleet.close()


def test_job_path_queued_admitted_starting_running_succeeded(world):
    world.sim.script_run("a", runtime=100, startup=5)
    world.start()
    world.submit("a")
    assert world.state("a") == JobState.QUEUED
    world.tick()
    assert world.state("a") == JobState.STARTING and world.job("a").status.flavor == "l4-res"
    world.tick(5)
    assert world.state("a") == JobState.RUNNING
    world.tick(99)
    assert world.state("a") == JobState.RUNNING
    world.tick(1)
    assert world.state("a") == JobState.SUCCEEDED
    ev = world.events("a")
    assert [e for e in ev if e in ("Submitted", "Admitted", "Launched", "Running", "Succeeded")] == \
        ["Submitted", "Admitted", "Launched", "Running", "Succeeded"]
    assert world.sim.launch_count("a") == 1
    job = world.job("a")
    assert "attempt 1 SUCCEEDED" in world.fleet.controller.logs.read(job.name, job.metadata.uid, 1)
    assert not world.fleet.layout.log_path(job, 1).exists()   # in the store, not in this replica's data directory


def test_failed_run_requeued_then_failed_after_max_restarts(world):
    world.sim.script_run("f", runtime=100, fail_at=10, fail_message="loss is NaN")
    world.start()
    world.submit("f", max_restarts=2)
    world.run_until("f", {JobState.FAILED})
    st = world.job("f").status
    assert st.attempt == 3 and st.restarts == 3 and "loss is NaN" in st.message
    assert world.events("f").count("Requeued") == 2 and world.sim.launch_count("f") == 3


def test_preemption_by_a_higher_priority_job(world):
    world.sim.script_run("low", runtime=1000, checkpoint_every=10)
    world.sim.script_run("high", runtime=50)
    world.start()
    world.submit("low", queue="team-b", workers=2)
    world.tick()
    world.tick(30)
    assert world.state("low") == JobState.RUNNING
    world.submit("high", queue="team-b", workers=2, priority="production")
    world.tick(passes=2)
    assert world.state("high") in (JobState.STARTING, JobState.RUNNING)
    low = world.job("low").status
    assert low.state == JobState.QUEUED and low.interruptions[-1].reason == "preempted" and low.restarts == 0
    world.run_until("high", {JobState.SUCCEEDED})
    world.run_until("low", {JobState.RUNNING})
    assert world.sim.run_status(world.run_id("low", 2)).resumed_from_step == 30


def test_capacity_fallback_along_the_compute_class(world):
    world.sim.pool("l4-res").initial_hosts(0).stockout(until=world.clock.t + 10_000)
    world.sim.script_run("c", runtime=20)
    world.start()
    world.submit("c")
    world.tick()
    assert world.state("c") == JobState.STARTING and world.job("c").status.flavor == "l4-res"
    world.tick(59)
    assert world.state("c") == JobState.STARTING
    world.tick(1, passes=2)
    st = world.job("c").status
    assert "CapacityFallback" in world.events("c") and st.flavor == "l4-spot" and st.state == JobState.RUNNING
    world.run_until("c", {JobState.SUCCEEDED})
    assert world.job("c").status.restarts == 0 and world.sim.run_status(world.run_id("c", 1)).state.value == "STOPPED"


def test_service_deployed_ready_and_scaled_under_quota(world):
    world.sim.script_service("chat", ready_after=20)
    world.start()
    svc = Service.model_validate({"metadata": {"name": "chat"}, "spec": {
        "importPath": "serve_apps.echo:app", "queue": "team-b",
        "replicaGroup": {"hostsPerReplica": 1, "resourcesPerHost": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": 1}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 4}}})
    world.fleet.deploy_service(svc, ADMIN)
    world.tick()

    def status():
        return world.fleet.store.get("Service", "chat").doc.status

    assert status().state == ServiceState.DEPLOYING and status().replicas_granted == 1
    world.tick(20)
    assert status().state == ServiceState.RUNNING and status().replicas_running == 1
    world.sim.set_load("chat", 4)
    world.tick(passes=3)
    world.tick(20, passes=2)
    st = status()
    assert (st.replicas_wanted, st.replicas_granted, st.replicas_running) == (4, 2, 2)   # team-b holds 2 GPUs
    assert "waiting for quota" in st.message


def test_deadline_ends_the_job_deadline_exceeded_and_never_requeues(world):
    world.sim.script_run("slow", runtime=10_000, startup=5)
    world.start()
    world.submit("slow", max_run_duration=100)
    world.tick()
    world.tick(5)
    assert world.state("slow") == JobState.RUNNING
    world.tick(99)
    assert world.state("slow") == JobState.RUNNING
    world.tick(2, passes=3)
    st = world.job("slow").status
    assert st.state == JobState.FAILED and st.reason == "DeadlineExceeded" and st.restarts == 0
    world.tick(600, passes=3)
    assert world.state("slow") == JobState.FAILED and world.sim.launch_count("slow") == 1


def test_a_broken_pool_cannot_loop_a_job_for_ever(world):
    """Every attempt loses its host: disruptions, counted on their own, end the job at maxDisruptions."""
    world.sim.script_run("doomed", runtime=10_000, startup=1)
    world.start()
    world.submit("doomed", max_restarts=0, max_disruptions=2)
    for _ in range(3):
        world.run_until("doomed", {JobState.RUNNING, JobState.FAILED}, step=1)
        if world.state("doomed") == JobState.FAILED:
            break
        world.sim.lose_host(world.sim.runs[world.job("doomed").status.ray_job_id].gang.hosts[0].name)
        world.tick(1, passes=2)
    world.run_until("doomed", {JobState.FAILED}, step=1, limit=600)
    st = world.job("doomed").status
    assert st.reason == "DisruptionLimitExceeded" and st.restarts == 0 and st.disruptions == 3
    assert world.sim.launch_count("doomed") == 3


def test_user_stop_ends_a_running_job_and_frees_its_gang(world):
    world.sim.script_run("u", runtime=10_000, startup=1)
    world.start()
    world.submit("u")
    world.run_until("u", {JobState.RUNNING}, step=1)
    run = world.job("u").status.ray_job_id
    world.fleet.stop_job("u", ADMIN)
    assert world.state("u") == JobState.STOPPING
    world.tick()
    st = world.job("u").status
    assert st.state == JobState.STOPPED and st.reason == "Stopped"
    assert world.sim.run_status(run).state.value == "STOPPED"


def test_service_delete_releases_its_quota_and_undeploys(world):
    world.sim.script_service("gone", ready_after=1)
    world.start()
    svc = Service.model_validate({"metadata": {"name": "gone"}, "spec": {
        "importPath": "serve_apps.echo:app", "queue": "team-b",
        "replicaGroup": {"hostsPerReplica": 1, "resourcesPerHost": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": 1}}}})
    world.fleet.deploy_service(svc, ADMIN)
    world.tick()
    world.tick(2)
    assert world.fleet.store.get("Service", "gone").doc.status.state == ServiceState.RUNNING
    world.fleet.delete_service("gone", ADMIN)
    world.tick()
    st = world.fleet.store.get("Service", "gone").doc.status
    assert st.state == ServiceState.DELETED and st.replicas_granted == 0
    assert world.sim.service_status("gone") is None
    assert not world.fleet.controller.quota.is_admitted("svc.gone.base")


CRASH_POINTS = ["admitted", "launched-unrecorded", "starting", "running", "stopping"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_every_step_of_an_attempt_is_repaired(world, point):
    world.sim.pool("l4-res").initial_hosts(0).provisioning(delay=10)
    world.sim.script_run("k", runtime=60, startup=5)
    world.start()
    world.submit("k")
    c = world.fleet.controller
    if point in ("admitted", "launched-unrecorded"):
        c._sync(world.clock.t)
        c._finish_stops(world.clock.t)
        c._schedule(world.clock.t)
        assert world.state("k") == JobState.ADMITTED
        if point == "launched-unrecorded":   # the backend launched; the store never heard
            world.sim.launch(c.launch_request(world.job("k")))
    elif point == "starting":
        world.tick()
        assert world.state("k") == JobState.STARTING
    elif point == "running":
        world.tick()
        world.tick(20)
        assert world.state("k") == JobState.RUNNING
    else:
        world.tick()
        world.tick(20)
        world.fleet.controller.request_stop("k", "preempted", "preempted by test")
        assert world.state("k") == JobState.STOPPING
    world.crash()
    world.run_until("k", {JobState.SUCCEEDED})
    runs = [r for r in world.sim.list_runs() if world.sim.runs[r].job == "k"]
    assert world.sim.launch_count("k") == (2 if point == "stopping" else 1) == len(runs)
    assert world.job("k").status.restarts == 0


def test_ray_job_submit_job_survives_three_spot_reclaims(world):
    """maxRestarts 0 (a ``ray job submit`` job): disruptions never count toward it."""
    world.sim.script_run("raysubmit_spot", runtime=300, checkpoint_every=20)
    world.start()
    body = {"entrypoint": "python train.py", "entrypoint_num_gpus": 1, "submission_id": "raysubmit_spot", "metadata": {"queue": "team-b"}}
    job = job_from_request(body, ADMIN, world.fleet)
    assert job.spec.failure_policy.max_restarts == 0
    world.fleet.submit_job(job, ADMIN)
    for _ in range(3):
        world.run_until("raysubmit_spot", {JobState.RUNNING})
        world.tick(40)
        run = world.sim.runs[world.job("raysubmit_spot").status.ray_job_id]
        world.sim.reclaim(run.gang.hosts[0].name, at=world.clock.t, notice=30)
        world.tick(30, passes=2)
        assert world.state("raysubmit_spot") != JobState.FAILED, world.job("raysubmit_spot").status.message
    world.run_until("raysubmit_spot", {JobState.SUCCEEDED, JobState.FAILED})
    st = world.job("raysubmit_spot").status
    assert st.state == JobState.SUCCEEDED and st.restarts == 0
    assert [i.reason for i in st.interruptions] == ["host-failure"] * 3
    assert world.sim.launch_count("raysubmit_spot") == 4


def test_lost_host_does_not_count_as_a_restart(world):
    world.sim.script_run("h", runtime=100, checkpoints=[50])
    world.start()
    world.submit("h", max_restarts=1)
    world.run_until("h", {JobState.RUNNING})
    world.tick(60)
    world.sim.lose_host(world.sim.runs[world.run_id("h", 1)].gang.hosts[0].name)
    world.tick()
    st = world.job("h").status
    assert st.interruptions and st.interruptions[-1].reason == "host-failure"
    assert st.restarts == 0
    world.run_until("h", {JobState.SUCCEEDED})
    assert world.sim.run_status(world.run_id("h", 2)).resumed_from_step == 50


def test_the_victims_of_one_cycle_are_stopped_in_two_transactions_whatever_their_number(world):
    """Every stop intent of a cycle in one commit, then every stop in a second one (not two
    commits a victim): the intents are still stored before any run is stopped."""
    for name in ("low-1", "low-2"):
        world.sim.script_run(name, runtime=1000)
    world.sim.script_run("high", runtime=50)
    world.start()
    world.submit("low-1", queue="team-b")
    world.submit("low-2", queue="team-b")
    world.tick(passes=2)
    world.tick(30)
    assert world.state("low-1") == world.state("low-2") == JobState.RUNNING
    world.submit("high", queue="team-b", workers=2, priority="production")
    transactions: list[list[str]] = [[]]

    def trace(sql: str) -> None:
        transactions[-1].append(sql)
        if sql.strip().upper() == "COMMIT":
            transactions.append([])

    db = world.fleet.store._db
    db.set_trace_callback(trace)
    try:
        world.tick()
    finally:
        db.set_trace_callback(None)
    with_event = [[i for i, tx in enumerate(transactions) if any(f"'{e}'" in sql for sql in tx)] for e in ("Stopping", "Requeued")]
    assert all(len(tx) == 1 for tx in with_event), with_event   # each kind of write in one transaction
    assert with_event[0][0] < with_event[1][0]                    # the intents committed first
    for name in ("low-1", "low-2"):
        st = world.job(name).status
        assert st.state == JobState.QUEUED and st.interruptions[-1].reason == "preempted"
    assert world.state("high") in (JobState.STARTING, JobState.RUNNING)


def test_a_waiting_job_says_why_as_a_code_in_the_api_the_ray_jobs_view_and_the_metrics(world):
    from rayfleet.api import PendingReason
    from rayfleet.server import metrics, ray_jobs_api

    world.sim.script_run("first", runtime=1000)
    world.start()
    world.submit("first", queue="team-b", workers=2)
    world.submit("second", queue="team-b", workers=2)
    world.submit("too-big", queue="team-b", workers=3)   # team-b holds 2 GPUs and has no cohort to borrow from
    assert world.job("second").status.pending_reason == PendingReason.QUEUED   # not looked at yet
    world.tick()
    assert world.state("first") == JobState.STARTING and world.job("first").status.pending_reason is None
    second, big = world.job("second").status, world.job("too-big").status
    assert second.pending_reason == PendingReason.WAITING_FOR_QUOTA and "requests 2, 0 available" in second.message
    assert big.pending_reason == PendingReason.EXCEEDS_QUOTA and "more than the queue can ever get" in big.message
    # the queue view lists the code beside the words; Ray's job views lead with it
    codes = {w["workload"]: w["code"] for w in world.fleet.queue_view("team-b")["status"]["waiting"]}
    assert codes == {"second": "WaitingForQuota", "too-big": "ExceedsQuota"}
    assert ray_jobs_api.pending_message(second).startswith(f"WaitingForQuota: {second.message}; ")   # (then its estimated start)
    text = metrics.render(world.fleet)[0].decode()
    assert 'rayfleet_queue_pending_workloads_by_reason{queue="team-b",reason="WaitingForQuota"} 1.0' in text
    assert 'rayfleet_queue_pending_workloads_by_reason{queue="team-b",reason="ExceedsQuota"} 1.0' in text
    # admitted once the first ends: the code goes with the queue
    world.tick(1000)
    world.tick()
    assert world.state("second") in (JobState.STARTING, JobState.RUNNING) and world.job("second").status.pending_reason is None


def test_a_quota_cut_while_the_service_was_down_is_reclaimed_at_restart_and_says_so(world, tmp_path):
    from rayfleet.api import PendingReason

    world.sim.script_run("big", runtime=1000)
    world.start()
    world.submit("big", queue="team-b", workers=2)
    world.tick()
    world.tick(5)
    assert world.state("big") == JobState.RUNNING
    # the service goes down; team-b's GPUs are cut from 2 to 1; it comes back over the same store
    text = Path(__file__).with_name("sim_platform.yaml").read_text()
    block = text[text.index("kind: Queue\nmetadata: {name: team-b}"):]
    cut = text.replace(block, block.replace("- {name: nvidia.com/gpu, nominalQuota: 2}", "- {name: nvidia.com/gpu, nominalQuota: 1}", 1))
    assert cut != text
    (tmp_path / "cut.yaml").write_text(cut)
    world.fleet.close()
    world.fleet = assemble(load_config([tmp_path / "cut.yaml"]), world.sim, world.dir, clock=world.clock)
    world.tick()
    job = world.job("big")
    assert job.status.state == JobState.QUEUED and job.status.pending_reason is not None
    (interruption,) = job.status.interruptions
    assert interruption.reason == "preempted"
    assert "config changed while the control service was down" in interruption.message
    assert "over the quota in force" in interruption.message
    world.tick()
    assert world.job("big").status.pending_reason == PendingReason.EXCEEDS_QUOTA   # 2 GPUs, of a queue that now holds 1
