"""Ray Train gangs on a real local Ray cluster (the session's shared cluster, tests/conftest.py).

What is proven, each on real Ray processes:
- a multi-host TPU gang (the second train app, tiny_lm, on a v5e 2x4 slice) runs one worker per
  host, every worker on a host of that slice (from the workers' own node ids), while another gang
  for the same pool waits, with its reason, without any worker;
- killing a host's raylet mid-run makes that attempt LOST, stops and frees the rest of the gang,
  and keeps its checkpoint;
- a gang that can never fit fails at once with its reason and starts nothing;
- an entry-point job gets its gang as one placement group it can schedule into.

A rerun resuming from the checkpointed step, and a running gang preempted as a whole (with tiny_lm
on GPU hosts), are shown end to end through the control service in
tests/e2e/test_sdk_and_preemption.py; ddp_synthetic's checkpoint on a notice in
tests/backends/test_local_capacity.py. A Ray Train attempt costs about half a minute of this
machine's two cores, so each of these is shown once.
"""

from __future__ import annotations

import json
import sys

import pytest
from train_helpers import live_train_workers, tpu_request, wait_for

from rayfleet.api import Accelerator, PlacementStrategy
from rayfleet.api.labels import LABEL_POOL, LABEL_TPU_SLICE
from rayfleet.backends.base import LaunchRequest, RunState

pytestmark = pytest.mark.slow


def test_multi_host_tpu_gang_one_worker_per_host_waits_and_loses_a_host_as_a_whole(pools_backend, tmp_path):
    """A Ray Train gang (tiny_lm) over a v5e 2x4 slice: one worker per host, every worker on a host
    of that slice, while a second gang for the same pool waits without any worker; a lost host
    ends the attempt as LOST and frees the rest of its gang, its checkpoint kept for the next."""
    b = pools_backend
    ckpt = str(tmp_path / "ckpt-lm")
    req = tpu_request(b, "lm", ckpt_dir=ckpt)
    plan = b.plan(req)
    assert plan.strategy == "STRICT_SPREAD"
    assert plan.tpu_slice == "tpu-0"
    assert b.launch(req) == "lm-1"
    assert b.launch(req) == "lm-1"  # idempotent per run id
    running = wait_for(b, "lm-1", lambda s: s.state == RunState.RUNNING, what="RUNNING")

    # Every worker reported its own node id: one per host of slice tpu-0 (4 chips each).
    workers = b.run_dir("lm-1").workers()
    assert [w["rank"] for w in workers] == [0, 1]
    worker_nodes = {w["node_id"] for w in workers}
    assert worker_nodes == set(running.node_ids)
    assert len(worker_nodes) == 2
    assert worker_nodes <= b.pool_node_ids("tpu")
    labels = {n["node_id"]: n["labels"] for n in b.nodes()}
    assert {labels[n][LABEL_POOL] for n in worker_nodes} == {"tpu"}
    assert {labels[n][LABEL_TPU_SLICE] for n in worker_nodes} == {"tpu-0"}
    assert running.started_at is not None and running.resumed_from_step is None
    assert b.capacity()["tpu"].free_hosts == 0

    # A second gang for the same pool waits for its placement group, without starting any worker.
    b.launch(tpu_request(b, "w", ckpt_dir=str(tmp_path / "ckpt-w")))
    w = wait_for(b, "w-1", lambda s: "placement group" in s.message, timeout=120, what="waiting for placement")
    assert w.state == RunState.PENDING
    assert "pool 'tpu'" in w.message
    b.stop("w-1")
    assert b.run_status("w-1").state == RunState.STOPPED
    assert b.run_dir("w-1").workers() == []

    # A host is lost mid-run: the run is LOST and the rest of the gang is stopped and freed.
    s = wait_for(b, "lm-1", lambda s: (s.last_checkpoint_step or 0) >= 5, what="checkpoint >= 5")
    victim = next(n["host"] for n in b.nodes() if n["node_id"] == s.node_ids[0])
    b.kill_host(victim)
    lost = wait_for(b, "lm-1", lambda s: s.state.terminal, timeout=120, what="LOST")
    assert lost.state == RunState.LOST, lost
    assert victim in lost.message
    assert live_train_workers(b, "lm-1") == []
    cap = b.capacity()["tpu"]
    assert (cap.ready_hosts, cap.free_hosts) == (1, 1)
    step1 = lost.last_checkpoint_step
    assert step1 is not None and step1 >= s.last_checkpoint_step

    # The host comes back (up() repairs dead hosts) for the tests that follow.
    b.up()
    assert b.capacity()["tpu"].ready_hosts == 2
    assert {"lm-1", "w-1"} <= set(b.list_runs())


def test_gang_that_cannot_fit_fails_at_once_and_starts_nothing(pools_backend):
    b = pools_backend
    req = LaunchRequest(
        job_id="big",
        attempt=1,
        pool="l4",
        pool_spec=b.pools["l4"],
        workers=5,   # the pool grows to 4 hosts at most
        resources_per_worker={"nvidia.com/gpu": 1},
        accelerator=Accelerator.L4,
        placement_strategy=PlacementStrategy.STRICT_SPREAD,
        train_app="train_apps.ddp_synthetic",
    )
    b.launch(req)
    s = b.run_status("big-1")
    assert s.state == RunState.FAILED
    assert "STRICT_SPREAD" in s.message and "5 workers" in s.message and "4 hosts" in s.message
    assert b.jobs.info("big-1") is None  # no Ray job, no placement group, no worker
    assert b.run_dir("big-1").workers() == []
    assert s.message in b.logs("big-1")


def test_entrypoint_job_gets_its_gang_as_one_placement_group(pools_backend):
    b = pools_backend
    program = (
        "import json, os, ray\n"
        "from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy\n"
        "from rayfleet.train.gang import current_placement_group\n"
        "ray.init()\n"
        "pg = current_placement_group()\n"
        "res = json.loads(os.environ['RAYFLEET_BUNDLE_RESOURCES'])\n"
        "custom = {k: v for k, v in res.items() if k not in ('CPU', 'GPU')}\n"
        "f = ray.remote(lambda: ray.get_runtime_context().get_node_id())\n"
        "refs = [f.options(num_cpus=res.get('CPU', 0), resources=custom, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)).remote() for i in range(int(os.environ['RAYFLEET_WORKERS']))]\n"
        "print('GANG-NODES ' + json.dumps(ray.get(refs)))\n"
        "print('GANG-NAME ' + os.environ['RAYFLEET_PLACEMENT_GROUP'])\n"
    )
    script = b.data_dir / "gang_program.py"
    script.write_text(program)
    req = LaunchRequest(
        job_id="ep",
        attempt=1,
        pool="tpu",
        pool_spec=b.pools["tpu"],
        workers=2,
        resources_per_worker={"google.com/tpu": 4},
        accelerator=Accelerator.TPU_V5E,
        placement_strategy=None,
        entrypoint=f"{sys.executable} {script}",
    )
    b.launch(req)
    done = wait_for(b, "ep-1", lambda s: s.state.terminal, what="entrypoint done")
    logs = b.logs("ep-1")
    assert done.state == RunState.SUCCEEDED, logs[-3000:]
    nodes = json.loads(next(line for line in logs.splitlines() if line.startswith("GANG-NODES ")).split(" ", 1)[1])
    assert sorted(nodes) == sorted(done.node_ids)
    assert len(set(nodes)) == 2 and set(nodes) <= b.pool_node_ids("tpu")
    assert "GANG-NAME rayfleet-ep-1" in logs
    # The placement group is removed with the job: the slice is free again.
    assert b.capacity()["tpu"].free_hosts == 2
