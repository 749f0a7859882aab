"""KubeRayBackend with the real ``kubernetes`` client against the fake API server: create/get/
patch/delete/list/watch, 404 and 409 paths, KubeRay status -> RunState, logs and Serve status
through the RayCluster's dashboard (API server service proxy and direct URL)."""

from __future__ import annotations

import base64
import threading
from urllib.parse import unquote

import pytest
import yaml
from fake_apiserver import FakeApiServer, default_resources
from kuberay_helpers import service, train_job

from rayfleet.api import ServiceState
from rayfleet.backends.base import Backend, RunState
from rayfleet.backends.kuberay import client as kc
from rayfleet.backends.kuberay import crd_schema
from rayfleet.backends.kuberay.manifests import ANN_SPEC_HASH, MANAGED_BY, launch_request_for
from rayfleet.errors import BackendError, Conflict, NotFound

NS = "rayfleet"


def _req(cfg, pool="a100-reserved", name="job-a", **kw):
    kw.setdefault("per_worker", {"nvidia.com/gpu": 8} if pool in ("a100-reserved", "h100-flex") else {"nvidia.com/gpu": 1})
    return launch_request_for(train_job(name, queue=kw.pop("queue", "training"), **kw), cfg, pool)


def _writes(api, kind_path):
    return [r for r in api.requests if r[0] in ("POST", "PUT", "PATCH") and kind_path in r[1]]


# ---------------------------------------------------------------- lifecycle


def test_backend_implements_the_protocol(backend):
    assert isinstance(backend, Backend)
    assert backend.name == "kuberay"


def test_up_creates_then_adopts_without_writing(backend, fake_api):
    info = backend.up()
    assert info.name == "gke-ml" and info.dashboard_url.endswith("/services/gke-ml-head-svc:8265/proxy")
    rc = fake_api.get("RayCluster", "gke-ml", NS)
    assert rc["metadata"]["labels"][MANAGED_BY] == "rayfleet"
    assert rc["spec"]["authOptions"] == {"mode": "token", "secretName": backend.auth_secret}
    assert crd_schema.validate(rc) == []
    token = base64.b64decode(fake_api.get("Secret", backend.auth_secret, NS)["data"]["auth_token"]).decode()
    assert len(token) >= 32
    writes = len(_writes(fake_api, "/rayclusters"))
    assert backend.up().name == "gke-ml"
    assert len(_writes(fake_api, "/rayclusters")) == writes  # adopted as is
    assert backend.info() is not None


def test_up_replaces_a_changed_spec_and_retries_on_conflict(gke_cfg, fake_api):
    old = kc.KubeRayBackend(gke_cfg, fake_api.api_client())
    old.up()
    cfg2 = type(gke_cfg)(**{**vars(gke_cfg)})
    cluster = gke_cfg.cluster.model_copy(deep=True)
    cluster.spec.kuberay.image = "rayproject/ray:2.60.0-py311-gpu-patched"
    cfg2.cluster = cluster
    new = kc.KubeRayBackend(cfg2, fake_api.api_client())
    # someone else changes the cluster between our read and our write: first replace gets 409
    real_find = new.kube.find
    calls = {"n": 0}

    def stale_find(kind, name, ns):
        obj = real_find(kind, name, ns)
        if kind == "RayCluster" and calls["n"] == 0:
            calls["n"] += 1
            fake_api.set_status("RayCluster", name, ns, {"state": "ready"})  # bumps resourceVersion
        return obj

    new.kube.find = stale_find
    new.up()
    rc = fake_api.get("RayCluster", "gke-ml", NS)
    images = {c["image"] for g in rc["spec"]["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]}
    assert images == {"rayproject/ray:2.60.0-py311-gpu-patched"}
    assert rc["status"] == {"state": "ready"}  # the status written meanwhile survives the update
    conflicts = [r for r in fake_api.requests if r[0] == "PUT" and r[1].endswith("/rayclusters/gke-ml")]
    assert len(conflicts) == 2  # one 409, one success
    first = next(e[4] for e in fake_api.events if e[2].kind == "RayCluster" and e[1] == "ADDED")
    assert rc["metadata"]["annotations"][ANN_SPEC_HASH] != first["metadata"]["annotations"][ANN_SPEC_HASH]


def test_up_refuses_a_foreign_raycluster(backend, fake_api):
    fake_api.put({
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "gke-ml", "namespace": NS},
        "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head", "image": "x"}]}}}},
    })
    with pytest.raises(Conflict, match="not managed by rayfleet"):
        backend.up()


def test_up_without_kuberay_crds(gke_cfg):
    resources = [r for r in default_resources() if r.group != "ray.io"]
    with FakeApiServer(resources) as api:
        with pytest.raises(BackendError, match="KubeRay CRDs"):
            kc.KubeRayBackend(gke_cfg, api.api_client()).up()


def test_down_removes_everything(backend, fake_api, gke_cfg):
    backend.up()
    backend.launch(_req(gke_cfg, "h100-flex"))
    backend.upload_package("gcs://_ray_pkg_1.zip", b"zip")
    backend.down()
    for kind in ("RayCluster", "RayJob", "ProvisioningRequest", "PodTemplate", "ConfigMap", "Secret"):
        assert fake_api.all(kind, NS) == [], kind
    assert backend.info() is None


# ---------------------------------------------------------------- runs


def test_launch_is_idempotent_per_run_id(backend, fake_api, gke_cfg):
    req = _req(gke_cfg)
    assert backend.launch(req) == req.run_id
    assert backend.launch(req) == req.run_id
    jobs = fake_api.all("RayJob", NS)
    assert len(jobs) == 1 and crd_schema.validate(jobs[0]) == []
    assert jobs[0]["spec"]["rayClusterSpec"]["authOptions"]["secretName"] == backend.auth_secret
    assert backend.list_runs() == [req.run_id]


def test_launch_conflicts_with_a_foreign_rayjob_of_the_same_name(backend, fake_api, gke_cfg):
    req = _req(gke_cfg)
    job = kc.run_objects(req, cluster="gke-ml", kuberay=backend.kuberay).rayjob
    job["metadata"]["annotations"]["rayfleet.io/run-id"] = "someone-else-1"
    fake_api.put(job)
    with pytest.raises(Conflict, match="someone-else-1"):
        backend.launch(req)


def test_dws_launch_creates_the_provisioning_request_and_stop_removes_all(backend, fake_api, gke_cfg):
    req = _req(gke_cfg, "h100-flex", workers=3)
    backend.launch(req)
    name = backend.run_name(req.run_id)
    pr = fake_api.get("ProvisioningRequest", name, NS)
    assert pr["spec"]["podSets"][0]["count"] == 3
    assert fake_api.get("PodTemplate", f"{name}-workers", NS) is not None
    st = backend.run_status(req.run_id)
    assert st.state == RunState.PENDING and "DWS flex-start" in st.message
    backend.stop(req.run_id, reason="preempted")
    assert fake_api.get("RayJob", name, NS) is None
    assert fake_api.get("ProvisioningRequest", name, NS) is None
    assert fake_api.get("PodTemplate", f"{name}-workers", NS) is None
    backend.stop(req.run_id)  # no-op when gone
    assert backend.run_status(req.run_id) is None


def test_failed_provisioning_request_is_a_stockout(backend, fake_api, gke_cfg):
    req = _req(gke_cfg, "h100-flex")
    backend.launch(req)
    name = backend.run_name(req.run_id)
    fake_api.set_status("ProvisioningRequest", name, NS, {"conditions": [
        {"type": "Failed", "status": "True", "reason": "CapacityNotFound", "message": "no H100 capacity in us-central1-c",
         "lastTransitionTime": "2025-01-01T00:00:00Z"}]})
    st = backend.run_status(req.run_id)
    assert st.state == RunState.STOCKOUT and "no H100 capacity" in st.message


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ({}, RunState.PENDING),
        ({"jobDeploymentStatus": "Initializing"}, RunState.PENDING),
        ({"jobDeploymentStatus": "Running", "jobStatus": "PENDING"}, RunState.PENDING),
        ({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, RunState.RUNNING),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, RunState.SUCCEEDED),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}, RunState.STOPPED),
        ({"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"}, RunState.FAILED),
        ({"jobDeploymentStatus": "Failed", "reason": "SubmissionFailed"}, RunState.FAILED),
        ({"jobDeploymentStatus": "Failed", "jobStatus": "RUNNING", "reason": "DeadlineExceeded"}, RunState.DEADLINE_EXCEEDED),
        ({"jobDeploymentStatus": "Failed", "reason": "PreRunningDeadlineExceeded"}, RunState.LOST),
        ({"jobDeploymentStatus": "Failed", "reason": "JobDeploymentStatusTransitionGracePeriodExceeded"}, RunState.LOST),
        ({"jobDeploymentStatus": "Suspended"}, RunState.STOPPED),
        ({"jobDeploymentStatus": "Retrying"}, RunState.PENDING),
        ({"jobDeploymentStatus": "ValidationFailed", "message": "bad spec"}, RunState.FAILED),
    ],
)
def test_status_mapping_through_the_api(backend, fake_api, gke_cfg, status, state):
    req = _req(gke_cfg)
    backend.launch(req)
    if status:
        fake_api.set_status("RayJob", backend.run_name(req.run_id), NS, status)
    st = backend.run_status(req.run_id)
    assert st.state == state
    if state not in (RunState.RUNNING, RunState.SUCCEEDED):
        assert st.message  # why it is not running (yet)


def test_run_times_come_from_the_ray_job(backend, fake_api, gke_cfg):
    req = _req(gke_cfg)
    backend.launch(req)
    fake_api.set_status("RayJob", backend.run_name(req.run_id), NS, {
        "jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "startTime": "2025-01-01T00:00:00Z",
        "endTime": "2025-01-01T01:00:00Z", "rayJobInfo": {"startTime": "2025-01-01T00:05:00Z"}})
    st = backend.run_status(req.run_id)
    assert st.started_at == pytest.approx(1735689900.0) and st.finished_at == pytest.approx(1735693200.0)


def test_watch_runs_reports_changes_and_deletions(backend, fake_api, gke_cfg):
    req = _req(gke_cfg)
    backend.launch(req)
    _, rv = backend.kube.list_with_version("RayJob", NS)
    name = backend.run_name(req.run_id)

    def change():
        fake_api.set_status("RayJob", name, NS, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
        backend.stop(req.run_id)

    t = threading.Timer(0.2, change)
    t.start()
    seen = []
    for run_id, st in backend.watch_runs(resource_version=rv, timeout_seconds=2):
        seen.append((run_id, st.state if st else None))
        if len(seen) == 2:
            break
    t.join()
    assert seen == [(req.run_id, RunState.RUNNING), (req.run_id, None)]


# ---------------------------------------------------------------- dashboard


def _running(backend, fake_api, req, cluster_suffix="x7k2p"):
    name = backend.run_name(req.run_id)
    raycluster = f"{name}-{cluster_suffix}"
    fake_api.set_status("RayJob", name, NS, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING",
                                            "rayClusterName": raycluster, "jobId": req.run_id})
    return raycluster


def test_logs_through_the_api_server_proxy_with_the_ray_token(backend, fake_api, gke_cfg):
    backend.up()
    req = _req(gke_cfg)
    backend.launch(req)
    raycluster = _running(backend, fake_api, req)
    dash = fake_api.dashboard(NS, raycluster)
    dash.token = backend.token.read()
    dash.jobs[req.run_id] = {"logs": "epoch 1 loss 0.3\n"}
    assert backend.logs(req.run_id) == "epoch 1 loss 0.3\n"
    path, headers = dash.requests[-1]
    assert path == f"/api/jobs/{req.run_id}/logs"
    assert headers["x-ray-authorization"] == f"Bearer {dash.token}"
    assert any(f"/services/{raycluster}-head-svc:8265/proxy/api/jobs/" in unquote(p) for _, p in fake_api.requests)
    dash.token = "rotated"
    with pytest.raises(BackendError, match="401"):
        backend.logs(req.run_id)


def test_logs_through_an_injected_dashboard_url(gke_cfg, fake_api):
    b = kc.KubeRayBackend(gke_cfg, fake_api.api_client(), dashboard_url=lambda rc, ns: f"{fake_api.url}/dashboard/{ns}/{rc}")
    req = _req(gke_cfg)
    b.launch(req)
    assert b.logs(req.run_id) == ""  # no RayCluster yet
    raycluster = _running(b, fake_api, req)
    fake_api.dashboard(NS, raycluster).jobs[req.run_id] = {"logs": "hello\n"}
    assert b.logs(req.run_id) == "hello\n"
    with pytest.raises(NotFound):
        b.logs("unknown-1")


# ---------------------------------------------------------------- capacity: see test_capacity.py


# ---------------------------------------------------------------- packages


def test_uploaded_package_is_mounted_into_the_submitter(backend, fake_api, gke_cfg):
    uri = "gcs://_ray_pkg_0123456789abcdef.zip"
    backend.upload_package(uri, b"PK\x03\x04code")
    backend.upload_package(uri, b"PK\x03\x04code")  # idempotent
    (cm,) = fake_api.all("ConfigMap", NS)
    assert base64.b64decode(cm["binaryData"]["_ray_pkg_0123456789abcdef.zip"]) == b"PK\x03\x04code"
    req = _req(gke_cfg, runtimeEnv={"working_dir": uri, "py_modules": [uri, "gs://bucket/lib.zip"]})
    backend.launch(req)
    job = fake_api.all("RayJob", NS)[0]
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    path = f"/rayfleet/packages/{cm['metadata']['name']}/_ray_pkg_0123456789abcdef.zip"
    assert env["working_dir"] == path and env["py_modules"] == [path, "gs://bucket/lib.zip"]
    submitter = job["spec"]["submitterPodTemplate"]["spec"]
    assert submitter["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
    assert submitter["containers"][0]["volumeMounts"][0]["mountPath"] == path.rsplit("/", 1)[0]


def test_missing_or_oversized_packages_are_refused(backend, gke_cfg):
    with pytest.raises(BackendError, match="was not uploaded"):
        backend.launch(_req(gke_cfg, runtimeEnv={"working_dir": "gcs://_ray_pkg_missing.zip"}))
    with pytest.raises(BackendError, match="use a gs:// working_dir"):
        backend.upload_package("gcs://_ray_pkg_big.zip", b"x" * (kc.MAX_PACKAGE_BYTES + 1))


# ---------------------------------------------------------------- services


def test_services_deploy_update_status_and_delete(backend, fake_api, gke_cfg):
    svc = service("chat", replicaGroup={"accelerator": "nvidia-l4", "resourcesPerHost": {"cpu": "4", "nvidia.com/gpu": 1}},
                  autoscaling={"minReplicas": 1, "maxReplicas": 4})
    pool = gke_cfg.pools["l4-reserved"]
    assert backend.service_status("chat") is None
    backend.deploy_service(svc, "l4-reserved", pool.spec, 2)
    rs = fake_api.get("RayService", "chat", NS)
    assert crd_schema.validate(rs) == []
    assert rs["spec"]["rayClusterConfig"]["authOptions"] == {"mode": "token", "secretName": backend.auth_secret}
    assert rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] == 2
    writes = len(_writes(fake_api, "/rayservices"))
    backend.deploy_service(svc, "l4-reserved", pool.spec, 2)
    assert len(_writes(fake_api, "/rayservices")) == writes  # unchanged: nothing sent
    backend.deploy_service(svc, "l4-reserved", pool.spec, 3)
    assert fake_api.get("RayService", "chat", NS)["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] == 3

    st = backend.service_status("chat")
    assert (st.replicas_target, st.replicas_running, st.healthy) == (3, 0, False)
    fake_api.set_status("RayService", "chat", NS, {"serviceStatus": "Running", "activeServiceStatus": {
        "rayClusterName": "chat-abc12", "applicationStatuses": {"chat": {"status": "RUNNING"}}}})
    dash = fake_api.dashboard(NS, "chat-abc12")
    dash.token = backend.token.read()
    dash.serve = {"applications": {"chat": {"status": "RUNNING", "route_prefix": "/", "deployments": {"app": {
        "status": "UPSCALING", "target_num_replicas": 3,
        "replicas": [{"state": "RUNNING"}, {"state": "RUNNING"}, {"state": "PENDING_ALLOCATION"}]}}}}}
    st = backend.service_status("chat")
    assert (st.replicas_target, st.replicas_running, st.replicas_wanted, st.healthy) == (3, 2, 3, True)
    assert st.url == f"http://chat-serve-svc.{NS}.svc.cluster.local:8000"
    backend.delete_service("chat")
    backend.delete_service("chat")  # no-op when absent
    assert backend.service_status("chat") is None


def test_the_controller_scales_a_rayservice_to_the_quota_grant(backend, fake_api, gke_cfg):
    from rayfleet.server.serving import BackendServing

    serving = BackendServing(backend)
    svc = service("chat", replicaGroup={"accelerator": "nvidia-l4", "resourcesPerHost": {"cpu": "4", "nvidia.com/gpu": 1}},
                  autoscaling={"minReplicas": 1, "maxReplicas": 4})
    spec = gke_cfg.pools["l4-reserved"].spec
    rs = serving.scale(svc, "l4-reserved", spec, 2, {})
    assert (rs.replicas_target, rs.replicas_running, rs.state) == (2, 0, ServiceState.DEPLOYING)
    writes = len(_writes(fake_api, "/rayservices"))
    serving.scale(svc, "l4-reserved", spec, 2, {})
    assert len(_writes(fake_api, "/rayservices")) == writes  # the grant did not change: nothing sent
    fake_api.set_status("RayService", "chat", NS, {"serviceStatus": "Running", "activeServiceStatus": {
        "rayClusterName": "chat-abc12", "applicationStatuses": {"chat": {"status": "RUNNING"}}}})
    dash = fake_api.dashboard(NS, "chat-abc12")
    dash.token = backend.token.read()
    dash.serve = {"applications": {"chat": {"status": "RUNNING", "route_prefix": "/", "deployments": {"app": {
        "status": "HEALTHY", "target_num_replicas": 2, "replicas": [{"state": "RUNNING"}, {"state": "RUNNING"}]}}}}}
    rs = serving.scale(svc, "l4-reserved", spec, 3, {})  # one more group granted
    assert fake_api.get("RayService", "chat", NS)["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] == 3
    assert (rs.replicas_target, rs.replicas_running, rs.state) == (3, 2, ServiceState.RUNNING)
    serving.delete("chat")
    assert backend.service_status("chat") is None


def test_server_side_validation_errors_surface(backend):
    bad = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "bad", "namespace": NS},
           "spec": {"entrypoint": "x", "shutdownAfterJobFinishes": "yes"}}
    with pytest.raises(BackendError, match="422.*shutdownAfterJobFinishes"):
        backend.kube.create(bad)
    with pytest.raises(NotFound):
        backend.kube.get("RayJob", "bad", NS)
    assert backend.kube.delete("RayJob", "bad", NS) is False


def test_serve_app_hook_supplies_the_serve_application(gke_cfg, fake_api):
    calls = []

    def app(svc, pool, spec, granted):
        calls.append((svc.name, pool, granted))
        return {"name": svc.name, "import_path": "rayfleet.serve.app:build_service_app", "route_prefix": "/",
                "deployments": [{"name": "rayfleet-group", "autoscaling_config": {"max_replicas": granted}}]}

    b = kc.KubeRayBackend(gke_cfg, fake_api.api_client(), serve_app=app)
    svc = service("chat", replicaGroup={"accelerator": "nvidia-l4", "resourcesPerHost": {"nvidia.com/gpu": 1}},
                  autoscaling={"minReplicas": 1, "maxReplicas": 4})
    b.deploy_service(svc, "l4-spot", gke_cfg.pools["l4-spot"].spec, 2)
    b.deploy_service(svc, "l4-spot", gke_cfg.pools["l4-spot"].spec, 9)   # the cap is at most maxReplicas
    config = yaml.safe_load(fake_api.get("RayService", "chat", NS)["spec"]["serveConfigV2"])
    assert config["applications"][0]["import_path"] == "rayfleet.serve.app:build_service_app"
    assert calls == [("chat", "l4-spot", 2), ("chat", "l4-spot", 4)]


def test_without_a_serve_app_builder_services_are_refused(gke_cfg, fake_api):
    b = kc.KubeRayBackend(gke_cfg, fake_api.api_client())
    svc = service("chat", replicaGroup={"accelerator": "nvidia-l4", "resourcesPerHost": {"nvidia.com/gpu": 1}})
    with pytest.raises(BackendError, match="without a Serve application builder"):
        b.deploy_service(svc, "l4-spot", gke_cfg.pools["l4-spot"].spec, 1)
    assert fake_api.get("RayService", "chat", NS) is None


def test_unreachable_kubeconfig_is_a_backend_error(gke_cfg, tmp_path):
    cluster = gke_cfg.cluster.model_copy(deep=True)
    cluster.spec.kuberay.kubeconfig = str(tmp_path / "missing-kubeconfig")
    cfg = type(gke_cfg)(**{**vars(gke_cfg), "cluster": cluster})
    with pytest.raises(BackendError, match="missing-kubeconfig"):
        kc.KubeRayBackend(cfg)
