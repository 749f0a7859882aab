"""A fake KubeRay operator and fake nodes for the fake API server (kwok-style: no kubelet, no Ray).

KubeRay's own performance tests run the real operator against kwok's simulated nodes; this is the
same idea one step smaller, for :class:`fake_apiserver.FakeApiServer`: a thread that reconciles
RayJobs the way KubeRay v1 does and binds pods to fake Nodes the way kube-scheduler (with
gang scheduling) would. It works on the fake's memory directly (no HTTP), so every request the fake
counts is the client's (rayfleet's). What it does:

- **Nodes**: :meth:`FakeKubeRayOperator.add_pool_nodes` creates Ready Nodes carrying a pool's
  labels (the node selector and affinity of ``manifests.pool_placement``: GKE node-pool,
  accelerator, machine type, zone, spot / reservation labels); one worker pod fits on a node.
- **RayJob created**: ``jobDeploymentStatus: Initializing``, ``jobId``, ``rayClusterName``,
  ``startTime``; the RayCluster ``<rayjob>-<5 chars>`` is created from ``spec.rayClusterSpec``.
- **Pods**: after ``init_delay`` the head pod and every worker pod (``replicas x numOfHosts`` per
  group) are created Pending, with the template's labels plus ``ray.io/cluster``, ``ray.io/node-type``,
  ``ray.io/group``. They are bound (``spec.nodeName``, phase Running) all at once when the gang's
  nodes are free: Ready, schedulable, matching the group's ``nodeSelector`` and required node
  affinity, holding no other worker pod. A gang that does not fit waits, in creation order, until
  another cluster goes. Head pods go on a system node outside every pool.
- **Stockouts** (the cluster autoscaler's answer, :meth:`FakeKubeRayOperator.stock_out`): the
  waiting worker pods of a run on a stocked-out pool (its RayJob's ``rayfleet.io/pool``) get the
  Events GKE's autoscaler writes, ``TriggeredScaleUp`` then ``FailedScaleUp`` "Node scale up in
  zones ZONE associated with this pod failed: CAUSE. Pod is at risk of not being scheduled." (CAUSE
  ``GCE out of resources`` unless told), from ``source.component: cluster-autoscaler``.
- **Running**: ``start_delay`` after the pods run: ``Running`` / ``RUNNING``, ``rayJobInfo.startTime``,
  and the cluster's fake Ray dashboard answers the job's info and logs.
- **End**: after the job's runtime (:meth:`script`, else ``runtime``), or when a test calls
  :meth:`FakeKubeRayOperator.end`: ``Complete`` / ``SUCCEEDED``, or
  ``Failed`` / ``FAILED`` with reason ``AppFailed``; a job past ``activeDeadlineSeconds`` ends
  ``Failed`` / ``DeadlineExceeded``. With ``shutdownAfterJobFinishes`` the RayCluster and its pods
  are deleted ``ttlSecondsAfterFinished`` later (or ``ttl_s``), freeing the nodes.
- **RayJob deleted**: its RayCluster and pods are deleted at once (owner references).

Not modelled: suspend (Kueue), retries (``backoffLimit``), RayCluster status, submitter pods,
autoscaling of the fleet RayCluster (its worker groups start empty and stay so).
"""

from __future__ import annotations

import bisect
import copy
import heapq
import itertools
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fake_apiserver import FakeApiServer

from rayfleet.api import PoolSpec
from rayfleet.backends.kuberay.manifests import ANN_JOB_ID, ANN_RUN_ID, pool_placement

SYSTEM_NODE = "fake-system-node"


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _holds(labels: dict[str, str], expr: dict[str, Any]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    return {"In": lambda: labels.get(key) in values, "NotIn": lambda: labels.get(key) not in values,
            "Exists": lambda: key in labels, "DoesNotExist": lambda: key not in labels}.get(op, lambda: False)()


def pod_fits(pod_spec: dict[str, Any], node: dict[str, Any]) -> bool:
    """kube-scheduler's node selector and required node affinity checks (taints are not checked:
    rayfleet's pods carry their pool's tolerations)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    terms = ((((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    return not terms or any(all(_holds(labels, e) for e in t.get("matchExpressions") or []) for t in terms)


def _schedulable(node: dict[str, Any]) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conds = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
    return conds.get("Ready") == "True"


@dataclass(frozen=True)
class Script:
    """What one job does once running: how long it runs and how it ends."""

    runtime_s: float
    succeed: bool = True


@dataclass
class _Job:
    name: str
    raycluster: str
    run_id: str
    pods: list[str]                       # worker pod names
    head: str
    pool: str = ""                        # the RayJob's rayfleet.io/pool
    placed: bool = False
    started: float | None = None          # monotonic, when Running
    ended: bool = False                   # Complete or Failed (by its script, its deadline or end())


class FakeKubeRayOperator:
    """Reconciles the RayJobs of ``namespace`` in ``api``; start with ``with FakeKubeRayOperator(api):``.

    Delays are real seconds: ``init_delay`` (RayJob created -> pods created), ``start_delay`` (pods
    running -> Ray job RUNNING), ``runtime`` (default run time of a job :meth:`script` does not name);
    ``ttl_s``, when given, replaces every RayJob's ``ttlSecondsAfterFinished``. Counters: ``created`` (RayJob creations per run id), ``completed``,
    ``created_for_job`` (per job id), ``failed``, ``peak_running`` (clusters with bound pods at once)."""

    def __init__(self, api: FakeApiServer, *, namespace: str = "rayfleet", init_delay: float = 0.02, start_delay: float = 0.02,
                 runtime: float = 0.2, ttl_s: float | None = None):
        self.api = api
        self.namespace = namespace
        self.init_delay, self.start_delay, self.runtime, self.ttl_s = init_delay, start_delay, runtime, ttl_s
        self.scripts: dict[str, Script] = {}        # job id (the RayJob's rayfleet.io/job-id) -> script
        self.created: Counter[str] = Counter()      # run id -> RayJob creations seen
        self.created_for_job: Counter[str] = Counter()   # job id -> RayJob creations seen (any attempt)
        self.completed = self.failed = self.peak_running = 0
        self._jobs: dict[str, _Job] = {}            # RayJob name -> what was made for it
        self._waiting: list[str] = []               # RayJobs whose pods wait for nodes, oldest first
        self._ends: list[tuple[str, bool]] = []     # (job id, succeed) that end() asked for, under api.lock
        self._stockouts: dict[str, str] = {}        # pool -> the cause its failed scale-ups give
        self._answered: set[str] = set()            # worker pods the fake autoscaler has answered
        self._bound: dict[str, str] = {}            # node -> worker pod on it
        self._timers: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._cursor = api.rv
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.api.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": SYSTEM_NODE, "labels": {"kubernetes.io/hostname": SYSTEM_NODE}},
                      "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})

    # ------------------------------------------------------------ set-up

    def add_pool_nodes(self, pool: str, spec: PoolSpec, count: int | None = None) -> list[str]:
        """``count`` Ready nodes (default: the pool's ``maxReplicas`` x hosts per slice) with the
        labels a node of ``pool`` has on GKE; created an hour ago (registered, not provisioning)."""
        placement = pool_placement(spec)
        labels = {**placement.node_selector, "cloud.google.com/gke-nodepool": pool}
        created = datetime.fromtimestamp(time.time() - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        names = []
        for i in range(spec.max_hosts if count is None else count):
            name = f"gke-{pool}-{i:04d}"
            self.api.put({"apiVersion": "v1", "kind": "Node",
                          "metadata": {"name": name, "labels": {**labels, "kubernetes.io/hostname": name}, "creationTimestamp": created},
                          "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                                                  "lastTransitionTime": created}]}})
            names.append(name)
        return names

    def script(self, job_id: str, runtime_s: float, *, succeed: bool = True) -> None:
        self.scripts[job_id] = Script(runtime_s, succeed)

    def end(self, job_id: str, *, succeed: bool = True) -> None:
        """End the running job ``job_id`` now, as its script would at the end of its runtime (a test
        that orders events by hand does not race a timer against a loaded machine)."""
        with self.api.lock:
            self._ends.append((job_id, succeed))
            self.api.lock.notify_all()

    def stock_out(self, pool: str, cause: str = "GCE out of resources") -> None:
        """From now on the autoscaler cannot add ``pool``'s hosts: waiting pods of its runs (now and
        later) get a failed scale-up with ``cause``."""
        with self.api.lock:
            self._stockouts[pool] = cause
            self.api.lock.notify_all()

    def restock(self, pool: str) -> None:
        with self.api.lock:
            self._stockouts.pop(pool, None)

    # ------------------------------------------------------------ the loop

    def start(self) -> FakeKubeRayOperator:
        self._thread = threading.Thread(target=self._loop, name="fake-kuberay-operator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.api.lock:
            self.api.lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeKubeRayOperator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _after(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), fn, args))

    def _new_events(self) -> list[tuple[str, dict[str, Any]]]:
        """RayJob ADDED / DELETED events since the last look (a compacted history: re-list)."""
        api = self.api
        rayjob = api.resource_of("RayJob")
        with api.lock:
            if self._cursor + 1 < api.compacted:
                self._cursor = api.rv
                live = {o["metadata"]["name"] for o in api.all("RayJob", self.namespace)}
                out = [("DELETED", {"metadata": {"name": n}}) for n in self._jobs if n not in live]
                out += [("ADDED", o) for o in api.all("RayJob", self.namespace) if o["metadata"]["name"] not in self._jobs]
                return out
            i = bisect.bisect_right(api.events, self._cursor, key=lambda e: e[0])
            batch = api.events[i:]
            if batch:
                self._cursor = batch[-1][0]
            return [(etype, obj) for _, etype, r, ns, obj in batch
                    if r == rayjob and ns == self.namespace and etype in ("ADDED", "DELETED")]

    def _loop(self) -> None:
        while not self._stop.is_set():
            for etype, obj in self._new_events():
                if etype == "ADDED":
                    self._created(obj)
                else:
                    self._deleted(obj["metadata"]["name"])
            with self.api.lock:
                ends, self._ends = self._ends, []
            for job_id, succeed in ends:
                for job in list(self._jobs.values()):
                    rayjob = self._rayjob(job.name)
                    if job.started is not None and rayjob is not None and (rayjob["metadata"].get("annotations") or {}).get(ANN_JOB_ID) == job_id:
                        self._finish(job.name, succeed, "AppFailed")
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, fn, args = heapq.heappop(self._timers)
                fn(*args)
            self._autoscale()
            with self.api.lock:
                if self.api.rv == self._cursor and not self._ends:
                    wait = min(self._timers[0][0] - time.monotonic(), 0.05) if self._timers else 0.05
                    if wait > 0:
                        self.api.lock.wait(wait)

    # ------------------------------------------------------------ RayJob lifecycle

    def _rayjob(self, name: str) -> dict[str, Any] | None:
        return self.api.get("RayJob", name, self.namespace)

    def _status(self, name: str, **fields: Any) -> None:
        def change(obj: dict[str, Any]) -> None:
            obj["status"] = {**(obj.get("status") or {}), **fields}
        self.api.mutate("RayJob", name, self.namespace, change)

    def _created(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name in self._jobs:
            return
        run_id = (obj["metadata"].get("annotations") or {}).get(ANN_RUN_ID, name)
        self.created[run_id] += 1
        self.created_for_job[(obj["metadata"].get("annotations") or {}).get(ANN_JOB_ID, name)] += 1
        raycluster = f"{name}-{secrets.token_hex(3)[:5]}"
        cluster_spec = copy.deepcopy(obj["spec"]["rayClusterSpec"])
        self.api.put({"apiVersion": "ray.io/v1", "kind": "RayCluster",
                      "metadata": {"name": raycluster, "namespace": self.namespace, "labels": {"ray.io/originated-from-crd": "RayJob",
                                                                                              "ray.io/originated-from-cr-name": name},
                                   "ownerReferences": [{"apiVersion": "ray.io/v1", "kind": "RayJob", "name": name,
                                                        "uid": obj["metadata"].get("uid", ""), "controller": True}]},
                      "spec": cluster_spec})
        pool = (obj["metadata"].get("labels") or {}).get("rayfleet.io/pool", "")
        self._jobs[name] = _Job(name, raycluster, run_id, [], f"{raycluster}-head", pool)
        self._status(name, jobDeploymentStatus="Initializing", jobId=obj["spec"].get("jobId") or name, rayClusterName=raycluster,
                     startTime=_now_rfc3339())
        self._after(self.init_delay, self._make_pods, name)

    def _make_pods(self, name: str) -> None:
        job, obj = self._jobs.get(name), self._rayjob(name)
        if job is None or obj is None:
            return
        spec = obj["spec"]["rayClusterSpec"]
        base = {"ray.io/cluster": job.raycluster}
        head_t = spec["headGroupSpec"]["template"]
        self._pod(job.head, head_t, {**base, "ray.io/node-type": "head", "ray.io/group": "headgroup"})
        for group in spec.get("workerGroupSpecs") or []:
            for i in range(int(group.get("replicas", 0)) * int(group.get("numOfHosts", 1))):
                pod = f"{job.raycluster}-{group['groupName']}-worker-{i}"
                self._pod(pod, group["template"], {**base, "ray.io/node-type": "worker", "ray.io/group": group["groupName"]})
                job.pods.append(pod)
        self._waiting.append(name)
        self._schedule()

    def _pod(self, name: str, template: dict[str, Any], labels: dict[str, str]) -> None:
        meta = template.get("metadata") or {}
        self.api.put({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": name, "namespace": self.namespace, "labels": {**(meta.get("labels") or {}), **labels},
                                   "annotations": dict(meta.get("annotations") or {})},
                      "spec": copy.deepcopy(template.get("spec") or {}), "status": {"phase": "Pending"}})

    def _schedule(self) -> None:
        """Bind every waiting gang that fits now, oldest first (a gang binds whole or not at all)."""
        if not self._waiting:
            return
        nodes = [n for n in self.api.all("Node") if n["metadata"]["name"] != SYSTEM_NODE and _schedulable(n)]
        free = [n for n in nodes if n["metadata"]["name"] not in self._bound]
        still = []
        for name in self._waiting:
            job = self._jobs.get(name)
            if job is None:
                continue
            chosen: list[tuple[str, str]] = []
            taken: set[str] = set()
            for pod in job.pods:
                p = self.api.get("Pod", pod, self.namespace)
                node = next((n["metadata"]["name"] for n in free if n["metadata"]["name"] not in taken and p is not None
                             and pod_fits(p["spec"], n)), None)
                if node is None:
                    break
                taken.add(node)
                chosen.append((pod, node))
            if len(chosen) < len(job.pods):
                still.append(name)
                continue
            free = [n for n in free if n["metadata"]["name"] not in taken]
            for pod, node in chosen + [(job.head, SYSTEM_NODE)]:
                self._bind(pod, node)
            job.placed = True
            self.peak_running = max(self.peak_running, sum(1 for j in self._jobs.values() if j.placed))
            self._after(self.start_delay, self._running, name)
        self._waiting = still

    def _autoscale(self) -> None:
        """The cluster autoscaler's answer to each waiting pod of a stocked-out pool, once per pod."""
        for name in self._waiting:
            job = self._jobs.get(name)
            cause = self._stockouts.get(job.pool) if job is not None else None
            if job is None or cause is None:
                continue
            for pod in job.pods:
                obj = self.api.get("Pod", pod, self.namespace)
                if pod in self._answered or obj is None or obj["spec"].get("nodeName"):
                    continue
                self._answered.add(pod)
                zone = (obj["spec"].get("nodeSelector") or {}).get("topology.kubernetes.io/zone", "us-central1-a")
                self._event(obj, "Normal", "TriggeredScaleUp", f"pod triggered scale-up: [{{gke-{job.pool} 0->1 (max: 4)}}]")
                self._event(obj, "Warning", "FailedScaleUp", f"Node scale up in zones {zone} associated with this pod failed: "
                                                            f"{cause}. Pod is at risk of not being scheduled.")

    def _event(self, pod: dict[str, Any], kind: str, reason: str, message: str) -> None:
        now = _now_rfc3339()
        meta = pod["metadata"]
        self.api.put({"apiVersion": "v1", "kind": "Event",
                      "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": self.namespace},
                      "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": self.namespace,
                                         "uid": meta.get("uid", "")},
                      "reason": reason, "message": message, "type": kind, "source": {"component": "cluster-autoscaler"},
                      "firstTimestamp": now, "lastTimestamp": now, "count": 1})

    def _bind(self, pod: str, node: str) -> None:
        if node != SYSTEM_NODE:
            self._bound[node] = pod

        def change(obj: dict[str, Any]) -> None:
            obj["spec"]["nodeName"] = node
            obj["status"] = {"phase": "Running", "startTime": _now_rfc3339()}
        self.api.mutate("Pod", pod, self.namespace, change, validate=False)

    def _running(self, name: str) -> None:
        job, obj = self._jobs.get(name), self._rayjob(name)
        if job is None or obj is None:
            return
        job.started = time.monotonic()
        start = _now_rfc3339()
        submission = (obj.get("status") or {}).get("jobId") or name
        dash = self.api.dashboard(self.namespace, job.raycluster)
        dash.jobs[submission] = {"info": {"submission_id": submission, "status": "RUNNING"}, "logs": f"{submission} started\n"}
        self._status(name, jobDeploymentStatus="Running", jobStatus="RUNNING", rayJobInfo={"startTime": start})
        script = self.scripts.get((obj["metadata"].get("annotations") or {}).get(ANN_JOB_ID, ""), Script(self.runtime))
        deadline = obj["spec"].get("activeDeadlineSeconds")
        if deadline is not None and deadline < script.runtime_s:
            self._after(deadline, self._finish, name, False, "DeadlineExceeded")
        else:
            self._after(script.runtime_s, self._finish, name, script.succeed, "AppFailed")

    def _finish(self, name: str, succeed: bool, reason: str) -> None:
        job, obj = self._jobs.get(name), self._rayjob(name)
        if job is None or obj is None or job.ended:
            return
        job.ended = True
        end = _now_rfc3339()
        info = {**((obj.get("status") or {}).get("rayJobInfo") or {}), "endTime": end}
        submission = (obj.get("status") or {}).get("jobId") or name
        dash = self.api.dashboard(self.namespace, job.raycluster)
        dash.jobs.setdefault(submission, {"info": {}, "logs": ""})["logs"] += f"{submission} {'succeeded' if succeed else 'failed'}\n"
        if succeed:
            self.completed += 1
            self._status(name, jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", endTime=end, rayJobInfo=info)
        else:
            self.failed += 1
            self._status(name, jobDeploymentStatus="Failed", jobStatus="FAILED" if reason == "AppFailed" else "RUNNING",
                         reason=reason, message=f"the fake operator ended the job ({reason})", endTime=end, rayJobInfo=info)
        if obj["spec"].get("shutdownAfterJobFinishes"):
            ttl = self.ttl_s if self.ttl_s is not None else float(obj["spec"].get("ttlSecondsAfterFinished") or 0)
            self._after(ttl, self._teardown, name, False)

    def _deleted(self, name: str) -> None:
        self._teardown(name, True)

    def _teardown(self, name: str, forget: bool) -> None:
        """Delete the RayJob's RayCluster and pods (the nodes are free again); ``forget``: the RayJob is gone."""
        job = self._jobs.get(name)
        if job is None:
            return
        for pod in [*job.pods, job.head]:
            self.api.remove("Pod", pod, self.namespace)
        self._bound = {n: p for n, p in self._bound.items() if p not in job.pods}
        self.api.remove("RayCluster", job.raycluster, self.namespace)
        with self.api.lock:
            self.api.dashboards.pop((self.namespace, job.raycluster), None)
        job.placed = False
        job.pods = []
        if forget:
            del self._jobs[name]
        if name in self._waiting:
            self._waiting.remove(name)
        self._schedule()
