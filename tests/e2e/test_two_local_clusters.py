"""Two local Ray clusters in one platform (issue 15): ``rayfleet serve`` over two Cluster documents,
each a real local Ray cluster with the same pool. A Train job runs on one; that cluster is
cordoned with drain through the SDK; the job checkpoints, moves to the other cluster and resumes
there from its checkpoint (the clusters share one checkpoint directory, as GKE clusters share a
bucket), a disruption and not a restart. Work submitted while the cluster is cordoned goes to the
other one; uncordoned (and the other cordoned), it takes work again."""

from __future__ import annotations

import hashlib
import shutil
import time

import pytest
from service_process import RayfleetService, free_port

import rayfleet
from rayfleet.backends import local_procs, make_backend, shared_checkpoint_root
from rayfleet.config import load_config

pytestmark = pytest.mark.slow

CLUSTER = """\
kind: Cluster
metadata: {{name: {name}}}
spec:
  backend: local
  local: {{objectStoreMemory: 80Mi, headCpus: 1, servePort: {port}, tempDir: {temp}}}
  startTimeout: 300
  failover: {{unreachableAfter: 120}}
---
"""

PLATFORM = """\
kind: Pool
metadata: {name: cpu}
spec: {machineType: n2-standard-4, cpuPerHost: 4, memoryPerHost: 16Gi, minReplicas: 1, maxReplicas: 1}
---
kind: Flavor
metadata: {name: cpu}
spec: {pool: cpu}
---
kind: Team
metadata: {name: team-a}
---
kind: Queue
metadata: {name: team-a}
spec:
  team: team-a
  resourceGroups:
    - coveredResources: [cpu, memory]
      flavors:
        - name: cpu
          resources: [{name: cpu, nominalQuota: 4}, {name: memory, nominalQuota: 16Gi}]
"""

NAMES = ("east", "west")


def _train(name: str, steps: int) -> rayfleet.TrainJob:
    return rayfleet.TrainJob.model_validate({"metadata": {"name": name}, "spec": {
        "queue": "team-a",
        "trainApp": {"module": "train_apps.tiny_lm", "config": {"steps": steps, "checkpoint_every": 5, "step_sleep_s": 0.25}},
        "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 1, "memory": "2Gi"}}}})


def _command(name: str) -> rayfleet.TrainJob:
    return rayfleet.TrainJob.model_validate({"metadata": {"name": name}, "spec": {
        "queue": "team-a", "entrypoint": "python -c \"print('hello from', __import__('os').environ['RAYFLEET_WORKERS'])\"",
        "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 1, "memory": "1Gi"}}}})


def _until(what, check, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def two_clusters(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-clusters")
    temps = {n: f"/tmp/rf-{n}-{hashlib.sha1(str(root).encode()).hexdigest()[:6]}" for n in NAMES}
    config = root / "platform.yaml"
    config.write_text("".join(CLUSTER.format(name=n, port=free_port(), temp=temps[n]) for n in NAMES) + PLATFORM)
    svc = RayfleetService(root / "data", config)
    svc.start(timeout=400)
    try:
        yield svc
    finally:
        svc.stop()
        make_backend(load_config([config]), svc.data_dir).down()
        for temp in temps.values():
            assert not local_procs.cluster_pids(temp), f"processes of cluster {temp} survived down()"
            shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(shared_checkpoint_root(svc.data_dir), ignore_errors=True)


def test_a_job_on_a_drained_cluster_resumes_on_the_other_from_its_checkpoint(two_clusters):
    svc = two_clusters
    admin = rayfleet.connect(svc.url, token=svc.token())
    team = rayfleet.connect(svc.url, token=svc.token("team-a"))
    assert [(c["metadata"]["name"], c["status"]["state"]) for c in admin.clusters()] == [("east", "Up"), ("west", "Up")]

    job = team.submit(_train("moves", steps=24))
    st = _until("a checkpoint on the first cluster",
                lambda: (s := job.status())["state"] == "RUNNING" and (s.get("lastCheckpointStep") or 0) >= 5 and s, 300)
    first = st["cluster"]
    other = "west" if first == "east" else "east"
    assert first in NAMES and st["attempt"] == 1

    admin.cordon_cluster(first, drain=True, reason="maintenance")
    drained = {c["metadata"]["name"]: c["status"] for c in admin.clusters()}[first]
    assert drained["cordoned"] and drained["drain"] and drained["cordonReason"] == "maintenance"

    # work submitted while the cluster is cordoned goes to the other one
    hello = team.submit(_command("while-cordoned"))
    moved = _until("the job running on the other cluster",
                   lambda: (s := job.status())["attempt"] == 2 and s["state"] == "RUNNING" and s, 300)
    assert moved["cluster"] == other
    done = hello.wait(timeout=300)
    assert done["state"] == "SUCCEEDED" and done["cluster"] == other, done

    # uncordoned, the first cluster takes work again: with the other one cordoned (no drain: the
    # moved job keeps running there), it is the only place
    admin.uncordon_cluster(first)
    admin.cordon_cluster(other, reason="the other way round")
    assert [c["status"]["cordoned"] for c in admin.clusters() if c["metadata"]["name"] in (first, other)] == \
        [name == other for name in NAMES if name in (first, other)]
    back = team.submit(_command("after-uncordon"))

    final = job.wait(timeout=400)
    assert final["state"] == "SUCCEEDED", final
    assert final["attempt"] == 2 and final["restarts"] == 0 and final["cluster"] == other
    (moved_once,) = final["interruptions"]
    assert moved_once["reason"] == "cluster-drained"
    # resumed from the checkpoint the drain asked for, not from scratch
    assert moved_once["resumedFromStep"] is not None and moved_once["resumedFromStep"] >= st["lastCheckpointStep"]
    assert "resumed from step" in job.logs()
    launched = [e for e in job.events() if e["type"] == "Launched"]
    assert [e["message"].rsplit(" ", 1)[-1] for e in launched] == [first, other]

    done_back = back.wait(timeout=300)
    assert done_back["state"] == "SUCCEEDED" and done_back["cluster"] == first, done_back
