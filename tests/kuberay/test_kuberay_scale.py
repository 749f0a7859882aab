"""Jobs through the real control plane and the real KubeRay backend against the fake API server and
the fake KubeRay operator (kwok-style nodes): every job completes, none is launched twice, and an
attempt costs a bounded number of API requests, whatever the number of passes. The fake operator's
own behaviour (gangs wait for free nodes; a deleted RayJob takes its cluster with it) is checked
first. The figures at 1,000 jobs are ``benchmarks/kuberay_scale.py``'s."""

from __future__ import annotations

import time

import pytest
from fake_kuberay_operator import FakeKubeRayOperator
from kuberay_fleet import calls_since, start, submit_all, wait_done
from kuberay_helpers import train_job, until

from rayfleet.api import JobState
from rayfleet.backends.base import RunState
from rayfleet.backends.kuberay import manifests as m

NS = "rayfleet"
#: API requests one attempt may cost: create its notice ConfigMap and its RayJob, read its logs
#: through the API server's proxy, delete both once its end is stored (server/run_release.py),
#: plus a share of the watches (list + watch per kind).
CALLS_PER_ATTEMPT = 6



@pytest.fixture
def operator(fake_api):
    with FakeKubeRayOperator(fake_api, runtime=0.3, ttl_s=0) as op:   # the example's 600 s TTL, shortened
        yield op


def test_a_gang_waits_for_free_nodes_of_its_pool(backend, fake_api, gke_cfg, operator):
    operator.add_pool_nodes("t4", gke_cfg.pools["t4"].spec, count=2)
    operator.add_pool_nodes("cpu", gke_cfg.pools["cpu"].spec, count=4)   # nodes of another pool do not count
    first, second = (m.launch_request_for(train_job(n, workers=2, per_worker={"nvidia.com/gpu": 1}), gke_cfg, "t4") for n in ("a", "b"))
    for n in ("a", "b"):
        operator.script(n, 600)   # both run until the test ends them: no timer races a loaded machine
    backend.launch(first)
    assert until(lambda: backend.run_status(first.run_id).state == RunState.RUNNING, timeout=10.0)
    backend.launch(second)
    time.sleep(0.15)
    assert backend.run_status(second.run_id).state == RunState.PENDING     # both t4 nodes are taken
    pods = [p for p in fake_api.all("Pod", NS) if p["metadata"]["labels"].get(m.LABEL_RUN) == m.run_label(second.run_id)]
    assert pods and all(p["status"]["phase"] == "Pending" and "nodeName" not in p["spec"] for p in pods
                        if p["metadata"]["labels"]["ray.io/node-type"] == "worker")
    hosts = backend.run_status(first.run_id).hosts
    assert hosts == ("gke-t4-0000", "gke-t4-0001")
    operator.end("a")
    assert until(lambda: backend.run_status(first.run_id).state == RunState.SUCCEEDED, timeout=10.0)
    assert until(lambda: backend.run_status(second.run_id).state == RunState.RUNNING, timeout=10.0)   # the first cluster's nodes freed
    assert backend.run_status(second.run_id).hosts == hosts
    rc = (fake_api.get("RayJob", backend.run_name(first.run_id), NS) or {})["status"]["rayClusterName"]
    assert fake_api.get("RayCluster", rc, NS) is None                        # shutdownAfterJobFinishes


def test_deleting_a_rayjob_deletes_its_cluster_and_pods(backend, fake_api, gke_cfg, operator):
    operator.add_pool_nodes("t4", gke_cfg.pools["t4"].spec, count=1)
    operator.script("long", 60)
    req = m.launch_request_for(train_job("long", per_worker={"nvidia.com/gpu": 1}), gke_cfg, "t4")
    backend.launch(req)
    assert until(lambda: backend.run_status(req.run_id).state == RunState.RUNNING, timeout=10.0)
    rc = fake_api.get("RayJob", backend.run_name(req.run_id), NS)["status"]["rayClusterName"]
    assert fake_api.get("RayCluster", rc, NS) is not None
    backend.stop(req.run_id)
    assert until(lambda: fake_api.get("RayCluster", rc, NS) is None and not fake_api.all("Pod", NS), timeout=10.0)
    assert backend.capacity()["t4"].free_hosts == 1


def test_jobs_through_the_controller_and_the_kuberay_backend(tmp_path):
    run = start(tmp_path, jobs=30, cpu_hosts=16, t4_hosts=4, queues=2, runtime=(0.05, 0.15))
    fleet_clusters = {c["metadata"]["name"] for c in run.api.all("RayCluster", NS)}   # the services' RayCluster
    try:
        submit_all(run)
        assert wait_done(run, 60) == 30
        states = {r.name: r.doc.status.state for r in run.fleet.store.list("TrainJob")}
        assert set(states.values()) == {JobState.SUCCEEDED}
        assert len(run.operator.created) == 30 and set(run.operator.created.values()) == {1}   # no attempt launched twice
        assert {r.doc.status.attempt for r in run.fleet.store.list("TrainJob")} == {1}
        calls = calls_since(run)
        attempts = sum(run.operator.created.values())
        assert sum(calls.values()) <= CALLS_PER_ATTEMPT * attempts, calls
        # no read per running job: RayJobs, pods and nodes come from the watches
        assert calls.get(("get", "rayjobs"), 0) == 0 and calls.get(("list", "pods"), 0) <= 2, calls
        assert run.operator.peak_running <= 16 + 4                               # the pools' hosts bound the clusters at once
        assert run.fleet.controller.last_error is None
        # ended runs are released: no RayJob, RayCluster or notice ConfigMap of theirs is left behind
        def notices() -> list[str]:
            return [c["metadata"]["name"] for c in run.api.all("ConfigMap", NS) if c["metadata"]["name"].endswith("-notice")]

        # (a release deletes the RayJob, then the ConfigMap: wait for both)
        assert until(lambda: not run.api.all("RayJob", NS) and not notices()
                     and {c["metadata"]["name"] for c in run.api.all("RayCluster", NS)} == fleet_clusters, timeout=10.0), \
            ([j["metadata"]["name"] for j in run.api.all("RayJob", NS)], notices())
        assert calls_since(run).get(("delete", "rayjobs"), 0) == 30
        # a crash between an end's commit and its release leaves the RayJob: the next leader sweeps it
        job = run.fleet.store.get("TrainJob", run.jobs[0].name).doc
        run.backend.launch(run.fleet.controller.launch_request(job))   # that ended attempt's RayJob, back
        assert until(lambda: len(run.api.all("RayJob", NS)) == 1, timeout=5.0)
        run.fleet.controller.take_over()
        run.fleet.controller.wake()
        assert until(lambda: not run.api.all("RayJob", NS), timeout=10.0)
        assert run.fleet.store.get("TrainJob", job.name).doc.status.state == JobState.SUCCEEDED
    finally:
        run.close()
