"""The real controller, store and quota over the simulated backend, meeting capacity that comes and
goes (issue 13): spot reclaims with notice, a non-queued DWS stockout, Snap's L4 path with the way
back (activeMigration), a DWS calendar window, a faulty host cordoned and repaired, node recycling.

Every test drives ``controller.run_once(now)`` on an injected clock (the controller thread is never
started). The platform is ``sim_capacity.yaml``, its calendar window placed relative to the clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rayfleet.api import JobState, PendingReason, TrainJob
from rayfleet.backends.base import HostPhase
from rayfleet.backends.sim import SimBackend, from_config
from rayfleet.config import PlatformConfig, load_config
from rayfleet.server.auth import Principal
from rayfleet.server.main import assemble
from rayfleet.server.ray_jobs_api import job_from_request

ADMIN = Principal(team=None, admin=True, label="admin")
T0 = float(int(time.time()) // 60 * 60)     # near real time: the store stamps submissions with it
WINDOW = (T0 + 600, T0 + 600 + 3600)        # the calendar pool's window; drainBefore 600


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> PlatformConfig:
    text = Path(__file__).with_name("sim_capacity.yaml").read_text()
    path = tmp_path_factory.mktemp("cfg") / "platform.yaml"
    path.write_text(text.replace("{start}", _iso(WINDOW[0])).replace("{end}", _iso(WINDOW[1])))
    return load_config([path])


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class World:
    def __init__(self, config: PlatformConfig, tmp_path: Path):
        self.clock = Clock()
        self.sim: SimBackend = from_config(config, clock=self.clock)
        self.config, self.dir = config, tmp_path
        self.fleet = None

    def start(self) -> World:
        self.sim.up()
        self.fleet = assemble(self.config, self.sim, self.dir, clock=self.clock)
        return self

    def crash(self) -> None:
        """Drop the service and build a new one over the same store file and the same sim."""
        self.fleet.close()
        self.fleet = assemble(self.config, self.sim, self.dir, clock=self.clock)

    def tick(self, seconds: float = 0.0, passes: int = 1) -> None:
        self.clock.t += seconds
        for _ in range(passes):
            self.fleet.controller.run_once(self.clock.t)

    def submit(self, name: str, queue: str, *, workers: int = 1, max_restarts: int = 3, storage: str | None = None,
               max_run_duration: float | None = None) -> None:
        spec: dict = {"entrypoint": "python train.py", "queue": queue, "failurePolicy": {"maxRestarts": max_restarts},
                      "gang": {"workers": workers, "resourcesPerWorker": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": 1}}}
        if storage:
            spec["checkpoint"] = {"storagePath": storage}
        if max_run_duration:
            spec["maxRunDuration"] = max_run_duration
        self.fleet.submit_job(TrainJob.model_validate({"metadata": {"name": name}, "spec": spec}), ADMIN)

    def job(self, name: str) -> TrainJob:
        return self.fleet.store.get("TrainJob", name).doc

    def state(self, name: str) -> JobState:
        return self.job(name).status.state

    def events(self, name: str, kind: str = "TrainJob") -> list:
        return self.fleet.store.all_events(kind, name)

    def types(self, name: str) -> list[str]:
        return [e.type for e in self.events(name)]

    def run(self, name: str):
        return self.sim.runs[self.job(name).status.ray_job_id]

    def run_until(self, name: str, states: set[JobState], *, step: float = 5.0, limit: float = 3600.0) -> None:
        end = self.clock.t + limit
        while self.state(name) not in states:
            assert self.clock.t < end, f"{name} still {self.state(name)} ({self.job(name).status.message})"
            self.tick(step)


@pytest.fixture
def world(config, tmp_path):
    w = World(config, tmp_path)
    yield w
    if w.fleet is not None:
        w.fleet.close()


def test_ray_job_submit_job_survives_three_spot_reclaims_resuming_from_the_notice_checkpoint(world):
    """maxRestarts 0; each reclaim's notice asks for a checkpoint, the job moves on it and resumes there."""
    world.sim.script_run("raysubmit_spot", runtime=300, checkpoint_every=100)
    world.start()
    body = {"entrypoint": "python train.py", "entrypoint_num_gpus": 1, "submission_id": "raysubmit_spot", "metadata": {"queue": "spot"}}
    job = job_from_request(body, ADMIN, world.fleet)
    assert job.spec.failure_policy.max_restarts == 0
    world.fleet.submit_job(job, ADMIN)
    taken = []
    for _ in range(3):
        world.run_until("raysubmit_spot", {JobState.RUNNING}, step=1)
        world.tick(37)
        host = world.run("raysubmit_spot").hosts[0]
        world.sim.reclaim(host, notice=30)
        world.tick(1)
        st = world.job("raysubmit_spot").status
        assert st.notice is not None and (st.notice.kind, st.notice.host) == ("reclaim", host)
        taken.append(world.sim.run_status(st.ray_job_id).last_checkpoint_step)   # asked for at the notice
        world.tick(1)
        assert world.state("raysubmit_spot") in (JobState.QUEUED, JobState.ADMITTED, JobState.STARTING), world.job("raysubmit_spot").status.message
    world.run_until("raysubmit_spot", {JobState.SUCCEEDED, JobState.FAILED})
    st = world.job("raysubmit_spot").status
    assert st.state == JobState.SUCCEEDED and st.restarts == 0 and st.disruptions == 3
    assert [i.reason for i in st.interruptions] == ["reclaimed"] * 3
    assert [i.resumed_from_step for i in st.interruptions] == taken and taken == sorted(taken) and taken[0] > 0
    assert world.sim.launch_count("raysubmit_spot") == 4 and world.types("raysubmit_spot").count("Notice") == 3
    notice = next(e for e in world.events("raysubmit_spot") if e.type == "Notice")
    assert "reclaim notice" in notice.message and "host" in notice.message and notice.data["deadline"]


def test_a_non_queued_stockout_goes_to_the_next_step_at_once(world):
    world.sim.pool("l4-now").stockout(until=T0 + 10_000)
    world.sim.script_run("now", runtime=50)
    world.start()
    world.submit("now", "now")
    world.tick()
    world.tick(passes=2)
    st = world.job("now").status
    assert st.flavor == "l4-spot" and st.state in (JobState.STARTING, JobState.RUNNING)   # not after waitForCapacity (600 s)
    fb = next(e for e in world.events("now") if e.type == "CapacityFallback")
    assert fb.data["stockout"] is True and "l4-now" in fb.message and "next: l4-spot" in fb.message
    world.run_until("now", {JobState.SUCCEEDED})
    assert world.job("now").status.restarts == 0 and world.job("now").status.disruptions == 1


def test_snaps_l4_path_reservation_dws_cancelled_spot_and_back_to_the_reservation(world):
    """Reservation full -> DWS flex-start -> the request waits too long (resubmitAfter) -> cancelled
    -> spot; when the reservation frees, activeMigration moves the job back at its next checkpoint."""
    world.sim.pool("l4-dws").provisioning(delay=10_000)
    world.sim.script_run("holder", runtime=200)
    world.sim.script_run("snap", runtime=700, checkpoint_every=50)
    world.start()
    world.submit("holder", "holder", workers=2)      # another team fills the shared reservation
    world.run_until("holder", {JobState.RUNNING}, step=1)
    world.submit("snap", "snap")
    world.tick()
    assert world.job("snap").status.flavor == "l4-res" and world.state("snap") == JobState.STARTING   # quota admits, no host
    world.run_until("snap", {JobState.RUNNING}, step=5, limit=300)
    types = world.types("snap")
    flavors = [e.data.get("flavor") for e in world.events("snap") if e.type == "Admitted"]
    # DWS: launched at +30, resubmitted at +60 and +90 (resubmitAfter 30), given up at +100 (waitForCapacity 70)
    assert flavors == ["l4-res", "l4-dws", "l4-dws", "l4-dws", "l4-spot"], flavors
    assert types.count("CapacityResubmit") == 2 and types.count("CapacityFallback") == 2
    world.run_until("holder", {JobState.SUCCEEDED})
    world.run_until("snap", {JobState.QUEUED, JobState.ADMITTED, JobState.STARTING}, step=5, limit=200)
    assert "Migrating" in world.types("snap")
    world.run_until("snap", {JobState.RUNNING}, step=1, limit=60)
    st = world.job("snap").status
    assert st.flavor == "l4-res" and st.interruptions[-1].reason == "migrated" and st.restarts == 0
    assert st.interruptions[-1].resumed_from_step and st.interruptions[-1].resumed_from_step % 50 == 0
    migrating = next(e for e in world.events("snap") if e.type == "Migrating")
    assert migrating.data["to"] == "l4-res" and migrating.data["from"] == "l4-spot"
    world.run_until("snap", {JobState.SUCCEEDED}, step=20, limit=2000)


def test_no_migration_while_the_preferred_step_is_full(world):
    world.sim.pool("l4-dws").provisioning(delay=10_000)
    world.sim.script_run("holder", runtime=5000)
    world.sim.script_run("snap", runtime=500, checkpoint_every=50)
    world.start()
    world.submit("holder", "holder", workers=2)
    world.run_until("holder", {JobState.RUNNING}, step=1)
    world.submit("snap", "snap")
    world.run_until("snap", {JobState.RUNNING}, step=5, limit=300)
    world.run_until("snap", {JobState.SUCCEEDED}, limit=1000)
    assert "Migrating" not in world.types("snap") and world.job("snap").status.flavor == "l4-spot"


def test_a_calendar_window_opening_and_closing_with_work_on_it(world):
    world.sim.script_run("early", runtime=10_000, checkpoint_every=100)
    world.sim.script_run("long", runtime=100)
    world.sim.script_run("mover", runtime=10_000, checkpoint_every=100)
    world.start()
    world.submit("early", "calonly", storage="/ckpt")            # checkpoints: may run into the drain
    world.tick()
    early = world.job("early").status
    assert early.state == JobState.QUEUED and "opens in 600s" in early.message
    assert early.pending_reason == PendingReason.WAITING_FOR_CALENDAR_WINDOW
    # its estimated start: the window's opening
    assert early.estimated_start.timestamp() == WINDOW[0] and early.estimated_start_reason == "when its calendar window opens"
    world.tick(590)
    assert world.state("early") == JobState.QUEUED and world.sim.launch_count("early") == 0
    world.tick(10)
    world.tick(1, passes=2)
    assert world.job("early").status.flavor == "l4-cal" and world.state("early") == JobState.RUNNING
    # does not checkpoint and cannot end before the drain: never admitted on the window
    world.submit("long", "cal", max_run_duration=4000)
    world.submit("mover", "cal", storage="/ckpt")
    world.tick(passes=2)
    assert world.job("long").status.flavor == "l4-spot" and world.job("mover").status.flavor == "l4-cal"
    drain = WINDOW[1] - 600
    world.tick(drain - world.clock.t - 1)
    assert world.state("mover") == JobState.RUNNING and world.job("mover").status.notice is None
    world.tick(1)
    world.tick(1, passes=2)
    mover = world.job("mover").status
    assert mover.interruptions and mover.interruptions[-1].reason == "window-end" and mover.restarts == 0
    world.run_until("mover", {JobState.RUNNING}, step=1, limit=60)
    mover = world.job("mover").status
    assert mover.flavor == "l4-spot" and mover.interruptions[-1].resumed_from_step == world.sim.run_status(
        mover.ray_job_id).resumed_from_step and mover.interruptions[-1].resumed_from_step > 0
    # its notice came just as a scheduled checkpoint was saved: it moves at the next one (or near the deadline)
    world.run_until("early", {JobState.QUEUED}, step=5, limit=200)
    world.tick(1)
    early = world.job("early").status
    assert early.interruptions[-1].reason == "window-end" and early.last_checkpoint_step > 3000
    assert "calendar window is closing" in early.message
    notice = next(e for e in world.events("mover") if e.type == "Notice")
    assert notice.data["kind"] == "window-end" and notice.data["deadline"] == pytest.approx(WINDOW[1])
    world.tick(WINDOW[1] + 10 - world.clock.t, passes=2)
    assert world.state("early") == JobState.QUEUED and world.sim.launch_count("early") == 1   # nothing after it closes


def test_a_faulty_host_is_cordoned_kept_empty_and_back_after_repair(world):
    world.start()
    bad, good = world.sim.pool("l4-od").hosts()[:2]
    world.sim.fault(bad, message=f"XID 79 on {bad}")
    world.sim.script_run("flaky", runtime=40)
    world.submit("flaky", "od", max_restarts=5)
    world.run_until("flaky", {JobState.SUCCEEDED}, step=1, limit=300)
    runs = sorted((r for r in world.sim.runs.values() if r.job == "flaky"), key=lambda r: r.attempt)
    assert [r.hosts for r in runs] == [(bad,)] * 3 + [(good,)]     # nothing placed on the cordoned host
    assert world.job("flaky").status.restarts == 3
    cordoned = next(e for e in world.events("flaky") if e.type == "HostCordoned")
    assert cordoned.data["host"] == bad and bad in cordoned.message and "3 runs failed" in cordoned.message
    assert [e.type for e in world.events(bad, "Host")].count("RunFailed") == 3
    phase = {h.name: h.phase for h in world.sim.hosts()}
    assert phase[bad] in (HostPhase.CORDONED, HostPhase.REPAIRING) and bad in world.fleet.controller.health.cordoned
    world.tick(200, passes=2)
    assert {h.name: h.phase for h in world.sim.hosts()}[bad] == HostPhase.READY
    assert "Uncordoned" in [e.type for e in world.events(bad, "Host")]
    assert bad not in world.fleet.controller.health.cordoned


def test_a_host_reported_unhealthy_is_cordoned_and_its_run_moved(world):
    world.sim.script_run("victim", runtime=1000, checkpoint_every=100)
    world.start()
    world.submit("victim", "od")
    world.run_until("victim", {JobState.RUNNING}, step=1)
    world.tick(50)
    host = world.run("victim").hosts[0]
    world.sim.set_unhealthy(host)
    world.tick()
    st = world.job("victim").status
    assert (st.notice.kind, st.notice.host) == ("unhealthy", host) and st.state == JobState.RUNNING   # checkpoint asked for
    assert "Cordoned" in [e.type for e in world.events(host, "Host")]
    world.tick(1, passes=2)
    world.run_until("victim", {JobState.RUNNING}, step=1, limit=60)
    st = world.job("victim").status
    assert st.interruptions[-1].reason == "unhealthy-host" and st.restarts == 0
    assert world.run("victim").hosts[0] != host and st.interruptions[-1].resumed_from_step >= 50   # saved at the notice
    assert "Cordoned" in [e.type for e in world.events(host, "Host")]


def test_a_recycle_notice_moves_a_training_gang(world):
    world.sim.script_run("gang", runtime=1500, checkpoint_every=100)
    world.start()
    world.submit("gang", "dws", workers=2)
    world.run_until("gang", {JobState.RUNNING}, step=1)
    up = world.clock.t
    world.tick(800 - (world.clock.t - up) - 5)                      # hosts live 1000 s, recycled 200 s before
    assert world.job("gang").status.notice is None
    world.tick(10)
    assert world.job("gang").status.notice.kind == "recycle"
    world.run_until("gang", {JobState.QUEUED, JobState.ADMITTED, JobState.STARTING}, step=5, limit=200)
    st = world.job("gang").status
    assert st.interruptions[-1].reason == "recycled" and st.restarts == 0 and world.clock.t < up + 1000   # before the hosts go
    world.run_until("gang", {JobState.RUNNING}, step=1, limit=300)
    st = world.job("gang").status
    assert st.flavor == "l4-dws" and st.interruptions[-1].resumed_from_step >= 700
    notice = next(e for e in world.events("gang") if e.type == "Notice")
    assert notice.data["kind"] == "recycle" and "recycle notice" in notice.message
    world.run_until("gang", {JobState.SUCCEEDED}, limit=3000)


def test_failure_counts_survive_a_restart_of_the_service(world):
    """The per-host counts live in memory, rebuilt from the store's Host events of the window."""
    world.start()
    bad = world.sim.pool("l4-od").hosts()[0]
    world.sim.fault(bad)
    world.sim.script_run("flaky", runtime=40)
    world.submit("flaky", "od", max_restarts=5)
    while world.job("flaky").status.restarts < 2:
        world.tick(1)
    world.crash()
    assert world.fleet.controller.health.count(bad, world.clock.t) == 2
    while world.job("flaky").status.restarts < 3:
        world.tick(1)
    assert "HostCordoned" in world.types("flaky") and bad in world.fleet.controller.health.cordoned
