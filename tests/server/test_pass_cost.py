"""A controller pass costs the same however many finished jobs the store holds (issue 14): it reads
only the jobs in the states it acts on, through the (kind, state, seq) index, never a scan of history.

Measured structurally, not by time: the records the store decodes in a pass, and the SQLite virtual
machine instructions the pass executes (a progress handler counts them), before and after 1,000
finished jobs are added."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rayfleet.api import JobState, TrainJob
from rayfleet.backends.sim import from_config
from rayfleet.config import load_config
from rayfleet.server.auth import Principal
from rayfleet.server.fleet import Fleet
from rayfleet.server.main import assemble
from rayfleet.server.store import Store

CONFIG = load_config([Path(__file__).with_name("sim_platform.yaml")])
ADMIN = Principal(team=None, admin=True, label="admin")
STEP = 10  # the progress handler is called every STEP VM instructions


def _job(name: str) -> TrainJob:
    return TrainJob.model_validate({"metadata": {"name": name}, "spec": {
        "entrypoint": "python train.py", "queue": "team-a",
        "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": 1}}}})


def _pass_cost(store: Store, run_pass) -> tuple[int, int]:
    """(records decoded or read again from the decode memo, VM instructions / STEP) of one pass."""
    decoded, steps = [0], [0]
    inner = store._decode

    def counting(kind, row, **kw):   # a record a shared read takes from the store's memo counts too
        decoded[0] += 1
        return inner(kind, row, **kw)

    def tick() -> int:
        steps[0] += 1
        return 0

    store._decode = counting  # type: ignore[method-assign]
    store._db.set_progress_handler(tick, STEP)
    try:
        run_pass()
    finally:
        store._db.set_progress_handler(None, STEP)
        del store._decode
    return decoded[0], steps[0]


@contextmanager
def _full_fleet(tmp_path) -> Iterator[tuple[Fleet, Callable[[], None]]]:
    """A fleet over the sim whose quota is full (9 long jobs: some run, the rest queue), and one
    controller pass at the current time."""
    t = [float(int(time.time()))]
    sim = from_config(CONFIG, clock=lambda: t[0])
    sim.up()
    fleet = assemble(CONFIG, sim, tmp_path, clock=lambda: t[0])
    try:
        for i in range(9):
            sim.script_run(f"live-{i}", runtime=10_000)
            fleet.submit_job(_job(f"live-{i}"), ADMIN)
        for _ in range(3):
            t[0] += 1
            fleet.controller.run_once(t[0])
        yield fleet, lambda: fleet.controller.run_once(t[0])
    finally:
        fleet.close()


def test_a_pass_does_not_read_finished_jobs(tmp_path):
    with _full_fleet(tmp_path) as (fleet, run_pass):
        states = {r.doc.status.state for r in fleet.store.list("TrainJob")}  # type: ignore[attr-defined]
        assert JobState.RUNNING in states and JobState.QUEUED in states
        now = fleet.clock()
        before = _pass_cost(fleet.store, run_pass)
        for i in range(1000):
            done = _job(f"done-{i}")
            done.metadata.uid = f"uid-{i}"
            done.status.state = JobState.SUCCEEDED
            fleet.store.create(done, team="team-a", event=None, now=now)
        after = _pass_cost(fleet.store, run_pass)
        assert fleet.store.count("TrainJob", [JobState.SUCCEEDED.value]) == 1000
        assert after[0] == before[0] > 0
        # a walk over 1,000 more rows costs tens of thousands of instructions; a deeper index a few dozen
        assert after[1] - before[1] < 1000 // STEP, (before, after)


def _backlog(store: Store, n: int, now: float, *, start: int = 0) -> None:
    """``n`` jobs QUEUED in team-a, as submission stores them (durability off for the bulk load only)."""
    base = _job("queued")
    base.status.state = JobState.QUEUED
    base.status.message = "queued in team-a"
    store._db.execute("PRAGMA synchronous=OFF")
    try:
        for i in range(start, start + n):
            meta = base.metadata.model_copy(update={"name": f"queued-{i}", "uid": f"q-{i}"})
            store.create(base.model_copy(update={"metadata": meta}), team="team-a", event=None, now=now)
    finally:
        store._db.execute("PRAGMA synchronous=FULL")


def test_a_pass_reads_the_heads_of_a_queue_not_its_backlog(tmp_path):
    with _full_fleet(tmp_path) as (fleet, run_pass):
        now = fleet.clock()
        _backlog(fleet.store, 50, now)
        small = _pass_cost(fleet.store, run_pass)
        _backlog(fleet.store, 4950, now, start=50)
        big = _pass_cost(fleet.store, run_pass)
        assert fleet.store.count("TrainJob", [JobState.QUEUED.value], queue="team-a") >= 5000
        k = fleet.controller.heads.per_queue
        launched = fleet.store.count("TrainJob", [JobState.STARTING.value, JobState.RUNNING.value])
        # (no more: a queue whose heads all waited offers fewer of them the next pass, queue_heads.MIN_HEADS)
        assert big[0] <= small[0] <= 2 * launched + k, (small, big)
        assert big[1] - small[1] < 500, (small, big)   # no walk over 4,950 more rows
        # the queue's status counts the whole backlog, not only the heads the cycle looked at
        assert fleet.queue_view("team-a")["status"]["pending"] >= 5000


def test_a_pass_only_looks_at_running_jobs_with_nothing_to_do(tmp_path):
    """A running job whose run reports nothing new is not worked on (no observe, notices, fallback
    or deadline check: ``Controller._quiet``); one that has something new is."""
    with _full_fleet(tmp_path) as (fleet, run_pass):
        controller = fleet.controller
        running = [r.name for r in fleet.store.list("TrainJob", states=[JobState.RUNNING.value])]
        assert running
        worked: list[str] = []
        inner = controller._sync_one

        def counting(job, *args, **kw):
            worked.append(job.name)
            return inner(job, *args, **kw)

        controller._sync_one = counting  # type: ignore[method-assign]
        run_pass()
        assert worked == []          # every running job: nothing new
        # one run checkpoints: that job, and only it, is looked at (its newer step is recorded)
        sim = controller.backend
        run = sim.runs[fleet.store.get("TrainJob", running[0]).doc.status.ray_job_id]  # type: ignore[attr-defined]
        run.requested_checkpoint = 7
        run_pass()
        assert worked == [running[0]]
        assert fleet.store.get("TrainJob", running[0]).doc.status.last_checkpoint_step == 7  # type: ignore[attr-defined]
