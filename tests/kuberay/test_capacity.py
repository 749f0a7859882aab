"""The KubeRay backend's capacity at run time, against the fake API server: Nodes as hosts (pool
membership, phases, expiry), capacity counts, cordon / uncordon, checkpoint requests through the
run's notice ConfigMap, and ProvisioningRequest conditions mapped onto runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from kuberay_helpers import train_job

from rayfleet.backends.base import CapacityBackend, HostPhase, NoticeKind, RunState
from rayfleet.backends.kuberay import checkpoint_request as cr
from rayfleet.backends.kuberay import client as kc
from rayfleet.backends.kuberay import crd_schema
from rayfleet.backends.kuberay import manifests as m
from rayfleet.backends.kuberay.nodes import ANN_CORDONED, ANN_CORDONED_AT, TAINT_IMPENDING_TERMINATION

NS = "rayfleet"
T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def kb(gke_cfg, fake_api, clock):
    return kc.KubeRayBackend(gke_cfg, fake_api.api_client(), clock=clock)


def _labels(cfg, pool: str, **extra: str) -> dict[str, str]:
    return {**m.pool_placement(cfg.pools[pool].spec).node_selector, **extra}


def _node(name, labels, *, ready=True, created=T0 - 3600, ready_at=T0 - 3500, taints=(), unschedulable=False,
          conditions=(), annotations=None):
    conds = [{"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady" if ready else "KubeletNotReady",
              "message": "" if ready else "container runtime is down", "lastTransitionTime": _ts(ready_at)}]
    conds += [{"type": t, "status": "True", "reason": t, "message": msg, "lastTransitionTime": _ts(ready_at)} for t, msg in conditions]
    spec = {"taints": list(taints)} if taints else {}
    if unschedulable:
        spec["unschedulable"] = True
    meta = {"name": name, "labels": labels, "creationTimestamp": _ts(created)}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec, "status": {"conditions": conds}}


def _worker_pod(name, run_id, node, *, role="run", phase="Running"):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {
            "ray.io/node-type": "worker", m.LABEL_RUN: m.run_label(run_id), m.LABEL_ROLE: role, m.LABEL_CLUSTER: "gke-ml"}},
        "spec": {"nodeName": node, "containers": [{"name": "ray-worker", "image": "rayproject/ray"}]},
        "status": {"phase": phase},
    }


def _req(cfg, pool, name="job-a", **kw):
    kw.setdefault("per_worker", {"nvidia.com/gpu": 8} if pool in ("a100-reserved", "h100-flex") else {"nvidia.com/gpu": 1})
    return m.launch_request_for(train_job(name, **kw), cfg, pool)


# ---------------------------------------------------------------- hosts from nodes


def test_the_backend_is_a_capacity_backend(kb):
    assert isinstance(kb, CapacityBackend)


def test_nodes_become_hosts_of_their_pools_with_phases(kb, fake_api, gke_cfg):
    put = fake_api.put
    put(_node("a100-1", _labels(gke_cfg, "a100-reserved")))
    put(_node("a100-2", _labels(gke_cfg, "a100-reserved"), unschedulable=True,
              annotations={ANN_CORDONED: "3 runs failed here", ANN_CORDONED_AT: _ts(T0 - 60)}))
    put(_node("l4-spot-1", _labels(gke_cfg, "l4-spot"),
              taints=[{"key": TAINT_IMPENDING_TERMINATION, "effect": "NoSchedule", "timeAdded": _ts(T0 - 5)}]))
    put(_node("l4-flex-1", _labels(gke_cfg, "l4-flex")))          # carries gke-max-run-duration-seconds: 604800
    put(_node("h100-new", _labels(gke_cfg, "h100-flex"), ready=False, created=T0 - 30, ready_at=T0 - 29))
    put(_node("h100-broken", _labels(gke_cfg, "h100-flex"), ready=False, ready_at=T0 - 600))
    put(_node("t4-sick", _labels(gke_cfg, "t4"), conditions=[("KernelDeadlock", "task docker:1234 blocked")]))
    put(_node("t4-spot", _labels(gke_cfg, "t4", **{m.GKE_SPOT: "true"})))  # on-demand pool keeps off spot nodes
    put(_node("system-1", {"node.kubernetes.io/instance-type": "e2-standard-4"}))
    hosts = {h.name: h for h in kb.hosts()}
    assert set(hosts) == {"a100-1", "a100-2", "l4-spot-1", "l4-flex-1", "h100-new", "h100-broken", "t4-sick"}
    assert (hosts["a100-1"].pool, hosts["a100-1"].phase, hosts["a100-1"].healthy) == ("a100-reserved", HostPhase.READY, True)
    assert hosts["a100-1"].node_id == "a100-1" and hosts["a100-1"].expires_at is None
    assert hosts["a100-2"].phase == HostPhase.CORDONED and hosts["a100-2"].message == "3 runs failed here"
    assert hosts["a100-2"].since == T0 - 60
    spot = hosts["l4-spot-1"]
    assert (spot.pool, spot.phase, spot.since, spot.expires_at) == ("l4-spot", HostPhase.DRAINING, T0 - 5, T0 + 25)  # 30 s notice
    flex = hosts["l4-flex-1"]
    assert flex.pool == "l4-flex" and flex.expires_at == T0 - 3600 + 7 * 86400
    assert (hosts["h100-new"].phase, hosts["h100-new"].healthy) == (HostPhase.PROVISIONING, False)
    assert hosts["h100-broken"].phase == HostPhase.REPAIRING and "container runtime is down" in hosts["h100-broken"].message
    sick = hosts["t4-sick"]
    assert (sick.phase, sick.healthy) == (HostPhase.READY, False) and "KernelDeadlock" in sick.message


def test_capacity_counts_nodes_pods_and_awaited_dws_hosts(kb, fake_api, gke_cfg):
    for i in range(3):
        fake_api.put(_node(f"a100-{i}", _labels(gke_cfg, "a100-reserved")))
    fake_api.put(_node("a100-3", _labels(gke_cfg, "a100-reserved"), unschedulable=True))
    fake_api.put(_worker_pod("w0", "run-1", "a100-0"))                    # a gang holds a100-0
    fake_api.put(_worker_pod("f0", "fleet", "a100-1", role="fleet"))      # a fleet pod does not
    fake_api.put(_worker_pod("done", "run-0", "a100-2", phase="Succeeded"))
    fake_api.put(_node("h100-new", _labels(gke_cfg, "h100-flex"), ready=False, created=T0 - 10, ready_at=T0 - 10))
    kb.launch(_req(gke_cfg, "h100-flex", workers=3))                       # a request for 3 hosts, not provisioned yet
    cap = kb.capacity()
    a100 = cap["a100-reserved"]
    assert (a100.hosts, a100.ready_hosts, a100.free_hosts, a100.cordoned_hosts, a100.provisioning_hosts) == (4, 4, 2, 1, 0)
    h100 = cap["h100-flex"]
    assert (h100.ready_hosts, h100.free_hosts, h100.provisioning_hosts) == (0, 0, 4)
    assert cap["cpu"].ready_hosts == 0 and set(cap) == set(gke_cfg.pools)
    awaited = [h for h in kb.hosts() if h.pool == "h100-flex" and h.node_id is None]
    assert len(awaited) == 3 and {h.phase for h in awaited} == {HostPhase.PROVISIONING}
    name = kb.run_name(_req(gke_cfg, "h100-flex", workers=3).run_id)
    fake_api.set_status("ProvisioningRequest", name, NS, {"conditions": [
        {"type": "Provisioned", "status": "True", "reason": "Provisioned", "message": "", "lastTransitionTime": _ts(T0)}]})
    assert kb.capacity()["h100-flex"].provisioning_hosts == 1  # the nodes show from here on


# ---------------------------------------------------------------- cordon


def test_cordon_and_uncordon_patch_the_node(kb, fake_api, gke_cfg, clock):
    fake_api.put(_node("a100-1", _labels(gke_cfg, "a100-reserved")))
    kb.cordon("a100-1", "3 runs failed on this host in 1h")
    kb.cordon("a100-1", "3 runs failed on this host in 1h")  # idempotent
    node = fake_api.get("Node", "a100-1", "")
    assert node["spec"]["unschedulable"] is True
    assert node["metadata"]["annotations"] == {ANN_CORDONED: "3 runs failed on this host in 1h", ANN_CORDONED_AT: _ts(clock.t)}
    assert node["status"]["conditions"][0]["type"] == "Ready"  # status untouched
    (host,) = kb.hosts()
    assert host.phase == HostPhase.CORDONED and host.message == "3 runs failed on this host in 1h"
    assert kb.capacity()["a100-reserved"].cordoned_hosts == 1
    kb.uncordon("a100-1")
    node = fake_api.get("Node", "a100-1", "")
    assert node["spec"]["unschedulable"] is False and not node["metadata"].get("annotations")
    assert kb.hosts()[0].phase == HostPhase.READY
    patches = [r for r in fake_api.requests if r == ("PATCH", "/api/v1/nodes/a100-1")]
    assert len(patches) == 3
    kb.cordon("gone-node", "x")   # a node that is gone takes no work anyway
    kb.uncordon("gone-node")


# ---------------------------------------------------------------- checkpoint requests


def test_request_checkpoint_writes_the_mounted_notice_configmap(kb, fake_api, gke_cfg, clock, tmp_path, monkeypatch):
    req = _req(gke_cfg, "a100-reserved")
    kb.launch(req)
    name = kb.run_name(req.run_id)
    cm_name = cr.notice_configmap_name(name)
    cm = fake_api.get("ConfigMap", cm_name, NS)
    assert cm["data"] == {} and cr.read_request(cm) is None
    job = fake_api.get("RayJob", name, NS)
    cluster = job["spec"]["rayClusterSpec"]
    for template in (cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]):
        assert {"name": cr.NOTICE_VOLUME, "configMap": {"name": cm_name, "optional": True}} in template["spec"]["volumes"]
        (container,) = template["spec"]["containers"]
        assert {"name": "RAYFLEET_CHECKPOINT_REQUEST", "value": "/rayfleet/notice/checkpoint-request.json"} in container["env"]
        assert {"name": cr.NOTICE_VOLUME, "mountPath": "/rayfleet/notice", "readOnly": True} in container["volumeMounts"]
    kb.request_checkpoint(req.run_id)
    line = fake_api.get("ConfigMap", cm_name, NS)["data"]["checkpoint-request.json"]
    assert json.loads(line) == {"seq": 1, "at": T0, "reason": ""}
    # the file the pods see is the one rayfleet.train.notice reads on every backend
    from rayfleet.train import notice
    mounted = tmp_path / "checkpoint-request.json"
    mounted.write_text(line)
    monkeypatch.setenv("RAYFLEET_CHECKPOINT_REQUEST", str(mounted))
    notice.reset()
    assert notice.checkpoint_requested()
    notice.consume()
    assert not notice.checkpoint_requested()
    clock.t += 90
    kb.request_checkpoint(req.run_id)
    cm = fake_api.get("ConfigMap", cm_name, NS)
    assert cr.read_request(cm) == T0 + 90 and cr.request_seq(cm) == 2
    mounted.write_text(cm["data"]["checkpoint-request.json"])
    assert notice.checkpoint_requested()   # a newer request counts again
    notice.reset()
    kb.kube.delete_core("ConfigMap", cm_name, NS)   # lost meanwhile: made again
    kb.request_checkpoint(req.run_id)
    cm = fake_api.get("ConfigMap", cm_name, NS)
    assert cr.read_request(cm) == T0 + 90 and cm["metadata"]["labels"][m.LABEL_ROLE] == "notice"
    kb.stop(req.run_id)
    assert fake_api.get("ConfigMap", cm_name, NS) is None
    kb.request_checkpoint(req.run_id)  # the run is gone: nothing written
    assert fake_api.get("ConfigMap", cm_name, NS) is None


# ---------------------------------------------------------------- ProvisioningRequest conditions


def _cond(kind, at, message="", reason=None):
    return {"type": kind, "status": "True", "reason": reason or kind, "message": message, "lastTransitionTime": _ts(at)}


@pytest.fixture
def dws_run(kb, fake_api, gke_cfg):
    req = _req(gke_cfg, "h100-flex", workers=2)  # job maxRunDuration 2h < pool's 3d: the request asks 7200 s
    kb.launch(req)
    name = kb.run_name(req.run_id)
    assert fake_api.get("ProvisioningRequest", name, NS)["spec"]["parameters"] == {"maxRunDurationSeconds": "7200"}
    for i in range(2):
        fake_api.put(_node(f"h100-{i}", _labels(gke_cfg, "h100-flex")))
        fake_api.put(_worker_pod(f"w{i}", req.run_id, f"h100-{i}"))
    return req.run_id, name


def _running(fake_api, name):
    fake_api.set_status("RayJob", name, NS, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})


def test_provisioned_request_is_pending_until_the_rayjob_runs(kb, fake_api, dws_run):
    run_id, name = dws_run
    assert "waiting for DWS flex-start capacity" in kb.run_status(run_id).message
    fake_api.set_status("ProvisioningRequest", name, NS, {"conditions": [_cond("Accepted", T0 - 60), _cond("Provisioned", T0 - 10)]})
    st = kb.run_status(run_id)
    assert st.state == RunState.PENDING and "provisioned" in st.message and st.notices == ()
    _running(fake_api, name)
    st = kb.run_status(run_id)
    assert st.state == RunState.RUNNING and st.hosts == ("h100-0", "h100-1") and st.notices == ()


def test_capacity_revoked_notices_the_hosts_then_loses_the_run(kb, fake_api, dws_run, clock):
    run_id, name = dws_run
    _running(fake_api, name)
    fake_api.set_status("ProvisioningRequest", name, NS, {"conditions": [
        _cond("Provisioned", T0 - 3600), _cond("CapacityRevoked", T0 - 10, "the capacity was reclaimed")]})
    st = kb.run_status(run_id)
    assert st.state == RunState.RUNNING
    assert [(n.kind, n.host, n.deadline) for n in st.notices] == [
        (NoticeKind.RECLAIM, "h100-0", T0 + 20), (NoticeKind.RECLAIM, "h100-1", T0 + 20)]
    assert "the capacity was reclaimed" in st.notices[0].message
    clock.t = T0 + 21
    st = kb.run_status(run_id)
    assert st.state == RunState.LOST and "CapacityRevoked" in st.message and st.notices == ()


def test_capacity_revoked_before_the_run_ran_loses_it(kb, fake_api, dws_run):
    run_id, name = dws_run
    fake_api.set_status("ProvisioningRequest", name, NS, {"conditions": [_cond("CapacityRevoked", T0 - 10, "revoked")]})
    assert kb.run_status(run_id).state == RunState.LOST


def test_booking_expired_before_use_loses_the_run(kb, fake_api, dws_run):
    run_id, name = dws_run
    fake_api.set_status("ProvisioningRequest", name, NS, {"conditions": [
        _cond("Provisioned", T0 - 700), _cond("BookingExpired", T0 - 100, "pods did not consume the capacity in time")]})
    st = kb.run_status(run_id)
    assert st.state == RunState.LOST and "before the pods used it" in st.message


def test_booking_expired_while_running_recycles_until_the_run_time_ends(kb, fake_api, dws_run, clock):
    run_id, name = dws_run
    _running(fake_api, name)
    fake_api.set_status("ProvisioningRequest", name, NS, {"conditions": [
        _cond("Provisioned", T0 - 7000), _cond("BookingExpired", T0 - 100, "booking expired")]})
    st = kb.run_status(run_id)
    assert st.state == RunState.RUNNING
    assert {(n.kind, n.deadline) for n in st.notices} == {(NoticeKind.RECYCLE, T0 + 200)}  # Provisioned + 7200 s
    clock.t = T0 + 200
    st = kb.run_status(run_id)
    assert st.state == RunState.LOST and "7200" in st.message


def test_terminal_rayjob_states_are_not_overridden(kb, fake_api, dws_run):
    run_id, name = dws_run
    fake_api.set_status("RayJob", name, NS, {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"})
    fake_api.set_status("ProvisioningRequest", name, NS, {"conditions": [_cond("CapacityRevoked", T0, "late")]})
    assert kb.run_status(run_id).state == RunState.SUCCEEDED


# ---------------------------------------------------------------- notices from nodes


def test_a_spot_reclaim_or_a_sick_node_notices_the_running_gang(kb, fake_api, gke_cfg):
    req = _req(gke_cfg, "l4-spot", workers=2)
    kb.launch(req)
    name = kb.run_name(req.run_id)
    fake_api.put(_node("l4-0", _labels(gke_cfg, "l4-spot")))
    fake_api.put(_node("l4-1", _labels(gke_cfg, "l4-spot"), conditions=[("ReadonlyFilesystem", "fs is read-only")]))
    fake_api.put(_worker_pod("w0", req.run_id, "l4-0"))
    fake_api.put(_worker_pod("w1", req.run_id, "l4-1"))
    assert kb.run_status(req.run_id).notices == ()  # not running yet
    _running(fake_api, name)
    st = kb.run_status(req.run_id)
    assert [(n.kind, n.host) for n in st.notices] == [(NoticeKind.UNHEALTHY, "l4-1")]
    node = fake_api.get("Node", "l4-0", "")
    node["spec"]["taints"] = [{"key": TAINT_IMPENDING_TERMINATION, "effect": "NoSchedule", "timeAdded": _ts(T0)}]
    fake_api.delete(fake_api.resource_of("Node"), "", "l4-0")
    fake_api.put(node)
    st = kb.run_status(req.run_id)
    assert (NoticeKind.RECLAIM, "l4-0", T0 + 30) in {(n.kind, n.host, n.deadline) for n in st.notices}
    assert st.state == RunState.RUNNING and st.hosts == ("l4-0", "l4-1")


def _calendar_cfg(gke_cfg, **prov):
    pool = gke_cfg.pools["tpu-v5p-2x2x2"].model_copy(deep=True)
    pool.spec.provisioning = pool.spec.provisioning.model_copy(update=prov)
    cfg = type(gke_cfg)(**{**vars(gke_cfg)})
    cfg.pools = {**gke_cfg.pools, "tpu-v5p-2x2x2": pool}
    return cfg


def test_calendar_hosts_notice_the_window_end_within_drain_before(gke_cfg, fake_api):
    cfg = _calendar_cfg(gke_cfg, reservation_name="v5p-calendar-res")
    end = cfg.pools["tpu-v5p-2x2x2"].spec.provisioning.window.end.timestamp()
    clock = Clock(end - 3600)
    kb = kc.KubeRayBackend(cfg, fake_api.api_client(), clock=clock)
    req = m.launch_request_for(train_job("jax-v5p", workers=2, per_worker={"google.com/tpu": 4}, accelerator="tpu-v5p-slice"), cfg, "tpu-v5p-2x2x2")
    kb.launch(req)
    for i in range(2):
        fake_api.put(_node(f"v5p-{i}", _labels(cfg, "tpu-v5p-2x2x2")))
        fake_api.put(_worker_pod(f"w{i}", req.run_id, f"v5p-{i}"))
    _running(fake_api, kb.run_name(req.run_id))
    hosts = kb.hosts()
    assert {h.expires_at for h in hosts} == {end}
    assert kb.run_status(req.run_id).notices == ()       # an hour left; drainBefore is 10 minutes
    clock.t = end - 599
    notices = kb.run_status(req.run_id).notices
    assert {(n.kind, n.host, n.deadline) for n in notices} == {(NoticeKind.WINDOW_END, "v5p-0", end), (NoticeKind.WINDOW_END, "v5p-1", end)}


def test_flex_start_recycling_notice_within_the_lead_time(kb, fake_api, gke_cfg, clock):
    req = _req(gke_cfg, "l4-flex")
    kb.launch(req)
    created = T0 - 7 * 86400 + 1800  # half an hour before its 7 days end; the lead time is an hour
    fake_api.put(_node("flex-0", _labels(gke_cfg, "l4-flex"), created=created, ready_at=created + 90))
    fake_api.put(_worker_pod("w0", req.run_id, "flex-0"))
    _running(fake_api, kb.run_name(req.run_id))
    (notice,) = kb.run_status(req.run_id).notices
    assert (notice.kind, notice.host, notice.deadline) == (NoticeKind.RECYCLE, "flex-0", T0 + 1800)


# ---------------------------------------------------------------- manifests for calendar and recycling


def test_calendar_pool_pods_consume_the_window_reservation(gke_cfg):
    cfg = _calendar_cfg(gke_cfg, reservation_name="v5p-calendar-res", reservation_project="ml-capacity")
    req = m.launch_request_for(train_job("jax-v5p", workers=2, per_worker={"google.com/tpu": 4}, accelerator="tpu-v5p-slice"), cfg, "tpu-v5p-2x2x2")
    cluster, kuberay = m.cluster_kuberay(cfg)
    objs = m.run_objects(req, cluster=cluster, kuberay=kuberay)
    for obj in objs.objects():
        assert crd_schema.validate(obj) == [], obj["metadata"]["name"]
    selector = objs.rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["nodeSelector"]
    assert selector[m.GKE_RESERVATION_NAME] == "v5p-calendar-res"
    assert selector[m.GKE_RESERVATION_AFFINITY] == "specific" and selector[m.GKE_RESERVATION_PROJECT] == "ml-capacity"
    assert selector[m.GKE_TPU_TOPOLOGY] == "2x2x2"
    unnamed = m.pool_placement(gke_cfg.pools["tpu-v5p-2x2x2"].spec).node_selector
    assert m.GKE_RESERVATION_NAME not in unnamed and unnamed[m.INSTANCE_TYPE] == "ct5p-hightpu-4t"


def test_compute_class_with_calendar_recycling_and_active_migration_validates(gke_cfg):
    from rayfleet.api import ComputeClass
    from rayfleet.backends.kuberay import compute_class as ccm

    cfg = _calendar_cfg(gke_cfg, reservation_name="v5p-calendar-res")
    cc = ComputeClass.model_validate({"metadata": {"name": "serving"}, "spec": {
        "nodeRecycling": True, "activeMigration": {"optimizeRulePriority": True},
        "flavors": [{"flavor": "l4-reserved"}, {"flavor": "l4-flex"}, {"flavor": "l4-spot"}]}})
    obj = ccm.compute_class_object(cc, cfg)
    assert crd_schema.validate(obj) == []
    assert obj["spec"]["activeMigration"] == {"optimizeRulePriority": True}
    assert obj["spec"]["priorities"][1]["flexStart"] == {"enabled": True, "nodeRecycling": {"leadTimeSeconds": 3600}}
    (default,) = ccm.compute_classes(gke_cfg)
    assert default["spec"]["activeMigration"] == {"optimizeRulePriority": False}  # the example's class does not ask
    cal = ComputeClass.model_validate({"metadata": {"name": "tpu"}, "spec": {"flavors": [{"flavor": "tpu-v5p-2x2x2"}, {"flavor": "tpu-v5e-4x4"}]}})
    obj = ccm.compute_class_object(cal, cfg)
    assert crd_schema.validate(obj) == []
    assert obj["spec"]["priorities"][0]["reservations"] == {"affinity": "Specific", "specific": [{"name": "v5p-calendar-res"}]}
    bad = {**obj, "spec": {**obj["spec"], "activeMigration": {"optimizeRulePriority": True, "moveBack": True}}}
    assert any("moveBack" in e for e in crd_schema.validate(bad))  # the schema stays strict


def test_autoscaled_worker_groups_give_idle_workers_back_after_the_pool_idle_timeout(gke_cfg):
    rc = m.fleet_raycluster(gke_cfg)
    assert crd_schema.validate(rc) == []
    groups = {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}
    assert {g["idleTimeoutSeconds"] for g in groups.values()} == {600}
    pool = gke_cfg.pools["t4"].model_copy(deep=True)
    pool.spec.idle_timeout = 120.0
    cfg = type(gke_cfg)(**{**vars(gke_cfg)})
    cfg.pools = {**gke_cfg.pools, "t4": pool}
    groups = {g["groupName"]: g for g in m.fleet_raycluster(cfg)["spec"]["workerGroupSpecs"]}
    assert groups["t4"]["idleTimeoutSeconds"] == 120 and groups["cpu"]["idleTimeoutSeconds"] == 600
