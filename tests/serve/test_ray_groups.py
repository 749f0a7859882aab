"""Multi-host leader-worker replicas on real Ray (3 simulated hosts of pool ``l4``).

The service is ``serve_apps.pipeline_mlp`` with 2 hosts per replica: the leader (Serve's replica,
bundle 0) runs the first and last stages, the worker (bundle 1) the middle one.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from serve_helpers import Controller, make_service

from serve_apps.pipeline_mlp import reference_forward

pytestmark = pytest.mark.slow

INPUTS = [[0.1 * i - 0.5 for i in range(16)], [0.2] * 16]


@pytest.fixture(scope="module")
def mlp(deployer, serve_cluster):
    svc = make_service("mlp", "serve_apps.pipeline_mlp:app", hosts=2, min_r=1, max_r=1)
    with Controller(deployer, svc, grant=1, pool_spec=serve_cluster.pools["l4"]) as ctl:
        ctl.wait(lambda r: r.running == 1, 240, "the group running")
        yield ctl
    deployer.delete(svc.name)


def group(url: str) -> list[dict]:
    r = httpx.get(url + "/info", timeout=30)
    r.raise_for_status()
    return r.json()["group"]


def predict(url: str) -> httpx.Response:
    return httpx.post(url + "/", json={"inputs": INPUTS}, timeout=30)


def check_answer(resp: httpx.Response) -> None:
    assert resp.status_code == 200, resp.text
    got = resp.json()["outputs"]
    want = reference_forward(INPUTS)
    assert all(abs(a - b) < 1e-5 for ga, wa in zip(got, want, strict=True) for a, b in zip(ga, wa, strict=True))
    assert len(set(resp.json()["hosts"])) == 2  # answered by a whole group


def wait_new_group(url: str, old: list[dict], timeout_s: float, answers: list) -> list[dict]:
    """Poll until a different leader answers; record every answer given meanwhile."""
    old_pids = {m["pid"] for m in old}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            resp = predict(url)
            answers.append(resp)
            if resp.status_code == 200:
                members = group(url)
                if members[0]["pid"] not in old_pids:
                    return members
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no new group within {timeout_s}s")


def test_leader_and_worker_on_different_hosts_of_the_pool(mlp, deployer, serve_cluster):
    url = mlp.last.url
    members = group(url)
    assert [m["rank"] for m in members] == [0, 1]
    pool_nodes = serve_cluster.pool_node_ids("l4")
    node_ids = [m["nodeId"] for m in members]
    assert len(set(node_ids)) == 2 and set(node_ids) <= pool_nodes
    assert all(m["pool"] == "l4" for m in members)
    assert all(m["acceleratorIds"].get("GPU") for m in members)  # each member holds its host's GPU
    (replica,) = deployer.status("mlp").replicas
    assert replica.node_id == members[0]["nodeId"]  # Serve's replica actor is the leader, in bundle 0
    check_answer(predict(url))
    rep = mlp.last
    assert (rep.wanted, rep.granted, rep.running) == (1, 1, 1) and rep.url.endswith("/mlp")


def test_killing_a_worker_actor_replaces_the_whole_group(mlp, deployer):
    url = mlp.last.url
    old = group(url)
    old_replica = deployer.status("mlp").replicas[0].replica_id
    os.kill(old[1]["pid"], signal.SIGKILL)
    answers: list = []
    new = wait_new_group(url, old, 240, answers)
    assert new[0]["pid"] != old[0]["pid"] and new[1]["pid"] != old[1]["pid"]  # leader replaced too
    st = deployer.status("mlp")
    assert [r.replica_id for r in st.replicas] != [old_replica] and st.running == 1
    for resp in answers:  # whatever answered 200 meanwhile was a whole group
        if resp.status_code == 200:
            assert len(set(resp.json()["hosts"])) == 2
    check_answer(predict(url))


def test_losing_a_worker_host_replaces_the_whole_group(mlp, deployer, serve_cluster):
    url = mlp.last.url
    old = group(url)
    (host,) = [n for n in serve_cluster.nodes() if n["node_id"] == old[1]["nodeId"] and n["alive"]]
    serve_cluster.kill_host(host["host"])
    answers: list = []
    new = wait_new_group(url, old, 240, answers)
    assert host["node_id"] not in {m["nodeId"] for m in new}
    assert len({m["nodeId"] for m in new}) == 2
    check_answer(predict(url))
    assert mlp.wait(lambda r: r.running == 1, 60, "status shows the group running").state.value == "RUNNING"
