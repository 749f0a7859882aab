"""The Kubernetes API as the KubeRay backend uses it: the official ``kubernetes`` client, typed
errors (NotFound, Conflict, BackendError carrying the API server's Status message), custom objects
(RayCluster, RayJob, RayService, ProvisioningRequest) and the few core kinds (pods, PodTemplates,
ConfigMaps, Secrets, Nodes, Events) as plain JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from ...api import KubeRaySpec
from ...errors import BackendError, Conflict, NotFound
from .ratelimit import TokenBucket, limit_api_client

#: kind -> (group, version, plural) of the custom objects this backend manages.
CUSTOM_KINDS: dict[str, tuple[str, str, str]] = {
    "RayCluster": ("ray.io", "v1", "rayclusters"),
    "RayJob": ("ray.io", "v1", "rayjobs"),
    "RayService": ("ray.io", "v1", "rayservices"),
    "ProvisioningRequest": ("autoscaling.x-k8s.io", "v1", "provisioningrequests"),
}


# ---------------------------------------------------------------- the Kubernetes client, typed


def api_client_for(kuberay: KubeRaySpec) -> k8s.ApiClient:
    """An ApiClient from the config: the pod's service account, or a kubeconfig (file, context)."""
    configuration = k8s.Configuration()
    try:
        if kuberay.in_cluster:
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            k8s_config.load_kube_config(config_file=kuberay.kubeconfig, context=kuberay.context, client_configuration=configuration)
    except (k8s_config.ConfigException, OSError) as e:
        where = "the pod's service account" if kuberay.in_cluster else f"kubeconfig {kuberay.kubeconfig or '(default)'}"
        raise BackendError(f"cannot reach Kubernetes through {where}: {e}") from None
    return k8s.ApiClient(configuration)


class Expired(BackendError):
    """410 Gone: the resourceVersion a watch started from is older than the API server keeps
    (etcd compacted it). List again and watch from the list's resourceVersion."""


def error_of(e: ApiException, what: str) -> Exception:
    """An ApiException as a rayfleet error carrying the API server's Status message."""
    message = e.reason or ""
    try:
        body = json.loads(e.body or "{}")
        message = body.get("message") or message
    except (TypeError, ValueError):
        pass
    if e.status == 404:
        return NotFound(f"{what}: not found ({message})")
    if e.status == 409:
        return Conflict(f"{what}: {message}")
    if e.status == 410:
        return Expired(f"{what}: {message}")
    return BackendError(f"{what}: HTTP {e.status}: {message}")


class KubeClient:
    """create / get / replace / patch / delete / list / watch of custom and core objects,
    with Kubernetes errors mapped to NotFound (404), Conflict (409), Expired (410) and BackendError.

    ``bucket``: the request budget (:mod:`.ratelimit`); every request of ``api_client`` waits for a
    token (an ApiClient already limited keeps its own bucket)."""

    def __init__(self, api_client: k8s.ApiClient, bucket: TokenBucket | None = None):
        self.api_client = api_client
        self.bucket = limit_api_client(api_client, bucket) if bucket is not None else None
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)

    # -- custom objects

    def _gvp(self, kind: str) -> tuple[str, str, str]:
        try:
            return CUSTOM_KINDS[kind]
        except KeyError:
            raise ValueError(f"unknown kind {kind!r}") from None

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind, ns = obj["kind"], obj["metadata"]["namespace"]
        g, v, p = self._gvp(kind)
        try:
            return self.custom.create_namespaced_custom_object(g, v, ns, p, obj)
        except ApiException as e:
            raise error_of(e, f"create {kind}/{obj['metadata']['name']}") from None

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        g, v, p = self._gvp(kind)
        try:
            return self.custom.get_namespaced_custom_object(g, v, namespace, p, name)
        except ApiException as e:
            raise error_of(e, f"get {kind}/{name}") from None

    def find(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return self.get(kind, name, namespace)
        except NotFound:
            return None

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT with the object's resourceVersion: Conflict if it changed since it was read."""
        kind, name, ns = obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]
        g, v, p = self._gvp(kind)
        try:
            return self.custom.replace_namespaced_custom_object(g, v, ns, p, name, obj)
        except ApiException as e:
            raise error_of(e, f"replace {kind}/{name}") from None

    def patch(self, kind: str, name: str, namespace: str, patch: dict[str, Any], *, status: bool = False) -> dict[str, Any]:
        """JSON merge patch (RFC 7386) of the object or of its status subresource."""
        g, v, p = self._gvp(kind)
        fn = self.custom.patch_namespaced_custom_object_status if status else self.custom.patch_namespaced_custom_object
        try:
            return fn(g, v, namespace, p, name, patch)
        except ApiException as e:
            raise error_of(e, f"patch {kind}/{name}{'/status' if status else ''}") from None

    def delete(self, kind: str, name: str, namespace: str) -> bool:
        """Delete (background propagation); False if it was already gone."""
        g, v, p = self._gvp(kind)
        try:
            self.custom.delete_namespaced_custom_object(g, v, namespace, p, name, propagation_policy="Background")
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise error_of(e, f"delete {kind}/{name}") from None

    def list(self, kind: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.list_with_version(kind, namespace, label_selector)[0]

    def _lister(self, kind: str, namespace: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """The list function of a kind (custom objects, pods, Events, ProvisioningRequests; nodes
        are cluster-scoped: ``namespace`` unused) and its leading arguments."""
        if kind in CUSTOM_KINDS:
            g, v, p = CUSTOM_KINDS[kind]
            return self.custom.list_namespaced_custom_object, (g, v, namespace, p)
        if kind == "Node":
            return self.core.list_node, ()
        fn = {"Pod": self.core.list_namespaced_pod, "PodTemplate": self.core.list_namespaced_pod_template,
              "ConfigMap": self.core.list_namespaced_config_map, "Event": self.core.list_namespaced_event}.get(kind)
        if fn is None:
            raise ValueError(f"unknown kind {kind!r}")
        return fn, (namespace,)

    def list_with_version(self, kind: str, namespace: str, label_selector: str | None = None, *,
                          field_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Items and the list's resourceVersion (to watch from), as raw JSON."""
        fn, args = self._lister(kind, namespace)
        kwargs: dict[str, Any] = {"_preload_content": False}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        try:
            resp = fn(*args, **kwargs)
        except ApiException as e:
            raise error_of(e, f"list {kind}") from None
        out = json.loads(resp.data or b"null") or {}
        return list(out.get("items") or []), str((out.get("metadata") or {}).get("resourceVersion", ""))

    def watch(
        self, kind: str, namespace: str, *, label_selector: str | None = None, field_selector: str | None = None,
        resource_version: str | None = None, timeout_seconds: int = 30, bookmarks: bool = False,
        on_open: Callable[[Any], None] | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, raw object) pairs: ADDED, MODIFIED, DELETED (and BOOKMARK with ``bookmarks``),
        until the server ends the watch after ``timeout_seconds``. A watch from a resourceVersion the
        server no longer keeps raises :class:`Expired` (410), whether the server refuses the request
        or sends the ERROR event. ``on_open`` gets the open response (so another thread can close it)."""
        fn, args = self._lister(kind, namespace)
        kwargs: dict[str, Any] = {"watch": True, "timeout_seconds": timeout_seconds, "_preload_content": False}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        if resource_version:
            kwargs["resource_version"] = resource_version
        if bookmarks:
            kwargs["allow_watch_bookmarks"] = True
        try:
            resp = fn(*args, **kwargs)
        except ApiException as e:
            raise error_of(e, f"watch {kind}") from None
        if on_open is not None:
            on_open(resp)
        try:
            for line in iter_resp_lines(resp):
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    e = ApiException(status=int(obj.get("code") or 500), reason=obj.get("reason") or "")
                    e.body = json.dumps(obj)
                    raise error_of(e, f"watch {kind}") from None
                yield event["type"], obj
        finally:
            resp.close()
            resp.release_conn()

    def api_resources(self, group: str, version: str) -> list[str]:
        """Resource names the API server serves for group/version (discovery)."""
        try:
            out = self.custom.get_api_resources(group, version)
        except ApiException as e:
            raise error_of(e, f"discovery of {group}/{version}") from None
        return [r.name for r in out.resources or []]

    # -- core objects (raw JSON: no model round trip)

    def _core(self, fn: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> Any:
        try:
            resp = fn(*args, _preload_content=False, **kwargs)
        except ApiException as e:
            raise error_of(e, what) from None
        return json.loads(resp.data or b"null")

    def create_core(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind, ns, name = obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]
        fn = {
            "PodTemplate": self.core.create_namespaced_pod_template,
            "ConfigMap": self.core.create_namespaced_config_map,
            "Secret": self.core.create_namespaced_secret,
        }[kind]
        return self._core(fn, f"create {kind}/{name}", ns, obj)

    def get_core(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        fn = {
            "PodTemplate": self.core.read_namespaced_pod_template,
            "ConfigMap": self.core.read_namespaced_config_map,
            "Secret": self.core.read_namespaced_secret,
        }[kind]
        try:
            return self._core(fn, f"get {kind}/{name}", name, namespace)
        except NotFound:
            return None

    def delete_core(self, kind: str, name: str, namespace: str) -> bool:
        fn = {
            "PodTemplate": self.core.delete_namespaced_pod_template,
            "ConfigMap": self.core.delete_namespaced_config_map,
            "Secret": self.core.delete_namespaced_secret,
        }[kind]
        try:
            self._core(fn, f"delete {kind}/{name}", name, namespace)
            return True
        except NotFound:
            return False

    def list_core(self, kind: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        fn = {
            "Pod": self.core.list_namespaced_pod,
            "PodTemplate": self.core.list_namespaced_pod_template,
            "ConfigMap": self.core.list_namespaced_config_map,
        }[kind]
        out = self._core(fn, f"list {kind}", namespace, label_selector=label_selector)
        return list((out or {}).get("items") or [])

    def list_nodes(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        out = self._core(self.core.list_node, "list Node", label_selector=label_selector)
        return list((out or {}).get("items") or [])

    def patch_core(self, kind: str, name: str, namespace: str, patch: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch (RFC 7386) of a ConfigMap, or of a Node (cluster-scoped: ``namespace`` unused)."""
        merge = "application/merge-patch+json"
        if kind == "Node":
            return self._core(self.core.patch_node, f"patch Node/{name}", name, patch, _content_type=merge)
        fn = {"ConfigMap": self.core.patch_namespaced_config_map}[kind]
        return self._core(fn, f"patch {kind}/{name}", name, namespace, patch, _content_type=merge)
