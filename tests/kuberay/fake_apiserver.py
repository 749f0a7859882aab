"""A fake Kubernetes API server on 127.0.0.1 for the KubeRay backend's tests.

It is a fake: one process, objects in memory, no controllers of its own (tests write status
through the ``/status`` subresource, as KubeRay would, or run :mod:`fake_kuberay_operator`, which
reconciles RayJobs onto fake Nodes). What it does do, it does the
way kube-apiserver does, so that the official ``kubernetes`` client talks to it unchanged:

- ``/version/``, ``/api``, ``/apis``, ``/apis/GROUP/VERSION`` and ``/api/v1`` discovery;
- create / get / replace / merge-patch / JSON-patch / delete / list / watch of custom objects at
  ``/apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME][/status]`` and of a few core kinds at
  ``/api/v1/namespaces/NS/PLURAL[/NAME]`` (pods, podtemplates, configmaps, secrets, events) and of nodes
  (cluster-scoped, ``/api/v1/nodes[/NAME][/status]``; tests write a node's labels, taints and
  conditions as GKE and the kubelet would: nothing here cordons, drains or repairs);
- ``resourceVersion`` on every object and list, optimistic concurrency (409 on a stale
  ``resourceVersion``), 409 AlreadyExists, 404 NotFound and 422 Invalid as ``Status`` objects;
- the status subresource: the main resource ignores status changes, ``/status`` ignores the rest;
- label selectors (``k=v``, ``k!=v``, ``k``, ``!k``), field selectors (``f=v``, ``f!=v``) on the
  fields kube-apiserver supports for the kind (others: 400, as there; an Event's ``source`` is its
  ``source.component``), watches from a resourceVersion (chunked),
  ``allowWatchBookmarks`` (a BOOKMARK with the current resourceVersion when a watch times out), and
  a bounded event history (``max_events``, as etcd compacts): a watch from a resourceVersion older
  than what is kept gets the ``410 Expired`` ERROR event kube-apiserver sends;
- every request counted by verb and resource (``counts``, ``request_times``), as kube-apiserver's
  ``apiserver_request_total`` does;
- request bodies validated against the CRD schemas vendored in the package with the same code as
  rayfleet's runtime validation (:mod:`rayfleet.backends.kuberay.crd_schema`);
- the API server's service proxy to a RayCluster's head service, answered by a fake Ray dashboard
  (also reachable directly at ``/dashboard/NS/RAYCLUSTER``) with per-cluster jobs, logs and Serve
  applications that tests fill in.
"""

from __future__ import annotations

import bisect
import copy
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from kubernetes import client as k8s

from rayfleet.backends.kuberay import crd_schema

_NAME_FIELDS = (("metadata.name", "metadata.name"), ("metadata.namespace", "metadata.namespace"))


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool = True
    status_subresource: bool = False
    validate: bool = True
    #: field selector labels kube-apiserver accepts for the kind -> the object's field (dotted path)
    fields: tuple[tuple[str, str], ...] = _NAME_FIELDS

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _crd_resource(group: str, kind: str) -> Resource:
    info = crd_schema.crd_info(group, kind)
    version = next(v for v in info["versions"] if v["storage"])
    return Resource(
        group=group,
        version=version["name"],
        plural=info["names"]["plural"],
        kind=kind,
        singular=info["names"]["singular"],
        namespaced=info["scope"] == "Namespaced",
        status_subresource="status" in version["subresources"],
    )


def default_resources() -> list[Resource]:
    return [
        _crd_resource("ray.io", "RayCluster"),
        _crd_resource("ray.io", "RayJob"),
        _crd_resource("ray.io", "RayService"),
        Resource("autoscaling.x-k8s.io", "v1", "provisioningrequests", "ProvisioningRequest", "provisioningrequest", status_subresource=True),
        Resource("", "v1", "pods", "Pod", "pod", status_subresource=True, validate=False,
                 fields=_NAME_FIELDS + (("spec.nodeName", "spec.nodeName"), ("status.phase", "status.phase"))),
        Resource("", "v1", "podtemplates", "PodTemplate", "podtemplate"),
        Resource("", "v1", "configmaps", "ConfigMap", "configmap"),
        Resource("", "v1", "secrets", "Secret", "secret", validate=False),
        Resource("", "v1", "nodes", "Node", "node", namespaced=False, status_subresource=True, validate=False),
        Resource("", "v1", "events", "Event", "event", validate=False, fields=_NAME_FIELDS + tuple(
            (f, f) for f in ("involvedObject.kind", "involvedObject.name", "involvedObject.namespace", "involvedObject.uid",
                             "reason", "type", "reportingComponent")) + (("source", "source.component"),)),
    ]


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def parse_fields(r: Resource, selector: str | None) -> list[tuple[str, bool, str]]:
    """A field selector as (field path, equal?, value) terms; 400 for a field the kind does not
    support (kube-apiserver: 'field label not supported')."""
    known = dict(r.fields)
    out = []
    for term in (t.strip() for t in (selector or "").split(",")):
        if not term:
            continue
        equal = "!=" not in term
        k, _, v = term.partition("!=") if not equal else term.replace("==", "=").partition("=")
        if k.strip() not in known or not _:
            raise ApiError(400, "BadRequest", f'Unable to find "{r.group_resource}" that match label selector "", field selector '
                                              f'"{selector}": "{k.strip()}" is not a known field selector: only "{", ".join(known)}"')
        out.append((known[k.strip()], equal, v.strip()))
    return out


def _match_fields(obj: dict[str, Any], terms: list[tuple[str, bool, str]]) -> bool:
    return all((_field(obj, path) == value) == equal for path, equal, value in terms)


def status_object(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.body = status_object(code, reason, message, details)
        self.code = code


def _match_labels(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")] if path else []


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 add / remove / replace / test."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = _pointer(op["path"])
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1] if parts else None
        kind = op["op"]
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op["value"]:
                raise ApiError(422, "Invalid", f"test operation failed at {op['path']}")
        elif kind == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                parent.pop(last)
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(idx, op["value"])
                else:
                    parent[idx] = op["value"]
            else:
                parent[last] = op["value"]
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch op {kind!r}")
    return doc


@dataclass
class FakeDashboard:
    """What a RayCluster's Ray dashboard answers: Jobs API and Serve applications."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)   # submission id -> {"info": {...}, "logs": str}
    serve: dict[str, Any] = field(default_factory=lambda: {"applications": {}})
    token: str | None = None
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


class FakeApiServer:
    """Start with ``with FakeApiServer() as api:``; ``api.api_client()`` is a configured client."""

    def __init__(self, resources: list[Resource] | None = None, *, max_events: int | None = None, validate: bool = True):
        self.resources = {(r.group, r.version, r.plural): r for r in (resources or default_resources())}
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.events: list[tuple[int, str, Resource, str, dict[str, Any]]] = []
        self.validate = validate       # False: skip the CRD schemas (a benchmark whose client validates already)
        self.max_events = max_events   # None: keep every event
        self.compacted = 0             # watches from a resourceVersion below this get 410
        self.rv = 100
        self.lock = threading.Condition()
        self.dashboards: dict[tuple[str, str], FakeDashboard] = {}
        self.requests: list[tuple[str, str]] = []   # (method, path) of every request
        self.counts: Counter[tuple[str, str]] = Counter()   # (verb, resource) -> requests
        self.request_times: list[float] = []                # time.monotonic() of every API request
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeApiServer:
        server = _Server(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-apiserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            with self.lock:
                self.lock.notify_all()
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def api_client(self) -> k8s.ApiClient:
        configuration = k8s.Configuration(host=self.url)
        configuration.retries = 0
        return k8s.ApiClient(configuration)

    # ------------------------------------------------------------ test helpers

    def resource_of(self, kind: str) -> Resource:
        for r in self.resources.values():
            if r.kind == kind:
                return r
        raise KeyError(kind)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        r = self.resource_of(kind)
        with self.lock:
            obj = self.objects.get((r.group, r.plural, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def all(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        r = self.resource_of(kind)
        with self.lock:
            return [copy.deepcopy(o) for (g, p, ns, _), o in sorted(self.objects.items()) if (g, p) == (r.group, r.plural) and namespace in (None, ns)]

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` directly (validated like a POST), e.g. a pod KubeRay would have made; its
        status and creationTimestamp are kept as given."""
        group, version = crd_schema.split_api_version(obj["apiVersion"])
        r = next(x for x in self.resources.values() if (x.group, x.version, x.kind) == (group, version, obj["kind"]))
        return self.create(r, obj["metadata"].get("namespace", ""), copy.deepcopy(obj), keep_status=True)

    def set_status(self, kind: str, name: str, namespace: str, status: dict[str, Any]) -> dict[str, Any]:
        """Write an object's status, as its controller would (validated)."""
        r = self.resource_of(kind)
        with self.lock:
            current = self._require(r, namespace, name)
            new = copy.deepcopy(current)
            new["status"] = status
            return self._store(r, namespace, name, new, "MODIFIED", validate=True)

    def mutate(self, kind: str, name: str, namespace: str, change: Any, *, validate: bool = True) -> dict[str, Any] | None:
        """Change an object in place, as its controller would (``change(obj)`` edits a copy; None
        if the object is gone). Spec and status alike: the fake's own controllers use it."""
        r = self.resource_of(kind)
        with self.lock:
            current = self.objects.get((r.group, r.plural, namespace, name))
            if current is None:
                return None
            new = copy.deepcopy(current)
            change(new)
            return self._store(r, namespace, name, new, "MODIFIED", validate=validate)

    def remove(self, kind: str, name: str, namespace: str) -> bool:
        """Delete an object if it is there (a watch sees DELETED); whether it was."""
        r = self.resource_of(kind)
        with self.lock:
            if (r.group, r.plural, namespace, name) not in self.objects:
                return False
            self.delete(r, namespace, name)
            return True

    def dashboard(self, namespace: str, raycluster: str) -> FakeDashboard:
        with self.lock:
            return self.dashboards.setdefault((namespace, raycluster), FakeDashboard())

    # ------------------------------------------------------------ storage

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _require(self, r: Resource, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((r.group, r.plural, ns, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{r.group_resource} "{name}" not found', {"name": name, "group": r.group, "kind": r.plural})
        return obj

    def _validate(self, r: Resource, obj: dict[str, Any]) -> None:
        if not r.validate or not self.validate:
            return
        errors = crd_schema.validate(obj)
        if errors:
            name = obj.get("metadata", {}).get("name", "")
            causes = [{"reason": "FieldValueInvalid", "message": e, "field": e.split(":", 1)[0]} for e in errors]
            raise ApiError(422, "Invalid", f'{r.kind}.{r.group or "core"} "{name}" is invalid: ' + "; ".join(errors),
                           {"name": name, "group": r.group, "kind": r.kind, "causes": causes})

    def _store(self, r: Resource, ns: str, name: str, obj: dict[str, Any], event: str, *, validate: bool) -> dict[str, Any]:
        if validate:
            self._validate(r, obj)
        rv = self._next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        self.objects[(r.group, r.plural, ns, name)] = obj
        self._event(rv, event, r, ns, copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def _event(self, rv: int, event: str, r: Resource, ns: str, obj: dict[str, Any]) -> None:
        """Record a change for watches; past ``max_events`` the oldest are compacted away."""
        self.events.append((rv, event, r, ns, obj))
        if self.max_events is not None and len(self.events) > self.max_events * 1.1:
            drop = len(self.events) - self.max_events
            self.compacted = self.events[drop][0]
            del self.events[:drop]
        self.lock.notify_all()

    def compact(self) -> None:
        """Forget every event so far (etcd compaction): watches from an older version get 410."""
        with self.lock:
            self.compacted = self.rv + 1
            self.events.clear()

    def count(self, verb: str | None = None, resource: str | None = None) -> int:
        """Requests counted, of one verb and/or resource."""
        return sum(n for (v, res), n in self.counts.items() if verb in (None, v) and resource in (None, res))

    def create(self, r: Resource, ns: str, body: Any, *, keep_status: bool = False) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        if body.get("kind") != r.kind or body.get("apiVersion") != r.api_version:
            raise ApiError(400, "BadRequest", f"the body is {body.get('apiVersion')}/{body.get('kind')}, the URL is for {r.api_version}/{r.kind}")
        meta = body.setdefault("metadata", {})
        if r.namespaced:
            if meta.get("namespace", ns) != ns:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = ns
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + secrets.token_hex(3)[:5]
            meta["name"] = name
        if not name:
            raise ApiError(422, "Invalid", f"{r.kind} is invalid: metadata.name: Required value")
        with self.lock:
            if (r.group, r.plural, ns, name) in self.objects:
                raise ApiError(409, "AlreadyExists", f'{r.group_resource} "{name}" already exists', {"name": name, "group": r.group, "kind": r.plural})
            if r.status_subresource and not keep_status:
                body.pop("status", None)
            created = meta.get("creationTimestamp") if keep_status else None  # put(): as the object's maker wrote it
            meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            return self._store(r, ns, name, body, "ADDED", validate=True)

    def replace(self, r: Resource, ns: str, name: str, body: Any, *, status: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        with self.lock:
            current = self._require(r, ns, name)
            self._check_version(r, name, current, body)
            return self._update(r, ns, name, current, body, status=status)

    def patch(self, r: Resource, ns: str, name: str, body: Any, content_type: str, *, status: bool) -> dict[str, Any]:
        with self.lock:
            current = self._require(r, ns, name)
            if "json-patch" in content_type:
                if not isinstance(body, list):
                    raise ApiError(400, "BadRequest", "a JSON patch is a list of operations")
                new = json_patch(current, body)
            elif "merge-patch" in content_type:
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "a merge patch is a JSON object")
                self._check_version(r, name, current, body)
                new = merge_patch(current, body)
            else:
                raise ApiError(415, "UnsupportedMediaType", f"the fake API server does not support {content_type}")
            return self._update(r, ns, name, current, new, status=status)

    def _check_version(self, r: Resource, name: str, current: dict[str, Any], body: dict[str, Any]) -> None:
        want = (body.get("metadata") or {}).get("resourceVersion")
        if want is not None and want != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409, "Conflict",
                f'Operation cannot be fulfilled on {r.group_resource} "{name}": the object has been modified; please apply your changes to the latest version and try again',
                {"name": name, "group": r.group, "kind": r.plural},
            )

    def _update(self, r: Resource, ns: str, name: str, current: dict[str, Any], new: dict[str, Any], *, status: bool) -> dict[str, Any]:
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name or (r.namespaced and meta.get("namespace", ns) != ns):
            raise ApiError(400, "BadRequest", "the name or namespace of the object does not match the request")
        for key in ("uid", "creationTimestamp", "generation"):
            if key in current["metadata"]:
                meta[key] = current["metadata"][key]
        meta["name"] = name
        if r.namespaced:
            meta["namespace"] = ns
        if r.status_subresource:
            if status:  # only status changes
                kept = {k: copy.deepcopy(v) for k, v in current.items() if k != "status"}
                new = {**kept, "status": new.get("status")} if "status" in new else kept
            else:
                new.pop("status", None)
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                if {k: v for k, v in new.items() if k not in ("metadata", "status")} != {k: v for k, v in current.items() if k not in ("metadata", "status")}:
                    new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        return self._store(r, ns, name, new, "MODIFIED", validate=True)

    def delete(self, r: Resource, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self._require(r, ns, name)
            del self.objects[(r.group, r.plural, ns, name)]
            rv = self._next_rv()
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(rv)
            self._event(rv, "DELETED", r, ns, gone)
            return status_object(200, "", "", {"name": name, "group": r.group, "kind": r.plural, "uid": obj["metadata"].get("uid")})

    def list(self, r: Resource, ns: str | None, selector: str | None, fields: str | None = None) -> dict[str, Any]:
        terms = parse_fields(r, fields)
        with self.lock:
            items = [
                copy.deepcopy(o)
                for (g, p, ons, _), o in sorted(self.objects.items())
                if (g, p) == (r.group, r.plural) and ns in (None, ons) and _match_labels((o.get("metadata") or {}).get("labels") or {}, selector)
                and _match_fields(o, terms)
            ]
            return {"apiVersion": r.api_version, "kind": f"{r.kind}List", "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    def watch_events(self, r: Resource, ns: str | None, selector: str | None, since: int | None, timeout: float, closed: threading.Event,
                     bookmarks: bool = False, fields: str | None = None):
        """Events after ``since`` (or ADDED for what exists, then changes), until ``timeout``; then a
        BOOKMARK if asked for. ``since`` older than the kept history: one 410 ERROR event."""
        terms = parse_fields(r, fields)
        deadline = time.monotonic() + timeout
        with self.lock:
            if since is not None and since + 1 < self.compacted:
                yield {"type": "ERROR", "object": status_object(410, "Expired", f"too old resource version: {since} ({self.compacted - 1})")}
                return
            if since is None:
                for (g, p, ons, _), o in sorted(self.objects.items()):
                    if (g, p) == (r.group, r.plural) and ns in (None, ons) and _match_labels((o.get("metadata") or {}).get("labels") or {}, selector) \
                            and _match_fields(o, terms):
                        yield {"type": "ADDED", "object": copy.deepcopy(o)}
                since = self.rv
        sent = since
        while not closed.is_set():
            with self.lock:
                if sent + 1 < self.compacted:   # fell behind the history while sending
                    yield {"type": "ERROR", "object": status_object(410, "Expired", f"too old resource version: {sent} ({self.compacted - 1})")}
                    return
                pending = self.events[bisect.bisect_right(self.events, sent, key=lambda e: e[0]):]
                if not pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._server is None:
                        if bookmarks and self._server is not None:
                            yield {"type": "BOOKMARK", "object": {"kind": r.kind, "apiVersion": r.api_version,
                                                                   "metadata": {"resourceVersion": str(self.rv)}}}
                        return
                    self.lock.wait(min(remaining, 0.2))
                    continue
            for rv, etype, er, ens, obj in pending:
                sent = rv
                if er == r and ns in (None, ens) and _match_labels((obj.get("metadata") or {}).get("labels") or {}, selector) \
                        and _match_fields(obj, terms):
                    yield {"type": etype, "object": obj}

    # ------------------------------------------------------------ discovery

    def discovery(self, parts: list[str]) -> dict[str, Any] | None:
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.split("//", 1)[1]}]}
        if parts == ["apis"]:
            groups: dict[str, list[str]] = {}
            for r in self.resources.values():
                if r.group:
                    groups.setdefault(r.group, [])
                    if r.version not in groups[r.group]:
                        groups[r.group].append(r.version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs], "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                    for g, vs in sorted(groups.items())
                ],
            }
        if (len(parts) == 3 and parts[0] == "apis") or parts == ["api", "v1"]:
            group, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
            rs = [r for r in self.resources.values() if (r.group, r.version) == (group, version)]
            if not rs:
                return None
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            resources = []
            for r in rs:
                resources.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs})
                if r.status_subresource:
                    resources.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]})
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version, "resources": resources}
        return None

    # ------------------------------------------------------------ fake dashboard

    def dashboard_request(self, ns: str, raycluster: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        with self.lock:
            dash = self.dashboards.get((ns, raycluster))
        if dash is None:
            return 503, {"message": f"no dashboard for RayCluster {ns}/{raycluster}"}
        dash.requests.append((path, headers))
        if dash.token is not None:
            given = headers.get("x-ray-authorization") or headers.get("authorization") or ""
            if given != f"Bearer {dash.token}":
                return 401, {"message": "Unauthorized: Missing authentication token"}
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "jobs"] and len(parts) in (3, 4):
            job = dash.jobs.get(parts[2])
            if job is None:
                return 404, {"message": f"Job {parts[2]} does not exist"}
            if len(parts) == 4 and parts[3] == "logs":
                return 200, {"logs": job.get("logs", "")}
            return 200, job.get("info", {})
        if parts[:3] == ["api", "serve", "applications"]:
            return 200, dash.serve
        return 404, {"message": f"no route {path}"}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client closed its connection (a watch stopped): nothing to report
        super().handle_error(request, client_address)


def _verb_resource(method: str, parts: list[str], query: dict[str, str]) -> tuple[str, str]:
    """A request as kube-apiserver's metrics name it: (verb, resource[/subresource])."""
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:] if parts[:1] == ["apis"] else []
    if len(rest) >= 2 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return method.lower(), "discovery" if method == "GET" else "-"
    resource = rest[0] if len(rest) < 3 else f"{rest[0]}/{rest[2]}"
    if method == "GET":
        verb = "get" if len(rest) >= 2 else "watch" if query.get("watch") in ("true", "1") else "list"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())
    return verb, resource


def _handler(api: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True   # headers and body go as two writes: no 40 ms delayed-ACK wait between them

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        # -- plumbing

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise ApiError(400, "BadRequest", "the body is not JSON") from None

        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            parts = [unquote(p) for p in url.path.split("/") if p]
            api.requests.append((method, url.path))
            api.counts[_verb_resource(method, parts, query)] += 1
            api.request_times.append(time.monotonic())
            try:
                self._dispatch(method, parts, query)
            except ApiError as e:
                self._send(e.code, e.body)

        def do_GET(self) -> None:  # noqa: N802
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._route("PUT")

        def do_PATCH(self) -> None:  # noqa: N802
            self._route("PATCH")

        def do_DELETE(self) -> None:  # noqa: N802
            self._route("DELETE")

        # -- routes

        def _dispatch(self, method: str, parts: list[str], query: dict[str, str]) -> None:
            if parts == ["version"]:
                self._send(200, {
                    "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "0" * 40, "gitTreeState": "clean",
                    "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64",
                })
                return
            if parts[:1] == ["dashboard"] and len(parts) >= 3:
                code, body = api.dashboard_request(parts[1], parts[2], "/" + "/".join(parts[3:]), {k.lower(): v for k, v in self.headers.items()})
                self._send(code, body)
                return
            if method == "GET":
                disc = api.discovery(parts)
                if disc is not None:
                    self._send(200, disc)
                    return
            if parts[:1] == ["api"] and len(parts) >= 2:
                group, version, rest = "", parts[1], parts[2:]
            elif parts[:1] == ["apis"] and len(parts) >= 3:
                group, version, rest = parts[1], parts[2], parts[3:]
            else:
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({self.path})")
            ns: str | None = None
            if len(rest) >= 2 and rest[0] == "namespaces":
                ns, rest = rest[1], rest[2:]
            if group == "" and ns is not None and len(rest) >= 3 and rest[0] == "services" and rest[2] == "proxy":
                svc = rest[1].split(":", 1)[0]
                cluster = svc.removesuffix("-head-svc")
                code, body = api.dashboard_request(ns, cluster, "/" + "/".join(rest[3:]), {k.lower(): v for k, v in self.headers.items()})
                self._send(code, body)
                return
            if not rest:
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({self.path})")
            r = api.resources.get((group, version, rest[0]))
            if r is None:
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({self.path})")
            if r.namespaced and ns is None and not (method == "GET" and len(rest) == 1):
                raise ApiError(404, "NotFound", f"{r.kind} is namespaced ({self.path})")
            name = rest[1] if len(rest) >= 2 else None
            sub = rest[2] if len(rest) >= 3 else None
            if sub not in (None, "status") or (sub == "status" and not r.status_subresource):
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({self.path})")
            ns_key = ns or ""
            if name is None:
                if method == "GET":
                    if query.get("watch") in ("true", "1"):
                        self._watch(r, ns, query)
                        return
                    self._send(200, api.list(r, ns, query.get("labelSelector"), query.get("fieldSelector")))
                elif method == "POST":
                    self._send(201, api.create(r, ns_key, self._body()))
                else:
                    raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
                return
            if method == "GET":
                with api.lock:
                    self._send(200, copy.deepcopy(api._require(r, ns_key, name)))
            elif method == "PUT":
                self._send(200, api.replace(r, ns_key, name, self._body(), status=sub == "status"))
            elif method == "PATCH":
                self._send(200, api.patch(r, ns_key, name, self._body(), self.headers.get("Content-Type", ""), status=sub == "status"))
            elif method == "DELETE":
                if sub:
                    raise ApiError(405, "MethodNotAllowed", "DELETE of a subresource")
                self._body()
                self._send(200, api.delete(r, ns_key, name))
            else:
                raise ApiError(405, "MethodNotAllowed", method)

        def _watch(self, r: Resource, ns: str | None, query: dict[str, str]) -> None:
            since = int(query["resourceVersion"]) if query.get("resourceVersion") else None
            timeout = float(query.get("timeoutSeconds") or 30)
            parse_fields(r, query.get("fieldSelector"))   # a 400 before the stream starts
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            closed = threading.Event()
            try:
                bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
                for event in api.watch_events(r, ns, query.get("labelSelector"), since, timeout, closed, bookmarks,
                                              query.get("fieldSelector")):
                    line = (json.dumps(event) + "\n").encode()
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                closed.set()

    return Handler
