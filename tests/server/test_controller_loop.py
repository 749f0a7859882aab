"""The controller's own thread (``Controller.start``) over the simulated backend: API calls that need
the controller's lock are served between passes, and a burst of them is followed by one pass, not
one each. Threads only (no process): the fast tier."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rayfleet.api import JobState, TrainJob
from rayfleet.backends.sim import from_config
from rayfleet.config import load_config
from rayfleet.server.auth import Principal
from rayfleet.server.main import assemble

CONFIG = load_config([Path(__file__).with_name("sim_platform.yaml")])
ADMIN = Principal(team=None, admin=True, label="admin")
BURST = 30
PASS_S = 0.1  # each pass made this slow (a real backend's calls), inside the pass's lock


def _job(name: str) -> TrainJob:
    # more GPUs than team-a's queue may ever hold at once: the jobs stay QUEUED
    return TrainJob.model_validate({"metadata": {"name": name}, "spec": {
        "entrypoint": "python train.py", "queue": "team-a",
        "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": 1}}}})


def test_a_burst_of_stops_is_served_between_passes_and_followed_by_one_pass(tmp_path):
    sim = from_config(CONFIG)
    sim.up()
    fleet = assemble(CONFIG, sim, tmp_path, controller_interval=1.0)
    controller = fleet.controller
    slow_sync = controller._sync
    passes: list[tuple[float, float]] = []

    def sync(now: float) -> None:  # runs inside run_once's lock
        start = time.monotonic()
        time.sleep(PASS_S)
        slow_sync(now)
        passes.append((start, time.monotonic()))

    controller._sync = sync  # type: ignore[method-assign]
    names = [f"b-{i:02d}" for i in range(BURST)]
    for name in names:
        fleet.submit_job(_job(name), ADMIN)
    controller.start()
    try:
        deadline = time.monotonic() + 30
        while len(passes) < 2:  # the loop is running
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # Stop the queued ones (not the admitted ones) one after another, as a client does.
        queued = [n for n in names if fleet.store.get("TrainJob", n).doc.status.state == JobState.QUEUED]
        assert len(queued) >= BURST // 2
        before = len(passes)
        t0 = time.monotonic()
        for name in queued:
            assert controller.request_stop(name).status.state == JobState.STOPPED
        during = [p for p in passes[before:] if p[0] < time.monotonic()]
        # Each stop waited for at most the pass running when it came, not for a pass of its own.
        assert len(during) <= 3, (len(during), time.monotonic() - t0)
        # ... and the passes go on after the burst.
        seen = len(passes)
        while len(passes) == seen:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert all(fleet.store.get("TrainJob", n).doc.status.state == JobState.STOPPED for n in queued)
    finally:
        controller.stop()
        fleet.close()


def test_a_caller_waiting_for_the_lock_goes_before_the_next_pass(tmp_path):
    sim = from_config(CONFIG)
    sim.up()
    fleet = assemble(CONFIG, sim, tmp_path, controller_interval=0.0)  # back-to-back passes
    controller = fleet.controller
    fleet.submit_job(_job("one"), ADMIN)
    slow_sync = controller._sync
    in_pass = threading.Event()

    def sync(now: float) -> None:
        in_pass.set()
        time.sleep(PASS_S)
        slow_sync(now)

    controller._sync = sync  # type: ignore[method-assign]
    controller.start()
    try:
        assert in_pass.wait(10)
        cycles = controller.cycles
        controller.request_stop("one")
        # The loop, running passes back to back, let the call in after the pass it was waiting for.
        assert controller.cycles <= cycles + 1
        assert fleet.store.get("TrainJob", "one").doc.status.state in (JobState.STOPPED, JobState.STOPPING)
    finally:
        controller.stop()
        fleet.close()


def test_the_loop_wakes_when_a_simulated_run_ends_not_at_its_next_tick(tmp_path):
    """TimedBackend: with a 5 s tick, a 0.3 s run is seen SUCCEEDED (its quota given back) within a
    fraction of a second of its end; and a clock that stands still never makes the loop spin."""
    sim = from_config(CONFIG)
    sim.up()
    sim.script_run("short", runtime=0.3)
    fleet = assemble(CONFIG, sim, tmp_path, controller_interval=5.0)
    small = TrainJob.model_validate({"metadata": {"name": "short"}, "spec": {
        "entrypoint": "python train.py", "queue": "team-a", "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 1}}}})
    fleet.controller.start()
    try:
        t0 = time.monotonic()
        fleet.submit_job(small, ADMIN)
        while time.monotonic() - t0 < 4.5 and fleet.store.get("TrainJob", "short").doc.status.state != JobState.SUCCEEDED:
            time.sleep(0.02)
        took = time.monotonic() - t0
    finally:
        fleet.close()
    assert fleet_state(tmp_path) == JobState.SUCCEEDED and took < 2.0, took   # a tick would have taken 5 s

    frozen = from_config(CONFIG, clock=lambda: 1000.0)
    frozen.up()
    frozen.script_run("short", runtime=0.3)
    still = assemble(CONFIG, frozen, tmp_path / "still", clock=lambda: 1000.0, controller_interval=5.0)
    still.submit_job(small, ADMIN)
    still.controller.run_once(1000.0)
    assert still.controller._idle_s() <= 5.0
    assert still.controller._idle_s() == 5.0   # the clock did not move: wait the tick, not 1 ms again and again
    still.close()


def fleet_state(data: Path) -> JobState:
    from rayfleet.server.store import Store
    return Store(data / "rayfleet.db").get("TrainJob", "short").doc.status.state  # type: ignore[attr-defined]
