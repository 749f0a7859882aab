"""The KubeRay backend's request budget (token bucket, clientConnection config) and its watches
(list once, watch from the list's resourceVersion, list again after 410 Gone), against the fake API
server: reads answer from memory, a run launched a moment ago is known, and watched statuses carry
what ``run_status`` carries (hosts, notices)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from kuberay_helpers import train_job, until

from rayfleet.backends.base import NoticeKind, RunState, WatchingBackend
from rayfleet.backends.kuberay import client as kc
from rayfleet.backends.kuberay import manifests as m
from rayfleet.backends.kuberay.kube import Expired
from rayfleet.backends.kuberay.nodes import TAINT_IMPENDING_TERMINATION
from rayfleet.backends.kuberay.ratelimit import TokenBucket
from rayfleet.backends.kuberay.watch_cache import Informer
from rayfleet.config import load_config
from rayfleet.errors import ConfigError

NS = "rayfleet"



def _req(cfg, pool="a100-reserved", name="job-a"):
    per = {"nvidia.com/gpu": 8} if pool in ("a100-reserved", "h100-flex") else {"nvidia.com/gpu": 1}
    return m.launch_request_for(train_job(name, per_worker=per), cfg, pool)


# ---------------------------------------------------------------- the token bucket


class FakeTime:
    def __init__(self):
        self.t = 100.0
        self.slept: list[float] = []

    def clock(self):
        return self.t

    def sleep(self, s):
        self.slept.append(s)
        self.t += s


def test_the_bucket_lets_a_burst_through_then_paces_at_qps():
    ft = FakeTime()
    b = TokenBucket(10, 5, clock=ft.clock, sleep=ft.sleep)
    assert [b.take() for _ in range(5)] == [0.0] * 5          # the burst, at once
    assert b.take() == pytest.approx(0.1)                     # then one every 1/qps
    assert b.take() == pytest.approx(0.1)
    ft.t += 10.0                                              # a quiet spell refills up to burst, no more
    assert [b.take() for _ in range(5)] == [0.0] * 5
    assert b.take() == pytest.approx(0.1)
    assert (b.taken, b.waited) == (13, 3)


def test_over_any_stretch_at_most_burst_plus_qps_times_its_length_go_out():
    ft = FakeTime()
    b = TokenBucket(300, 500, clock=ft.clock, sleep=ft.sleep)
    sent = []
    for _ in range(3000):
        b.take()
        sent.append(ft.t)
    # every window [t, t + T] holds at most burst + qps * T requests
    for T in (0.5, 1.0, 5.0):
        j = 0
        for i in range(len(sent)):
            while sent[j] < sent[i] - T:
                j += 1
            assert i - j + 1 <= 500 + 300 * T + 1
    assert sent[-1] - sent[0] == pytest.approx((3000 - 500) / 300, rel=1e-6)


@pytest.mark.parametrize("qps, burst", [(0, 500), (-1, 500), (300, 0)])
def test_bad_budgets_are_refused(qps, burst):
    with pytest.raises(ValueError, match="qps|burst"):
        TokenBucket(qps, burst)


@pytest.mark.parametrize("conn, field", [("{qps: 0}", "clientConnection.qps"), ("{burst: 0}", "clientConnection.burst"),
                                         ("{qps: 300, burst: 2.5}", "clientConnection.burst")])
def test_the_config_names_a_bad_client_connection(tmp_path, conn, field):
    path = tmp_path / "c.yaml"
    path.write_text(f"kind: Cluster\nmetadata: {{name: c}}\nspec:\n  backend: kuberay\n  kuberay: {{clientConnection: {conn}}}\n")
    with pytest.raises(ConfigError) as e:
        load_config([path])
    assert field in str(e.value)


def test_the_backend_sends_through_its_budget(gke_cfg, fake_api):
    cfg = type(gke_cfg)(**{**vars(gke_cfg)})
    cfg.cluster = gke_cfg.cluster.model_copy(deep=True)
    cfg.cluster.spec.kuberay.client_connection.qps = 50
    cfg.cluster.spec.kuberay.client_connection.burst = 2
    kb = kc.KubeRayBackend(cfg, fake_api.api_client())
    t0 = time.monotonic()
    for _ in range(7):
        kb.info()
    assert kb.kube.bucket.taken == 7 and kb.kube.bucket.waited >= 1
    assert time.monotonic() - t0 >= (7 - 2) / 50 * 0.9   # 7 tokens by T need burst + qps * T >= 7


# ---------------------------------------------------------------- the informer


def test_an_informer_lists_then_watches(backend, fake_api, gke_cfg):
    inf = Informer(backend.kube, "RayJob", NS, backend._selector("run"), timeout_seconds=1)
    inf.start()
    try:
        assert inf.synced.wait(5)
        req = _req(gke_cfg)
        backend.launch(req)
        name = backend.run_name(req.run_id)
        assert until(lambda: inf.get(name) is not None)
        fake_api.set_status("RayJob", name, NS, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
        assert until(lambda: (inf.get(name).get("status") or {}).get("jobStatus") == "RUNNING")
        backend.stop(req.run_id)
        assert until(lambda: inf.get(name) is None and inf.gone(name))
        assert until(lambda: inf.watches >= 2, 3)   # the watch ended after timeoutSeconds and was opened again
        assert inf.lists == 1 and inf.relists == 0
    finally:
        inf.stop()


def test_an_expired_watch_lists_again(backend, fake_api, gke_cfg):
    inf = Informer(backend.kube, "RayJob", NS, backend._selector("run"), timeout_seconds=1)
    old, gone = _req(gke_cfg, name="old"), _req(gke_cfg, name="new")
    backend.launch(old)
    inf.list_once()
    assert inf.get(backend.run_name(old.run_id)) is not None
    backend.launch(gone)
    backend.stop(old.run_id)
    fake_api.compact()  # the events since the list are gone: a watch from the list's version gets 410
    with pytest.raises(Expired):
        inf.watch_once()
    inf.start()
    try:
        assert until(lambda: inf.relists == 1 and inf.get(backend.run_name(gone.run_id)) is not None)
        assert inf.get(backend.run_name(old.run_id)) is None and inf.gone(backend.run_name(old.run_id))
    finally:
        inf.stop()


def test_a_late_event_does_not_bring_a_deleted_object_back(backend, gke_cfg):
    inf = Informer(backend.kube, "RayJob", NS)
    obj = {"metadata": {"name": "a", "resourceVersion": "10"}}
    inf.apply("ADDED", obj)
    inf.forget("a")                                                      # the backend deleted it
    inf.apply("MODIFIED", {"metadata": {"name": "a", "resourceVersion": "11"}})   # in flight before the delete
    assert inf.get("a") is None
    inf.replace([{"metadata": {"name": "a", "resourceVersion": "11"}}], "12")      # a list sent before the delete
    assert inf.get("a") is None
    inf.seen({"metadata": {"name": "b", "resourceVersion": "20"}}, created=True)   # created after the list below
    inf.replace([], "15")
    assert inf.get("b") is not None


# ---------------------------------------------------------------- the backend, watched


@pytest.fixture
def watched(backend):
    assert isinstance(backend, WatchingBackend)
    backend.start_watching(timeout_seconds=2)
    yield backend
    backend.stop_watching()


def _calls(fake_api) -> int:
    """Requests the backend's own methods made: the informers' lists and watches run on their
    own threads (a watch re-opens every ``timeout_seconds``), so they are not counted."""
    return sum(n for (verb, _), n in fake_api.counts.items() if verb not in ("list", "watch"))


def test_a_watched_backend_answers_from_memory(watched, fake_api, gke_cfg):
    req = _req(gke_cfg)
    watched.token.ensure()                                      # the Ray token Secret, made once per cluster
    before = _calls(fake_api)
    watched.launch(req)
    assert _calls(fake_api) - before == 2                       # the notice ConfigMap and the RayJob; no GET first
    before = _calls(fake_api)
    st = watched.run_status(req.run_id)                          # launched a moment ago: known, not lost
    assert st is not None and st.state == RunState.PENDING
    name = watched.run_name(req.run_id)
    fake_api.set_status("RayJob", name, NS, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    assert until(lambda: watched.run_status(req.run_id).state == RunState.RUNNING)
    watched.capacity()
    watched.hosts()
    assert _calls(fake_api) == before                            # run_status, capacity, hosts: no request
    watched.stop(req.run_id)
    assert watched.run_status(req.run_id) is None
    assert watched.list_runs() == []


def test_a_run_the_watch_has_not_seen_is_asked_for_once(watched, fake_api, gke_cfg):
    other = kc.KubeRayBackend(gke_cfg, fake_api.api_client())   # another process launched it
    req = _req(gke_cfg)
    other.launch(req)
    gets = fake_api.count("get", "rayjobs")
    cache = watched.cache.rayjobs
    name = watched.run_name(req.run_id)
    # before its event arrives the watched backend asks (once); after, it answers from memory
    st = watched.run_status(req.run_id) if cache.get(name) is None else None
    if st is not None:
        assert st.state == RunState.PENDING and fake_api.count("get", "rayjobs") == gets + 1
    assert until(lambda: cache.get(name) is not None)
    gets = fake_api.count("get", "rayjobs")
    assert watched.run_status(req.run_id).state == RunState.PENDING
    assert watched.run_status("nosuch-1-000000000000") is None    # unknown: asked once, then remembered as gone
    assert watched.run_status("nosuch-1-000000000000") is None
    assert fake_api.count("get", "rayjobs") == gets + 1


def _ts(t):
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_watched_statuses_carry_the_notices_run_status_has(gke_cfg, fake_api):
    now = time.time()
    kb = kc.KubeRayBackend(gke_cfg, fake_api.api_client(), clock=lambda: now)
    req = _req(gke_cfg, pool="l4-spot")
    kb.launch(req)
    _, rv = kb.kube.list_with_version("RayJob", NS)
    labels = m.pool_placement(gke_cfg.pools["l4-spot"].spec).node_selector
    fake_api.put({"apiVersion": "v1", "kind": "Node",
                  "metadata": {"name": "spot-1", "labels": labels, "creationTimestamp": _ts(now - 3600)},
                  "spec": {"taints": [{"key": TAINT_IMPENDING_TERMINATION, "effect": "NoSchedule", "timeAdded": _ts(now - 5)}]},
                  "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _ts(now - 3500)}]}})
    fake_api.put({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "w0", "namespace": NS, "labels": {"ray.io/node-type": "worker", m.LABEL_RUN: m.run_label(req.run_id),
                                                                       m.LABEL_ROLE: "run", m.LABEL_CLUSTER: "gke-ml"}},
                  "spec": {"nodeName": "spot-1", "containers": [{"name": "ray-worker", "image": "rayproject/ray"}]},
                  "status": {"phase": "Running"}})
    fake_api.set_status("RayJob", kb.run_name(req.run_id), NS, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    polled = kb.run_status(req.run_id)
    assert [n.kind for n in polled.notices] == [NoticeKind.RECLAIM] and polled.hosts == ("spot-1",)
    seen = None
    for run_id, st in kb.watch_runs(resource_version=rv, timeout_seconds=2):
        if run_id == req.run_id and st is not None and st.state == RunState.RUNNING:
            seen = st
            break
    assert seen == polled


def test_a_watched_dws_run_reads_its_request_from_the_watch_and_stop_deletes_it(watched, fake_api, gke_cfg):
    req = _req(gke_cfg, pool="h100-flex")
    watched.launch(req)
    name = watched.run_name(req.run_id)
    assert until(lambda: watched.cache.provreqs.get(name) is not None)
    gets = fake_api.count("get")
    st = watched.run_status(req.run_id)
    assert st.state == RunState.PENDING and "DWS" in st.message
    assert [h for h in watched.hosts() if h.name.startswith(name)]              # the hosts the request waits for
    assert fake_api.count("get") == gets
    watched.stop(req.run_id)
    assert fake_api.get("ProvisioningRequest", name, NS) is None and fake_api.get("PodTemplate", f"{name}-workers", NS) is None
    assert watched.cache.provreqs.get(name) is None


def test_a_watched_stop_of_a_plain_run_sends_no_dws_deletes(watched, fake_api, gke_cfg):
    req = _req(gke_cfg)
    watched.launch(req)
    before = dict(fake_api.counts)
    watched.stop(req.run_id)
    sent = {k: n - before.get(k, 0) for k, n in fake_api.counts.items() if n != before.get(k, 0)}
    assert sent == {("delete", "rayjobs"): 1, ("delete", "configmaps"): 1}
