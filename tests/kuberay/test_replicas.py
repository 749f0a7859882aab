"""Two control-service replicas (``rayfleet serve`` processes) on one PostgreSQL store and one
Kubernetes API (the fake API server with the fake KubeRay operator, reached through a kubeconfig,
as two pods of a Deployment reach GKE's): the leader is killed with ``kill -9`` during a burst of
200 submissions sent to both; the other replica takes the controller over within 15 s, and every
accepted job runs to the end, none lost, none launched twice (one RayJob per job, for attempt 1)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
import yaml
from fake_apiserver import FakeApiServer
from fake_kuberay_operator import FakeKubeRayOperator
from kuberay_fleet import job_shape, platform_yaml
from kuberay_helpers import rbac_denied
from service_process import RayfleetService

from rayfleet.backends.kuberay.self_manifests import ControlService, control_service_objects
from rayfleet.config import load_config

pytestmark = pytest.mark.slow   # PostgreSQL and two control services are processes

BURST = 200
QUEUES = 4
TAKEOVER_S = 15


def _kubeconfig(url: str) -> dict:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}


def _role(svc: RayfleetService) -> str | None:
    try:
        return httpx.get(f"{svc.url}/healthz", timeout=2).json().get("role")
    except (httpx.TransportError, ValueError):
        return None


def _wait_role(svc: RayfleetService, role: str, timeout: float) -> float:
    start = time.monotonic()
    while _role(svc) != role:
        assert time.monotonic() - start < timeout, f"{svc.url} is not {role} after {timeout}s: {svc.log.read_text()[-2000:]}"
        time.sleep(0.1)
    return time.monotonic() - start


def _job(i: int) -> dict:
    workers, per = job_shape(i)
    return {"metadata": {"name": f"job-{i:03d}"}, "spec": {
        "entrypoint": "python train.py", "queue": f"q-{i % QUEUES}", "maxRunDuration": "1h",
        "gang": {"workers": workers, "resourcesPerWorker": per}}}


def test_the_leader_killed_mid_burst_loses_nothing_and_launches_nothing_twice(tmp_path, postgres):
    url = postgres.new_database()
    with FakeApiServer() as api:
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(_kubeconfig(api.url)))
        text = platform_yaml(cpu_hosts=16, t4_hosts=4, queues=QUEUES, qps=200, burst=400, ttl_s=0)
        text = text.replace("    namespace: rayfleet\n", f"    namespace: rayfleet\n    kubeconfig: {tmp_path / 'kubeconfig'}\n", 1)
        (tmp_path / "platform.yaml").write_text(text)
        config = load_config([tmp_path / "platform.yaml"])
        operator = FakeKubeRayOperator(api, init_delay=0.05, start_delay=0.05, runtime=0.5)
        for pool in ("cpu", "t4"):
            operator.add_pool_nodes(pool, config.pools[pool].spec)
        with operator:
            replicas = []
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                replicas.append(RayfleetService(tmp_path / name / "data", tmp_path / "platform.yaml", store=url))
            a, b = replicas
            a.start(timeout=120)
            _wait_role(a, "leader", 30)   # (the first replica up mints the tokens; the next one finds them)
            b.start(timeout=120)
            b.credentials = a.credentials
            assert _role(b) == "follower"
            with b.client() as c:
                assert 'rayfleet_leader{role="follower"} 0.0' in c.get("/metrics").text
            try:
                burst = Burst(a, b)
                assert burst.accepted_60.wait(120), burst.refused[:5]
                a.kill9()   # the leader, mid-burst
                killed_at = time.monotonic()
                _wait_role(b, "leader", TAKEOVER_S + 10)
                took = time.monotonic() - killed_at
                burst.join()
                assert len(burst.accepted) == BURST and len(set(burst.accepted)) == BURST, burst.refused[:5]
                with b.client() as c:
                    deadline = time.monotonic() + 180
                    while True:
                        states = _states(c)
                        if set(states.values()) <= {"SUCCEEDED", "FAILED", "STOPPED"} or time.monotonic() > deadline:
                            break
                        time.sleep(0.5)
                    assert sorted(states) == sorted(burst.accepted)            # no accepted job lost, none stored twice
                    assert Counter(states.values()) == {"SUCCEEDED": BURST}, Counter(states.values())
                    assert set(operator.created_for_job) == set(burst.accepted)
                    twice = [j for j, n in operator.created_for_job.items() if n > 1]
                    assert twice == [], twice                                 # one RayJob each: nothing launched twice
                    attempts = Counter(c.get(f"/api/v1/jobs/{n}").json()["status"]["attempt"] for n in burst.accepted)
                    assert attempts == {1: BURST}, attempts
                    assert 'rayfleet_leader{role="leader"} 1.0' in c.get("/metrics").text
                # what `rayfleet export --self` grants the replicas covers every request they made
                own = control_service_objects(config, ControlService(image="rayfleet"))
                assert rbac_denied(own, {k for k, n in api.counts.items() if n}) == []
            finally:
                b.stop()
                a.stop()
    print(f"take-over {took:.1f}s after the kill; {len(burst.refused)} sends to the dead replica retried on the other")  # noqa: T201
    assert took <= TAKEOVER_S, f"the follower took over {took:.1f}s after the leader was killed"


class Burst:
    """200 submissions from 4 clients, each sent to replica a or b in turn and, when one does not
    answer, to the other (as a Service in front of the replicas would). ``accepted_60`` is set
    once 60 are accepted (the test kills the leader then)."""

    def __init__(self, a: RayfleetService, b: RayfleetService):
        self.a, self.b = a, b
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.accepted_60 = threading.Event()
        self._lock = threading.Lock()
        self._next = iter(range(BURST))
        self._threads = [threading.Thread(target=self._client, args=(k,)) for k in range(4)]
        for t in self._threads:
            t.start()

    def join(self) -> None:
        for t in self._threads:
            t.join(120)

    def _client(self, k: int) -> None:
        clients = {s.url: s.client() for s in (self.a, self.b)}
        try:
            while True:
                with self._lock:
                    i = next(self._next, None)
                if i is None:
                    return
                order = [self.a, self.b] if (i + k) % 2 else [self.b, self.a]
                for svc in order * 3:
                    try:
                        r = clients[svc.url].post("/api/v1/jobs", json=_job(i))
                    except httpx.TransportError as e:   # the killed replica: the other one takes it
                        self.refused.append(f"{svc.url}: {type(e).__name__}")
                        continue
                    if r.status_code in (200, 201):    # (200: stored already, by the replica that died answering)
                        with self._lock:
                            self.accepted.append(_job(i)["metadata"]["name"])
                            if len(self.accepted) >= 60:
                                self.accepted_60.set()
                        break
                    self.refused.append(f"{svc.url}: {r.status_code} {r.text[:200]}")
                    time.sleep(0.2)
        finally:
            for c in clients.values():
                c.close()


def _states(c: httpx.Client) -> dict[str, str]:
    out: dict[str, str] = {}
    cursor: int | None = 0
    while cursor is not None:
        page = c.get("/api/v1/jobs", params={"limit": 500, "cursor": cursor}).json()
        out.update({j["metadata"]["name"]: j["status"]["state"] for j in page["items"]})
        cursor = page["next"]
    return out
