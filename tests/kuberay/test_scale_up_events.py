"""The cluster autoscaler's pod Events as a run's capacity answer (issue 13: a non-queued stockout on
KubeRay): the pure mapping (:mod:`rayfleet.backends.kuberay.scale_up`), the KubeRay backend reading
those Events through the fake API server (polling and watching), and the control plane moving a job
to its compute class's next step at once when the fake autoscaler answers "GCE out of resources"."""

from __future__ import annotations

import time

import pytest
from fake_apiserver import FakeApiServer
from fake_kuberay_operator import FakeKubeRayOperator
from kuberay_helpers import train_job, until

from rayfleet.api import JobState, TrainJob
from rayfleet.backends.base import RunState
from rayfleet.backends.kuberay import client as kc
from rayfleet.backends.kuberay import manifests as m
from rayfleet.backends.kuberay.scale_up import FIELD_SELECTOR, scale_up_answer
from rayfleet.config import load_config
from rayfleet.server.auth import Principal
from rayfleet.server.main import assemble

NS = "rayfleet"
STOCKOUT = "Node scale up in zones us-central1-a associated with this pod failed: GCE out of resources. Pod is at risk of not being scheduled."
QUOTA = "Node scale up in zones us-central1-a associated with this pod failed: GCE quota exceeded. Pod is at risk of not being scheduled."


def _pod(name, *, node=None, uid="u-" + "0" * 8, phase="Pending", run_id="run-1"):
    spec = {"containers": [{"name": "ray-worker", "image": "rayproject/ray"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "uid": uid, "labels": {
                "ray.io/node-type": "worker", m.LABEL_RUN: m.run_label(run_id), m.LABEL_ROLE: "run", m.LABEL_CLUSTER: "gke-ml"}},
            "spec": spec, "status": {"phase": phase}}


def _event(pod, reason, message, at="2026-01-01T00:00:10Z", *, uid="u-" + "0" * 8, rv=None, name=None):
    meta = {"name": name or f"{pod}.{reason.lower()}", "namespace": NS}
    if rv is not None:
        meta["resourceVersion"] = str(rv)
    return {"apiVersion": "v1", "kind": "Event", "metadata": meta,
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": NS, "uid": uid},
            "reason": reason, "message": message, "type": "Warning" if reason == "FailedScaleUp" else "Normal",
            "source": {"component": "cluster-autoscaler"}, "firstTimestamp": at, "lastTimestamp": at, "count": 1}


# ---------------------------------------------------------------- the mapping (pure)


def test_out_of_resources_on_a_waiting_pod_is_a_stockout():
    pods = [_pod("w-0", node="gke-l4-0"), _pod("w-1")]
    answer = scale_up_answer(pods, [_event("w-1", "TriggeredScaleUp", "pod triggered scale-up", "2026-01-01T00:00:01Z"),
                                    _event("w-1", "FailedScaleUp", STOCKOUT)])
    assert answer is not None and answer.state == RunState.STOCKOUT
    assert "pod w-1" in answer.message and "GCE out of resources" in answer.message


def test_compute_engines_own_code_is_a_stockout_too():
    answer = scale_up_answer([_pod("w-0")], [_event("w-0", "FailedScaleUp", "Instance creation failed: ZONE_RESOURCE_POOL_EXHAUSTED")])
    assert answer is not None and answer.state == RunState.STOCKOUT


def test_a_scale_up_triggered_after_the_failure_is_a_retry_not_a_stockout():
    events = [_event("w-0", "FailedScaleUp", STOCKOUT, "2026-01-01T00:00:10Z"),
              _event("w-0", "TriggeredScaleUp", "pod triggered scale-up: [{gke-l4-b 0->1 (max: 4)}]", "2026-01-01T00:00:20Z")]
    assert scale_up_answer([_pod("w-0")], events) is None


def test_within_one_second_the_later_write_is_newer():
    events = [_event("w-0", "TriggeredScaleUp", "pod triggered scale-up", rv=7), _event("w-0", "FailedScaleUp", STOCKOUT, rv=9)]
    assert scale_up_answer([_pod("w-0")], events).state == RunState.STOCKOUT
    events = [_event("w-0", "TriggeredScaleUp", "pod triggered scale-up", rv=11), _event("w-0", "FailedScaleUp", STOCKOUT, rv=9)]
    assert scale_up_answer([_pod("w-0")], events) is None


@pytest.mark.parametrize(("reason", "message"), [
    ("FailedScaleUp", QUOTA),
    ("NotTriggerScaleUp", "pod didn't trigger scale-up: 1 max node group size reached"),
])
def test_other_answers_keep_the_run_pending_with_the_autoscalers_words(reason, message):
    answer = scale_up_answer([_pod("w-0")], [_event("w-0", reason, message)])
    assert answer is not None and answer.state == RunState.PENDING and message in answer.message


def test_scheduled_pods_and_events_of_an_earlier_pod_of_the_same_name_are_not_read():
    assert scale_up_answer([_pod("w-0", node="gke-l4-0", phase="Running")], [_event("w-0", "FailedScaleUp", STOCKOUT)]) is None
    assert scale_up_answer([_pod("w-0", uid="new")], [_event("w-0", "FailedScaleUp", STOCKOUT, uid="old")]) is None
    assert scale_up_answer([_pod("w-0")], [_event("w-9", "FailedScaleUp", STOCKOUT)]) is None
    assert scale_up_answer([_pod("w-0")], []) is None


def test_one_stocked_out_pod_outweighs_another_pods_quota_answer():
    pods = [_pod("w-0"), _pod("w-1")]
    answer = scale_up_answer(pods, [_event("w-0", "FailedScaleUp", QUOTA), _event("w-1", "FailedScaleUp", STOCKOUT)])
    assert answer.state == RunState.STOCKOUT and "pod w-1" in answer.message


# ---------------------------------------------------------------- the backend, on the fake API server


def _launched(backend, cfg, pool):
    req = m.launch_request_for(train_job("job-a", per_worker={"nvidia.com/gpu": 1}, workers=2), cfg, pool)
    backend.launch(req)
    return req.run_id


def _waiting_pods(api, run_id):
    for i in range(2):
        api.put(_pod(f"w-{i}", run_id=run_id, uid=f"uid-{i}"))
    return [api.get("Pod", f"w-{i}", NS)["metadata"]["uid"] for i in range(2)]


@pytest.mark.parametrize("watch", [False, True])
def test_the_backend_reports_a_non_queued_stockout_from_the_autoscalers_events(gke_cfg, fake_api, watch):
    kb = kc.KubeRayBackend(gke_cfg, fake_api.api_client())
    if watch:
        kb.start_watching(timeout_seconds=2)
    try:
        run_id = _launched(kb, gke_cfg, "l4-flex")     # DWS flex-start, not queued: no ProvisioningRequest
        uids = _waiting_pods(fake_api, run_id)
        assert fake_api.all("ProvisioningRequest", NS) == []
        fake_api.put(_event("w-1", "FailedScaleUp", QUOTA, uid=uids[1]))
        assert until(lambda: "GCE quota exceeded" in kb.run_status(run_id).message)
        assert kb.run_status(run_id).state == RunState.PENDING
        fake_api.put(_event("w-0", "FailedScaleUp", STOCKOUT, uid=uids[0]))
        fake_api.put(_event("other-pod", "FailedScaleUp", STOCKOUT, name="someone-elses"))
        assert until(lambda: kb.run_status(run_id).state == RunState.STOCKOUT)
        assert "GCE out of resources" in kb.run_status(run_id).message
    finally:
        kb.stop_watching()


def test_events_of_other_sources_do_not_reach_the_backend(gke_cfg, fake_api):
    fake_api.put({**_event("w-0", "FailedScaleUp", STOCKOUT, name="from-elsewhere"), "source": {"component": "someone"}})
    fake_api.put(_event("w-0", "FailedScaleUp", STOCKOUT))
    items = kc.KubeRayBackend(gke_cfg, fake_api.api_client()).kube.list_with_version("Event", NS, field_selector=FIELD_SELECTOR)[0]
    assert [e["metadata"]["name"] for e in items] == ["w-0.failedscaleup"]


def test_a_queued_dws_run_is_judged_by_its_provisioning_request_not_by_events(gke_cfg, fake_api):
    kb = kc.KubeRayBackend(gke_cfg, fake_api.api_client())
    req = m.launch_request_for(train_job("job-h", per_worker={"nvidia.com/gpu": 8}), gke_cfg, "h100-flex")
    kb.launch(req)
    fake_api.put(_pod("w-0", run_id=req.run_id))
    fake_api.put(_event("w-0", "FailedScaleUp", STOCKOUT, uid=fake_api.get("Pod", "w-0", NS)["metadata"]["uid"]))
    st = kb.run_status(req.run_id)
    assert st.state == RunState.PENDING and "waiting for DWS flex-start capacity" in st.message


# ---------------------------------------------------------------- the control plane, with the fake operator

PLATFORM = """\
kind: Cluster
metadata: {name: stockout}
spec:
  backend: kuberay
  kuberay: {namespace: rayfleet, ttlSecondsAfterFinished: 0}
---
kind: Pool
metadata: {name: l4-flex}
spec: {accelerator: nvidia-l4, acceleratorsPerHost: 1, machineType: g2-standard-8, cpuPerHost: 7910m, memoryPerHost: 26Gi,
       maxReplicas: 2, provisioning: {mode: dws-flex, queued: false}, zone: us-central1-a}
---
kind: Pool
metadata: {name: l4-spot}
spec: {accelerator: nvidia-l4, acceleratorsPerHost: 1, machineType: g2-standard-8, cpuPerHost: 7910m, memoryPerHost: 26Gi,
       maxReplicas: 2, provisioning: {mode: spot}, zone: us-central1-a}
---
kind: Flavor
metadata: {name: l4-flex}
spec: {pool: l4-flex}
---
kind: Flavor
metadata: {name: l4-spot}
spec: {pool: l4-spot}
---
kind: ComputeClass
metadata: {name: flex-then-spot}
spec:
  flavors:
    - {flavor: l4-flex, waitForCapacity: 10m}
    - {flavor: l4-spot}
---
kind: Team
metadata: {name: team-a}
spec: {displayName: A}
---
kind: Queue
metadata: {name: flex}
spec:
  team: team-a
  computeClass: flex-then-spot
  resourceGroups:
    - coveredResources: [cpu, nvidia.com/gpu]
      flavors:
        - name: l4-flex
          resources: [{name: cpu, nominalQuota: 8}, {name: nvidia.com/gpu, nominalQuota: 2}]
        - name: l4-spot
          resources: [{name: cpu, nominalQuota: 8}, {name: nvidia.com/gpu, nominalQuota: 2}]
"""


def test_a_stocked_out_flex_start_job_moves_to_spot_at_once(tmp_path):
    (tmp_path / "platform.yaml").write_text(PLATFORM)
    config = load_config([tmp_path / "platform.yaml"])
    with FakeApiServer() as api, FakeKubeRayOperator(api, runtime=0.3) as operator:
        operator.add_pool_nodes("l4-spot", config.pools["l4-spot"].spec)     # flex-start has no nodes, and can get none
        operator.stock_out("l4-flex")
        backend = kc.KubeRayBackend(config, api.api_client())
        backend.up()
        fleet = assemble(config, backend, tmp_path / "data", clock=time.time, controller_interval=0.1)
        fleet.start()
        try:
            job = TrainJob.model_validate({"metadata": {"name": "flexy"}, "spec": {
                "entrypoint": "python train.py", "queue": "flex", "maxRunDuration": "1h",
                "gang": {"workers": 2, "resourcesPerWorker": {"cpu": 2, "nvidia.com/gpu": 1}}}})
            fleet.submit_job(job, Principal(team=None, admin=True, label="test"))
            assert until(lambda: fleet.store.get("TrainJob", "flexy").doc.status.state.terminal, timeout=30)
            st = fleet.store.get("TrainJob", "flexy").doc.status
            assert st.state == JobState.SUCCEEDED and st.flavor == "l4-spot" and st.restarts == 0, st.message
            fallback = next(e for e in fleet.store.all_events("TrainJob", "flexy") if e.type == "CapacityFallback")
            assert fallback.data["stockout"] is True and "GCE out of resources" in fallback.message
            assert fallback.data["next"] == "l4-spot"
            assert sum(operator.created.values()) == 2      # one RayJob on flex-start, stopped; one on spot
        finally:
            fleet.controller.stop()
            fleet.close()
