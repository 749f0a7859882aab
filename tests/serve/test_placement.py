"""Group placement and the Serve application config of a Service (no Ray started)."""

from __future__ import annotations

import pytest

from rayfleet.api import PoolSpec, Service
from rayfleet.api.labels import LABEL_POOL, LABEL_TPU_SLICE, LABEL_TPU_WORKER
from rayfleet.serve.deployer import ServeOptions, _same_app, replica_cap, service_app_config, service_url
from rayfleet.serve.names import BUILDER_IMPORT_PATH, GROUP_DEPLOYMENT, POLICY_IMPORT_PATH
from rayfleet.serve.placement import GroupPlacement, PlacementError, bundle_actor_options, group_placement

H100 = PoolSpec(accelerator="nvidia-h100-80gb", accelerators_per_host=8, machine_type="a3-highgpu-8g", max_replicas=4)
L4 = PoolSpec(accelerator="nvidia-l4", accelerators_per_host=1, machine_type="g2-standard-8", max_replicas=3)
CPU_POOL = PoolSpec(machine_type="n2-standard-8", max_replicas=2)
TPU_ONE_SLICE = PoolSpec(accelerator="tpu-v5-lite-podslice", accelerators_per_host=4, machine_type="ct5lp-hightpu-4t", tpu_topology="2x4", max_replicas=1)
TPU_TWO_SLICES = TPU_ONE_SLICE.model_copy(update={"max_replicas": 2})


def service(name: str = "svc", **spec) -> Service:
    body = {"importPath": "serve_apps.pipeline_mlp:app", "queue": "team-a", **spec}
    return Service.model_validate({"metadata": {"name": name}, "spec": body})


def test_gpu_group_one_bundle_per_host_spread_and_pinned_to_pool():
    s = service(replicaGroup={"hostsPerReplica": 2, "resourcesPerHost": {"nvidia.com/gpu": 8, "cpu": 4}})
    p = group_placement(s.spec, "h100", H100, cpu_per_bundle=0.1)
    assert p.hosts == 2 and p.strategy == "STRICT_SPREAD"
    assert p.bundles == [{"CPU": 0.1, "GPU": 8.0, "accelerator_type:H100": 0.001}] * 2
    assert p.bundle_label_selector == [{LABEL_POOL: "h100"}] * 2
    # The leader (Serve's replica actor, bundle 0) holds exactly bundle 0: host 0's GPUs.
    assert p.actor_resources == {"num_cpus": 0.1, "num_gpus": 8.0, "resources": {"accelerator_type:H100": 0.001}}
    opts = p.deployment_options()
    assert set(opts) == {"placement_group_bundles", "placement_group_strategy", "placement_group_bundle_label_selector"}


def test_cpu_from_spec_when_not_overridden_and_flavor_labels_added():
    s = service(replicaGroup={"resourcesPerHost": {"cpu": "1500m"}})
    p = group_placement(s.spec, "cpu", CPU_POOL, cpu_per_bundle=None, node_labels={"cloud.google.com/gke-spot": "true"})
    assert p.bundles == [{"CPU": 1.5}] and p.strategy == "PACK"
    assert p.bundle_label_selector == [{LABEL_POOL: "cpu", "cloud.google.com/gke-spot": "true"}]


def test_multi_host_tpu_replica_is_a_whole_slice():
    s = service(replicaGroup={"hostsPerReplica": 2, "resourcesPerHost": {"google.com/tpu": 4}})
    p = group_placement(s.spec, "tpu", TPU_ONE_SLICE)
    assert p.bundles[0]["TPU-v5litepod-8-head"] == 1.0 and "TPU-v5litepod-8-head" not in p.bundles[1]
    assert all(b["TPU"] == 4.0 and b["accelerator_type:TPU-V5LITEPOD"] == 0.001 for b in p.bundles)
    assert [sel[LABEL_TPU_WORKER] for sel in p.bundle_label_selector] == ["0", "1"]
    assert {sel[LABEL_TPU_SLICE] for sel in p.bundle_label_selector} == {"tpu-0"}
    assert p.same_slice_label is None
    # Several slices: the slice cannot be named in advance; the leader checks the members agree.
    q = group_placement(s.spec, "tpu", TPU_TWO_SLICES)
    assert all(LABEL_TPU_SLICE not in sel for sel in q.bundle_label_selector)
    assert q.same_slice_label == LABEL_TPU_SLICE


@pytest.mark.parametrize(
    ("group", "pool", "field"),
    [
        ({"resourcesPerHost": {"nvidia.com/gpu": 2}}, L4, "resourcesPerHost"),
        ({"resourcesPerHost": {"google.com/tpu": 4}}, H100, "resourcesPerHost"),
        ({"accelerator": "nvidia-l4"}, H100, "accelerator"),
        ({"hostsPerReplica": 3, "resourcesPerHost": {"google.com/tpu": 4}}, TPU_ONE_SLICE, "hostsPerReplica"),
        ({"hostsPerReplica": 5}, L4, "hostsPerReplica"),
    ],
)
def test_shapes_that_do_not_fit_name_the_field(group, pool, field):
    with pytest.raises(PlacementError, match=f"spec.replicaGroup.{field}"):
        group_placement(service(replicaGroup=group).spec, "p", pool)


def test_placement_round_trips_through_builder_args():
    s = service(replicaGroup={"hostsPerReplica": 2, "resourcesPerHost": {"google.com/tpu": 4}})
    p = group_placement(s.spec, "tpu", TPU_TWO_SLICES)
    assert GroupPlacement.from_dict(p.to_dict()) == p


def test_bundle_actor_options_take_the_whole_bundle():
    assert bundle_actor_options({"CPU": 0.5, "TPU": 4.0, "accelerator_type:TPU-V5LITEPOD": 0.001}) == {
        "num_cpus": 0.5,
        "num_gpus": 0,
        "resources": {"TPU": 4.0, "accelerator_type:TPU-V5LITEPOD": 0.001},
    }


def test_service_app_config_is_a_serve_application_with_the_quota_cap():
    from ray.serve.schema import ServeApplicationSchema

    s = service(
        "mlp",
        routePrefix="/mlp",
        args={"layers": 4},
        runtimeEnv={"env_vars": {"A": "1"}},
        replicaGroup={"hostsPerReplica": 2, "resourcesPerHost": {"nvidia.com/gpu": 1}},
        autoscaling={"minReplicas": 1, "maxReplicas": 4, "targetOngoingRequests": 3, "upscaleDelay": "5s", "downscaleDelay": "1m"},
    )
    opts = ServeOptions(http_port=18000, look_back_period_s=2, metrics_interval_s=0.5, max_ongoing_requests=8)
    app = service_app_config(s, "l4", L4, granted=2, options=opts)
    ServeApplicationSchema.model_validate(app)  # Serve accepts it as is
    assert app["name"] == "mlp" and app["route_prefix"] == "/mlp" and app["import_path"] == BUILDER_IMPORT_PATH
    assert app["args"]["importPath"] == "serve_apps.pipeline_mlp:app" and app["args"]["args"] == {"layers": 4}
    assert app["runtime_env"] == {"env_vars": {"A": "1"}}
    (dep,) = app["deployments"]
    assert dep["name"] == GROUP_DEPLOYMENT and dep["max_ongoing_requests"] == 8
    auto = dep["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"], auto["target_ongoing_requests"]) == (1, 2, 3)
    assert (auto["upscale_delay_s"], auto["downscale_delay_s"], auto["look_back_period_s"]) == (5, 60, 2)
    assert auto["policy"] == {"policy_function": POLICY_IMPORT_PATH, "policy_kwargs": {"min_replicas": 1, "max_replicas": 4}}
    assert service_url(s, opts) == "http://127.0.0.1:18000/mlp"
    # No initial_replicas: Serve resets its target to it on every config update (each cap change).
    assert "initial_replicas" not in auto


def test_the_services_own_autoscaling_windows_win_over_the_deployers_defaults():
    s = service(autoscaling={"minReplicas": 1, "maxReplicas": 2, "lookBackPeriod": "5s", "metricsInterval": "1s"})
    opts = ServeOptions(look_back_period_s=2, metrics_interval_s=0.5)
    auto = service_app_config(s, "l4", L4, granted=1, options=opts)["deployments"][0]["autoscaling_config"]
    assert (auto["look_back_period_s"], auto["metrics_interval_s"]) == (5, 1)
    auto = service_app_config(service(), "l4", L4, granted=1)["deployments"][0]["autoscaling_config"]
    assert "look_back_period_s" not in auto and "metrics_interval_s" not in auto  # Serve's defaults


@pytest.mark.parametrize(
    "autoscaling, problem",
    [
        ({"lookBackPeriod": "1s", "metricsInterval": "2s"}, "lookBackPeriod: 1.0s must be longer than metricsInterval (2.0s)"),
        ({"lookBackPeriod": "5s"}, "lookBackPeriod: 5.0s must be longer than metricsInterval (10.0s)"),
        ({"metricsInterval": "0s"}, "metricsInterval: must be more than 0 seconds"),
    ],
)
def test_autoscaling_windows_are_checked_naming_the_field(autoscaling, problem):
    with pytest.raises(ValueError) as e:
        service(autoscaling=autoscaling)
    assert problem in str(e.value)


def test_replica_cap_stays_within_base_and_max():
    s = service(autoscaling={"minReplicas": 2, "maxReplicas": 5})
    assert [replica_cap(s, g) for g in (0, 2, 3, 9)] == [2, 2, 3, 5]
    zero = service(autoscaling={"minReplicas": 0, "maxReplicas": 3})
    assert replica_cap(zero, 0) == 1  # Serve's cold start cannot be gated: one group is the base


def test_same_app_compares_what_rayfleet_sets():
    s = service(replicaGroup={"resourcesPerHost": {"nvidia.com/gpu": 1}})
    app = service_app_config(s, "l4", L4, granted=1)
    stored = {**app, "deployments": [{**app["deployments"][0], "user_config": None}], "external_scaler_enabled": False}
    assert _same_app(stored, app)
    assert not _same_app(stored, service_app_config(s, "l4", L4, granted=1, options=ServeOptions(health_check_period_s=7)))
    assert not _same_app(None, app)
