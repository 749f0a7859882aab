"""The fake API server behaves like kube-apiserver where the backend relies on it, as seen through
the official ``kubernetes`` client: discovery, Status errors, optimistic concurrency, the status
subresource, schema validation, label and field selectors and watches."""

from __future__ import annotations

import json
import threading

import pytest
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException


def _rayjob(name: str = "j1", **spec) -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": "ns", "labels": {"app": "x"}},
        "spec": {"entrypoint": "python x.py", "clusterSelector": {"ray.io/cluster": "c"}, **spec},
    }


def test_version_and_discovery(fake_api):
    api = fake_api.api_client()
    info = k8s.VersionApi(api).get_code()
    assert info.git_version == "v1.33.0-fake"
    groups = {g.name for g in k8s.ApisApi(api).get_api_versions().groups}
    assert {"ray.io", "autoscaling.x-k8s.io"} <= groups
    names = [r.name for r in k8s.CustomObjectsApi(api).get_api_resources("ray.io", "v1").resources]
    assert {"rayclusters", "rayjobs", "rayservices", "rayjobs/status"} <= set(names)
    assert ("GET", "/version/") in fake_api.requests  # the client asks with a trailing slash


def test_crud_and_status_errors(fake_api):
    co = k8s.CustomObjectsApi(fake_api.api_client())
    created = co.create_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", _rayjob())
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as e:
        co.create_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", _rayjob())
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as e:
        co.get_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "nope")
    body = json.loads(e.value.body)
    assert e.value.status == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"
    with pytest.raises(ApiException) as e:
        co.create_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", _rayjob("j2", entrypointt="typo"))
    assert e.value.status == 422 and "entrypointt" in json.loads(e.value.body)["message"]
    co.delete_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1")
    with pytest.raises(ApiException) as e:
        co.delete_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1")
    assert e.value.status == 404


def test_optimistic_concurrency_on_replace_and_patch(fake_api):
    co = k8s.CustomObjectsApi(fake_api.api_client())
    first = co.create_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", _rayjob())
    stale = json.loads(json.dumps(first))
    first["spec"]["entrypoint"] = "python y.py"
    updated = co.replace_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1", first)
    assert int(updated["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"])
    assert updated["metadata"]["generation"] == 2
    stale["spec"]["entrypoint"] = "python z.py"
    with pytest.raises(ApiException) as e:
        co.replace_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1", stale)
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "Conflict"
    with pytest.raises(ApiException) as e:
        co.patch_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1",
                                          {"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]}, "spec": {"jobId": "x"}})
    assert e.value.status == 409
    patched = co.patch_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1", {"spec": {"jobId": "x"}})
    assert patched["spec"]["jobId"] == "x" and patched["spec"]["entrypoint"] == "python y.py"


def test_status_subresource_semantics(fake_api):
    co = k8s.CustomObjectsApi(fake_api.api_client())
    co.create_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", {**_rayjob(), "status": {"jobStatus": "RUNNING"}})
    assert "status" not in co.get_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1")  # dropped on create
    co.patch_namespaced_custom_object_status("ray.io", "v1", "ns", "rayjobs", "j1",
                                             {"status": {"jobStatus": "RUNNING"}, "spec": {"entrypoint": "ignored"}})
    obj = co.get_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1")
    assert obj["status"] == {"jobStatus": "RUNNING"} and obj["spec"]["entrypoint"] == "python x.py"
    co.patch_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1", {"status": {"jobStatus": "FAILED"}})
    assert co.get_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1")["status"]["jobStatus"] == "RUNNING"
    with pytest.raises(ApiException) as e:  # status is validated too
        co.patch_namespaced_custom_object_status("ray.io", "v1", "ns", "rayjobs", "j1", {"status": {"failed": "many"}})
    assert e.value.status == 422


def test_list_label_selectors_and_watch(fake_api):
    co = k8s.CustomObjectsApi(fake_api.api_client())
    co.create_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", _rayjob("a"))
    b = _rayjob("b")
    b["metadata"]["labels"] = {"app": "y", "tier": "1"}
    co.create_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", b)
    listed = co.list_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", label_selector="app=y,tier")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["b"]
    assert [o["metadata"]["name"] for o in co.list_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", label_selector="app!=y")["items"]] == ["a"]
    rv = listed["metadata"]["resourceVersion"]

    def change():
        co.patch_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "b", {"spec": {"jobId": "j"}})
        co.delete_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "a")

    t = threading.Timer(0.2, change)
    t.start()
    events = []
    w = watch.Watch()
    for ev in w.stream(co.list_namespaced_custom_object, "ray.io", "v1", "ns", "rayjobs", resource_version=rv, timeout_seconds=2):
        events.append((ev["type"], ev["raw_object"]["metadata"]["name"]))
        if len(events) == 2:
            w.stop()
    t.join()
    assert events == [("MODIFIED", "b"), ("DELETED", "a")]


def _core_event(name: str, pod: str, component: str) -> dict:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": "ns"},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": "ns"}, "reason": "FailedScaleUp",
            "message": "m", "type": "Warning", "source": {"component": component}}


def test_field_selectors_on_events_list_and_watch_as_kube_apiserver_does(fake_api):
    core = k8s.CoreV1Api(fake_api.api_client())
    core.create_namespaced_event("ns", _core_event("e1", "p1", "cluster-autoscaler"))
    core.create_namespaced_event("ns", _core_event("e2", "p2", "default-scheduler"))
    listed = core.list_namespaced_event("ns", field_selector="involvedObject.kind=Pod,source=cluster-autoscaler")
    assert [e.metadata.name for e in listed.items] == ["e1"]
    assert [e.metadata.name for e in core.list_namespaced_event("ns", field_selector="involvedObject.name!=p1").items] == ["e2"]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_event("ns", field_selector="message=m")
    assert e.value.status == 400 and "not a known field selector" in json.loads(e.value.body)["message"]
    rv = listed.metadata.resource_version
    t = threading.Timer(0.2, lambda: [core.create_namespaced_event("ns", _core_event(n, "p3", c))
                                      for n, c in (("e3", "default-scheduler"), ("e4", "cluster-autoscaler"))])
    t.start()
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_event, "ns", field_selector="source=cluster-autoscaler", resource_version=rv, timeout_seconds=2):
        seen.append(ev["raw_object"]["metadata"]["name"])
        w.stop()
    t.join()
    assert seen == ["e4"]


def test_requests_are_counted_by_verb_and_resource(fake_api):
    co = k8s.CustomObjectsApi(fake_api.api_client())
    co.create_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", _rayjob())
    co.get_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1")
    co.list_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs")
    co.patch_namespaced_custom_object_status("ray.io", "v1", "ns", "rayjobs", "j1", {"status": {"jobStatus": "RUNNING"}})
    co.delete_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", "j1")
    assert {k: v for k, v in fake_api.counts.items() if k[1].startswith("rayjobs")} == {
        ("create", "rayjobs"): 1, ("get", "rayjobs"): 1, ("list", "rayjobs"): 1, ("patch", "rayjobs/status"): 1, ("delete", "rayjobs"): 1}
    assert fake_api.count(resource="rayjobs") == 4 and len(fake_api.request_times) == len(fake_api.requests)


def test_a_bounded_history_answers_old_watches_with_410_and_ends_watches_with_a_bookmark():
    from fake_apiserver import FakeApiServer

    with FakeApiServer(max_events=10) as api:
        co = k8s.CustomObjectsApi(api.api_client())
        start = co.list_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs")["metadata"]["resourceVersion"]
        for i in range(20):
            co.create_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs", _rayjob(f"j{i}"))
        w = watch.Watch()
        with pytest.raises(ApiException) as e:
            list(w.stream(co.list_namespaced_custom_object, "ray.io", "v1", "ns", "rayjobs", resource_version=start, timeout_seconds=1))
        assert e.value.status == 410
        now = co.list_namespaced_custom_object("ray.io", "v1", "ns", "rayjobs")["metadata"]["resourceVersion"]
        events = list(w.stream(co.list_namespaced_custom_object, "ray.io", "v1", "ns", "rayjobs", resource_version=now,
                               timeout_seconds=1, allow_watch_bookmarks=True))
        assert [ev["type"] for ev in events] == ["BOOKMARK"]
        assert events[0]["raw_object"]["metadata"]["resourceVersion"] == now
