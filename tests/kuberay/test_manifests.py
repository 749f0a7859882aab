"""ray.io/v1 objects from rayfleet specs: GKE placement per pool type, TPU shapes, Ray labels and
resources, RayJob lifecycle fields, DWS ProvisioningRequests, RayService serve config."""

from __future__ import annotations

import json

import pytest
import yaml
from kuberay_helpers import service, train_job

from rayfleet.api.labels import LABEL_ACCELERATOR, LABEL_POOL, node_resources
from rayfleet.backends.kuberay import crd_schema
from rayfleet.backends.kuberay import manifests as m
from rayfleet.server.main import kuberay_serve_app


def _worker(obj: dict) -> dict:
    spec = obj["spec"]
    cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec
    (group,) = cluster["workerGroupSpecs"]
    return group


def _run(cfg, pool, job, **kw):
    cluster, kuberay = m.cluster_kuberay(cfg)
    return m.run_objects(m.launch_request_for(job, cfg, pool), cluster=cluster, kuberay=kuberay, **kw)


# ---------------------------------------------------------------- GPU placement


def test_gpu_spot_pool_selects_spot_nodes_and_tolerates_their_taint(gke_cfg):
    run = _run(gke_cfg, "l4-spot", train_job("spot", queue="research", per_worker={"nvidia.com/gpu": 1}))
    pod = _worker(run.rayjob)["template"]["spec"]
    assert pod["nodeSelector"][m.GKE_ACCELERATOR] == "nvidia-l4"
    assert pod["nodeSelector"][m.GKE_SPOT] == "true"
    assert {"key": m.GKE_SPOT, "operator": "Equal", "value": "true", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["terminationGracePeriodSeconds"] == m.SPOT_TERMINATION_GRACE_SECONDS
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert pod["containers"][0]["resources"]["requests"] == limits


def test_gpu_reservation_pool_selects_the_specific_reservation(gke_cfg):
    run = _run(gke_cfg, "a100-reserved", train_job("res", per_worker={"nvidia.com/gpu": 8}))
    sel = _worker(run.rayjob)["template"]["spec"]["nodeSelector"]
    assert sel[m.GKE_RESERVATION_NAME] == "a100-training-res"
    assert sel[m.GKE_RESERVATION_AFFINITY] == "specific"
    assert sel[m.GKE_RESERVATION_PROJECT] == "ml-capacity"
    assert m.GKE_SPOT not in sel and m.GKE_FLEX_START not in sel


def test_on_demand_pool_keeps_off_spot_flex_and_reserved_nodes(gke_cfg):
    run = _run(gke_cfg, "t4", train_job("od", queue="research", per_worker={"nvidia.com/gpu": 1}))
    pod = _worker(run.rayjob)["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    exprs = {e["key"]: e for e in terms[0]["matchExpressions"]}
    assert exprs[m.GKE_SPOT] == {"key": m.GKE_SPOT, "operator": "NotIn", "values": ["true"]}
    assert exprs[m.GKE_RESERVATION_NAME]["operator"] == "DoesNotExist"
    assert pod["nodeSelector"][m.INSTANCE_TYPE] == "n1-standard-8"


def test_non_queued_flex_start_pins_max_run_duration_without_provisioning_request(gke_cfg):
    run = _run(gke_cfg, "l4-flex", train_job("flex", queue="inference", per_worker={"nvidia.com/gpu": 1}))
    pod = _worker(run.rayjob)["template"]["spec"]
    assert pod["nodeSelector"][m.GKE_FLEX_START] == "true"
    assert pod["nodeSelector"][m.GKE_MAX_RUN_DURATION] == str(7 * 86400)
    assert all(t["key"] != m.GKE_QUEUED for t in pod["tolerations"])
    assert run.provisioning_request is None and run.pod_template is None


def test_h100_dws_flex_start_gets_a_provisioning_request_for_the_whole_gang(gke_cfg):
    job = train_job("llm", workers=4, per_worker={"cpu": "32", "nvidia.com/gpu": 8}, max_run="6h")
    run = _run(gke_cfg, "h100-flex", job)
    pr, tmpl = run.provisioning_request, run.pod_template
    assert pr["apiVersion"] == "autoscaling.x-k8s.io/v1"
    assert pr["spec"]["provisioningClassName"] == "queued-provisioning.gke.io"
    assert pr["spec"]["parameters"] == {"maxRunDurationSeconds": str(6 * 3600)}  # the job's, shorter than the pool's 3 days
    assert pr["spec"]["podSets"] == [{"count": 4, "podTemplateRef": {"name": tmpl["metadata"]["name"]}}]
    worker = _worker(run.rayjob)
    ann = worker["template"]["metadata"]["annotations"]
    assert ann[m.PROVREQ_CONSUME] == pr["metadata"]["name"]
    assert ann[m.PROVREQ_CLASS_ANNOTATION] == "queued-provisioning.gke.io"
    pod = worker["template"]["spec"]
    assert pod["nodeSelector"][m.GKE_FLEX_START] == "true"
    assert {"key": m.GKE_QUEUED, "operator": "Equal", "value": "true", "effect": "NoSchedule"} in pod["tolerations"]
    # the PodTemplate asks for exactly what the worker pods ask for
    assert tmpl["template"]["spec"]["nodeSelector"] == pod["nodeSelector"]
    assert tmpl["template"]["spec"]["containers"][0]["resources"] == pod["containers"][0]["resources"]
    assert run.hosts == 4 and worker["replicas"] == worker["minReplicas"] == worker["maxReplicas"] == 4


def test_compute_class_placement_selects_only_the_class():
    from rayfleet.api import PoolSpec

    spec = PoolSpec.model_validate({"accelerator": "nvidia-l4", "acceleratorsPerHost": 1, "machineType": "g2-standard-12", "maxReplicas": 2,
                                    "provisioning": {"mode": "spot"}})
    p = m.pool_placement(spec, compute_class="l4-serving")
    assert p.node_selector == {m.GKE_COMPUTE_CLASS: "l4-serving"}
    assert {"key": m.GKE_COMPUTE_CLASS, "operator": "Equal", "value": "l4-serving", "effect": "NoSchedule"} in p.tolerations


# ---------------------------------------------------------------- TPU shapes


@pytest.mark.parametrize(
    ("pool", "topology", "hosts", "chips_per_host", "machine"),
    [
        ("tpu-v5e-4x4", "4x4", 4, 4, "ct5lp-hightpu-4t"),
        ("tpu-v6e-2x4", "2x4", 1, 8, "ct6e-standard-8t"),
        ("tpu-v5p-2x2x2", "2x2x2", 2, 4, "ct5p-hightpu-4t"),
    ],
)
def test_tpu_worker_groups_are_slices(gke_cfg, pool, topology, hosts, chips_per_host, machine):
    spec = gke_cfg.pools[pool].spec
    # two slices' worth of workers, one per host
    job = train_job("tpu", workers=2 * hosts, per_worker={"google.com/tpu": chips_per_host}, queue="training")
    run = _run(gke_cfg, pool, job)
    g = _worker(run.rayjob)
    assert g["numOfHosts"] == hosts
    assert g["replicas"] == 2  # slices
    assert run.hosts == 2 * hosts
    pod = g["template"]["spec"]
    assert pod["nodeSelector"][m.GKE_TPU_ACCELERATOR] == spec.accelerator.value
    assert pod["nodeSelector"][m.GKE_TPU_TOPOLOGY] == topology
    assert pod["nodeSelector"][m.INSTANCE_TYPE] == machine
    assert pod["containers"][0]["resources"]["limits"]["google.com/tpu"] == str(chips_per_host)
    assert {"key": "google.com/tpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    # fleet cluster: the same group shape, maxReplicas counted in slices
    fleet = {grp["groupName"]: grp for grp in m.fleet_raycluster(gke_cfg)["spec"]["workerGroupSpecs"]}
    assert fleet[pool]["numOfHosts"] == hosts
    assert fleet[pool]["maxReplicas"] == spec.max_replicas


def test_multi_host_tpu_gang_rounds_up_to_whole_slices(gke_cfg):
    spec = gke_cfg.pools["tpu-v5e-4x4"].spec
    assert m.gang_shape(spec, 5, {"google.com/tpu": 4}) == (8, 2)  # 5 hosts -> 2 slices of 4 hosts
    assert m.gang_shape(spec, 16, {"google.com/tpu": 1}, "PACK") == (4, 1)  # 4 workers per host
    # the default strategy of a multi-host TPU gang is STRICT_SPREAD: one host each
    assert m.gang_shape(spec, 8, {"google.com/tpu": 1}) == (8, 2)
    with pytest.raises(ValueError, match="slices of 4 hosts"):
        m.gang_shape(spec, 4 * spec.max_replicas + 1, {"google.com/tpu": 4})


def test_worker_that_does_not_fit_a_host_is_refused(gke_cfg):
    with pytest.raises(ValueError, match="asks for 2 nvidia.com/gpu but a host of the pool offers 1"):
        m.gang_shape(gke_cfg.pools["l4-spot"].spec, 1, {"nvidia.com/gpu": 2})


# ---------------------------------------------------------------- Ray labels and resources


def test_worker_groups_carry_the_local_backends_ray_labels_and_resources(gke_cfg):
    for name in ("a100-reserved", "tpu-v5e-4x4", "cpu"):
        spec = gke_cfg.pools[name].spec
        group = next(g for g in m.fleet_raycluster(gke_cfg)["spec"]["workerGroupSpecs"] if g["groupName"] == name)
        assert group["labels"][LABEL_POOL] == name
        assert "labels" not in group["rayStartParams"]  # KubeRay rejects it there
        if spec.accelerator is None:
            assert LABEL_ACCELERATOR not in group["labels"] and "resources" not in group["rayStartParams"]
            continue
        assert group["labels"][LABEL_ACCELERATOR] == spec.accelerator.value
        resources = json.loads(group["rayStartParams"]["resources"].strip("'"))
        assert resources == node_resources(spec, host_index=1)
        assert not any(k.endswith("-head") for k in resources)  # Ray adds the slice head on TPU worker 0
    a100 = next(g for g in m.fleet_raycluster(gke_cfg)["spec"]["workerGroupSpecs"] if g["groupName"] == "a100-reserved")
    assert a100["rayStartParams"]["num-gpus"] == "8"


def test_fleet_groups_start_empty_so_gangs_get_the_reserved_hosts(gke_cfg):
    fleet = m.fleet_raycluster(gke_cfg)
    assert fleet["spec"]["enableInTreeAutoscaling"] is True
    for g in fleet["spec"]["workerGroupSpecs"]:
        assert g["replicas"] == 0 and g["minReplicas"] == 0
    assert len(fleet["spec"]["workerGroupSpecs"]) == len(gke_cfg.pools)
    assert fleet["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


# ---------------------------------------------------------------- RayJob


def test_rayjob_lifecycle_fields(gke_cfg):
    job = train_job("Exp_42.v2", per_worker={"nvidia.com/gpu": 8}, max_run="90m",
                    runtimeEnv={"pip": ["torch"], "env_vars": {"A": "1"}}, trainApp=None)
    run = _run(gke_cfg, "a100-reserved", job)
    spec = run.rayjob["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == gke_cfg.cluster.spec.kuberay.ttl_seconds_after_finished
    assert spec["activeDeadlineSeconds"] == 5400
    assert spec["suspend"] is False
    assert spec["rayClusterSpec"]["enableInTreeAutoscaling"] is False
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert env["pip"] == ["torch"]
    assert env["env_vars"]["A"] == "1" and json.loads(env["env_vars"][m.RUN_REQUEST_ENV])["run_id"] == "Exp_42.v2-1"
    name = run.rayjob["metadata"]["name"]
    assert len(name) <= 47 and name == name.lower()
    assert run.rayjob["metadata"]["annotations"][m.ANN_RUN_ID] == "Exp_42.v2-1"
    assert crd_schema.validate(run.rayjob) == []


def test_kueue_rayjob_waits_suspended_and_leaves_flavor_choice_to_kueue(gke_cfg):
    run = _run(gke_cfg, "l4-spot", train_job("kq", queue="research", per_worker={"nvidia.com/gpu": 1}),
               suspend=True, local_queue="research", priority_class="experiment", pin_provisioning=False, namespace="team-research")
    meta, spec = run.rayjob["metadata"], run.rayjob["spec"]
    assert spec["suspend"] is True
    assert meta["labels"][m.KUEUE_QUEUE_NAME] == "research"
    assert meta["labels"][m.KUEUE_PRIORITY_CLASS] == "experiment"
    sel = _worker(run.rayjob)["template"]["spec"]["nodeSelector"]
    assert m.GKE_SPOT not in sel and sel[m.GKE_ACCELERATOR] == "nvidia-l4"
    assert crd_schema.validate(run.rayjob) == []


def test_drivers_are_the_local_backends_with_the_same_gang_plan(gke_cfg):
    job = train_job("ta", per_worker={"cpu": "8", "google.com/tpu": 4}, workers=4, entrypoint=None,
                    trainApp={"module": "train_apps.ddp_synthetic", "config": {"epochs": 2}})
    run = _run(gke_cfg, "tpu-v5e-4x4", job, placement_timeout_s=900)
    entry = run.rayjob["spec"]["entrypoint"]
    assert entry.endswith(f"exec python -m {m.TRAIN_LAUNCHER_MODULE} --run-dir {m.RUN_DIR_ROOT}/ta-1")
    request = json.loads(yaml.safe_load(run.rayjob["spec"]["runtimeEnvYAML"])["env_vars"][m.RUN_REQUEST_ENV])
    assert request["train_app"] == "train_apps.ddp_synthetic" and request["placement_timeout_s"] == 900
    plan = request["plan"]
    assert plan["strategy"] == "STRICT_SPREAD"  # multi-host TPU default
    assert plan["label_selectors"] == [{LABEL_POOL: "tpu-v5e-4x4"}] * 4  # the worker group's Ray label
    assert plan["tpu_slice"] is None
    ray_cpus = int(m.pod_share(gke_cfg.pools["tpu-v5e-4x4"].spec)["cpu"] // 1000)
    assert 0 < plan["bundle"]["CPU"] <= ray_cpus and plan["bundle"]["TPU"] == 4.0
    assert plan["bundle"]["accelerator_type:TPU-V5LITEPOD"] == 1.0
    cmd = _run(gke_cfg, "cpu", train_job("cmd", queue="training"))
    assert f"-m {m.ENTRYPOINT_MODULE} --run-dir" in cmd.rayjob["spec"]["entrypoint"]
    req = json.loads(yaml.safe_load(cmd.rayjob["spec"]["runtimeEnvYAML"])["env_vars"][m.RUN_REQUEST_ENV])
    assert req["entrypoint"] == "python train.py"


def test_k8s_names_are_dns1035_unique_and_bounded():
    a, b = m.k8s_name("rf", "Run_1-1"), m.k8s_name("rf", "run-1-1")
    assert a != b
    long = m.k8s_name("rf", "x" * 200)
    assert len(long) <= 47 and long.startswith("rf-")
    assert m.k8s_name("rf", "9abc-1")[0].isalpha()


# ---------------------------------------------------------------- RayService


def test_rayservice_multi_host_replicas(gke_cfg):
    svc = service("llama-70b", queue="training", replicaGroup={"hostsPerReplica": 2, "accelerator": "nvidia-tesla-a100",
                                                              "resourcesPerHost": {"cpu": "16", "nvidia.com/gpu": 8}},
                  autoscaling={"minReplicas": 1, "maxReplicas": 3, "targetOngoingRequests": 4})
    obj = m.rayservice(svc, gke_cfg, kuberay_serve_app, pool="a100-reserved")
    assert crd_schema.validate(obj) == []
    config = yaml.safe_load(obj["spec"]["serveConfigV2"])
    (app,) = config["applications"]
    # the leader-worker application of rayfleet.serve, as on the local backend
    assert app["import_path"] == "rayfleet.serve.app:build_service_app" and app["args"]["importPath"] == "serve_apps.llm:app"
    (dep,) = app["deployments"]
    assert dep["name"] == app["args"]["deploymentName"] == "rayfleet-group"
    bundle = {"CPU": 16.0, "GPU": 8.0, "accelerator_type:A100": 0.001}
    placement = app["args"]["placement"]
    assert placement["bundles"] == [bundle, bundle] and placement["strategy"] == "STRICT_SPREAD"
    assert placement["bundleLabelSelector"] == [{LABEL_POOL: "a100-reserved"}] * 2
    assert dep["autoscaling_config"]["min_replicas"] == 1 and dep["autoscaling_config"]["max_replicas"] == 3
    assert dep["autoscaling_config"]["target_ongoing_requests"] == 4
    group = _worker(obj)
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (2, 2, 6)  # replicas x 2 hosts
    assert obj["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True


def test_rayservice_goes_through_the_queues_compute_class(gke_cfg):
    svc = service("chat", replicaGroup={"accelerator": "nvidia-l4", "resourcesPerHost": {"cpu": "4", "nvidia.com/gpu": 1}})
    obj = m.rayservice(svc, gke_cfg, kuberay_serve_app)
    group = _worker(obj)
    assert group["template"]["spec"]["nodeSelector"] == {m.GKE_COMPUTE_CLASS: "l4-serving"}
    assert group["labels"] == {LABEL_ACCELERATOR: "nvidia-l4", m.LABEL_COMPUTE_CLASS: "l4-serving"}
    assert obj["metadata"]["annotations"]["rayfleet.io/compute-class"] == "l4-serving"
    assert crd_schema.validate(obj) == []


def test_rayservice_granted_caps_replicas(gke_cfg):
    svc = service("chat", replicaGroup={"accelerator": "nvidia-l4", "resourcesPerHost": {"nvidia.com/gpu": 1}},
                  autoscaling={"minReplicas": 2, "maxReplicas": 8})
    obj = m.rayservice(svc, gke_cfg, kuberay_serve_app, pool="l4-spot", granted=3)
    dep = yaml.safe_load(obj["spec"]["serveConfigV2"])["applications"][0]["deployments"][0]
    assert dep["autoscaling_config"]["max_replicas"] == 3
    assert _worker(obj)["maxReplicas"] == 3


def test_rayservice_refuses_replica_shape_that_does_not_match_tpu_slices(gke_cfg):
    svc = service("tpu-llm", queue="training", replicaGroup={"hostsPerReplica": 2, "accelerator": "tpu-v5-lite-podslice",
                                                             "resourcesPerHost": {"google.com/tpu": 4}})
    with pytest.raises(ValueError, match="TPU slices have 4 hosts"):
        m.rayservice(svc, gke_cfg, kuberay_serve_app, pool="tpu-v5e-4x4")
