"""The autoscaling policy's uncapped "wanted" decision and the quota scaler's reasoning (no Ray started)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from rayfleet.api import Service, ServiceState
from rayfleet.serve import policy as policy_mod
from rayfleet.serve.deployer import GroupReplica, ServeAppStatus
from rayfleet.serve.names import KV_NAMESPACE, kv_key
from rayfleet.serve.scaler import ScaleReport, explain, quota_requests


@pytest.fixture
def kv(monkeypatch):
    from ray.experimental import internal_kv

    store: dict[tuple[str, str], bytes] = {}

    def put(key, value, overwrite=True, namespace=None):
        store[(namespace, key)] = value.encode() if isinstance(value, str) else value

    def get(key, namespace=None):
        return store.get((namespace, key))

    monkeypatch.setattr(internal_kv, "_internal_kv_put", put)
    monkeypatch.setattr(internal_kv, "_internal_kv_get", get)
    return store


def ctx(now, *, requests, running, target, cap, upscale=2.0, downscale=5.0, target_ongoing=2.0):
    from ray.serve.config import AutoscalingConfig

    cfg = AutoscalingConfig(
        min_replicas=1, max_replicas=cap, target_ongoing_requests=target_ongoing, upscale_delay_s=upscale, downscale_delay_s=downscale
    )
    return SimpleNamespace(
        app_name="svc", deployment_name="rayfleet-group", config=cfg, current_time=now,
        current_num_replicas=running, target_num_replicas=target, total_num_requests=requests,
        capacity_adjusted_max_replicas=cap, capacity_adjusted_min_replicas=1, policy_state={}, running_replicas=[],
    )


def record(kv):
    return json.loads(kv[(KV_NAMESPACE, kv_key("svc"))])


def test_policy_returns_serves_own_decision_and_tracks_wanted_beyond_the_cap(kv):
    pol = policy_mod.QuotaAwarePolicy(min_replicas=1, max_replicas=4)
    # 10 requests in flight, target 2 per replica: Serve's default policy wants 5; the cap is 2.
    desired, _ = pol(ctx(100.0, requests=10, running=2, target=2, cap=2))
    assert desired == pytest.approx(5.0)  # exactly what replica_queue_length_autoscaling_policy says
    assert record(kv)["wanted"] == 2       # the upscale delay has not passed yet
    pol(ctx(101.0, requests=10, running=2, target=2, cap=2))
    assert record(kv)["wanted"] == 2
    pol(ctx(102.0, requests=10, running=2, target=2, cap=2))
    rec = record(kv)
    assert rec["wanted"] == 4              # bounded by the Service's maxReplicas, not by the cap
    assert (rec["cap"], rec["target"], rec["totalRequests"]) == (2, 2, 10)
    # Load stops: wanted falls back only after the downscale delay.
    pol(ctx(103.0, requests=0, running=2, target=2, cap=2))
    pol(ctx(107.0, requests=0, running=2, target=2, cap=2))
    assert record(kv)["wanted"] == 4
    pol(ctx(108.0, requests=0, running=2, target=2, cap=2))
    assert record(kv)["wanted"] == 1       # the Service's minReplicas


def test_policy_restores_wanted_after_a_config_change(kv):
    pol = policy_mod.QuotaAwarePolicy(min_replicas=1, max_replicas=4)
    for t in (0.0, 2.0):
        pol(ctx(t, requests=10, running=2, target=2, cap=2))
    assert record(kv)["wanted"] == 4
    # Serve builds a new policy object when the cap changes; wanted carries over from the KV.
    fresh = policy_mod.QuotaAwarePolicy(min_replicas=1, max_replicas=4)
    fresh(ctx(3.0, requests=10, running=2, target=3, cap=3))
    assert record(kv)["wanted"] == 4


def test_policy_never_breaks_serve_when_bookkeeping_fails(monkeypatch):
    from ray.experimental import internal_kv

    def boom(*a, **k):
        raise RuntimeError("GCS away")

    monkeypatch.setattr(internal_kv, "_internal_kv_get", boom)
    monkeypatch.setattr(internal_kv, "_internal_kv_put", boom)
    desired, _ = policy_mod.QuotaAwarePolicy(1, 3)(ctx(0.0, requests=4, running=1, target=1, cap=1))
    assert desired == pytest.approx(2.0)


def svc(min_r=1, max_r=4, hosts=2) -> Service:
    return Service.model_validate(
        {
            "metadata": {"name": "svc"},
            "spec": {
                "importPath": "serve_apps.pipeline_mlp:app",
                "queue": "team-a",
                "replicaGroup": {"hostsPerReplica": hosts},
                "autoscaling": {"minReplicas": min_r, "maxReplicas": max_r},
            },
        }
    )


def test_quota_requests_base_plus_one_request_per_extra_group():
    s = svc(min_r=2, max_r=5)
    assert quota_requests(s, None) == quota_requests(s, 1)
    q = quota_requests(s, 4)
    assert (q.base_groups, q.extra_groups, q.total_groups, q.hosts_per_group) == (2, 2, 4, 2)
    assert quota_requests(s, 99).total_groups == 5
    assert quota_requests(svc(min_r=0, max_r=3), 0).base_groups == 1


def obs(**kw) -> ServeAppStatus:
    base = {"name": "svc", "exists": True, "app_status": "RUNNING", "url": "http://h:1/svc"}
    return ServeAppStatus(**{**base, **kw})


def replicas(*states: str) -> tuple[GroupReplica, ...]:
    return tuple(GroupReplica(f"r{i}", s, None, None, None) for i, s in enumerate(states))


def test_explain_names_quota_as_the_limit():
    state, msg = explain(svc(), obs(target=2, running=2, wanted=4, replicas=replicas("RUNNING", "RUNNING")), granted=2)
    assert state is ServiceState.RUNNING and "2 group(s) wanted beyond quota: 2 granted" in msg


def test_explain_reclaim_drain_and_start():
    state, msg = explain(svc(), obs(target=1, running=1, wanted=3, replicas=replicas("RUNNING", "STOPPING")), granted=1)
    assert state is ServiceState.RUNNING and "draining 1 group(s) above the quota grant" in msg
    state, msg = explain(svc(), obs(target=2, running=1, wanted=2, replicas=replicas("RUNNING", "STARTING")), granted=2)
    assert "1 group(s) starting" in msg
    state, msg = explain(svc(), obs(target=1, running=0, app_status="DEPLOYING", replicas=replicas("STARTING")), granted=1)
    assert state is ServiceState.DEPLOYING


def test_explain_failures_and_absence():
    assert explain(svc(), obs(app_status="DEPLOY_FAILED", message="ImportError"), 1)[0] is ServiceState.FAILED
    assert explain(svc(), ServeAppStatus(name="svc", exists=False), 1)[0] is ServiceState.PENDING
    state, msg = explain(svc(min_r=2), obs(target=2, running=1, wanted=2, replicas=replicas("RUNNING", "STARTING")), granted=2)
    assert state is ServiceState.DEGRADED and msg.startswith("1 of minReplicas 2 groups running")


def test_scale_report_fills_service_status():
    rep = ScaleReport(wanted=3, granted=2, running=2, cap=2, target=2, state=ServiceState.RUNNING, message="m", url="http://h/x")
    st = rep.to_status(flavor="l4-spot")
    assert (st.replicas_wanted, st.replicas_granted, st.replicas_running, st.url, st.flavor) == (3, 2, 2, "http://h/x", "l4-spot")
