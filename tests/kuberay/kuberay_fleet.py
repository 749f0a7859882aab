"""rayfleet on the fake API server with the fake KubeRay operator: the real control plane
(``Fleet``, controller, quota, SQLite store) and the real ``KubeRayBackend`` (official kubernetes
client, watches, request budget), on a platform of a CPU pool and a T4 pool whose fake Nodes carry
the pools' GKE labels. Used by ``test_kuberay_scale.py`` and ``benchmarks/kuberay_scale.py``.

Jobs: every fifth a one-host T4 job, every seventh (not a T4 one) a two-host CPU gang, the rest
one CPU host; each worker takes a whole host (12 of 15.89 cpu), so the pools' host counts bound
how many run at once, and quota (each queue's share of the hosts) agrees with them.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fake_apiserver import FakeApiServer
from fake_kuberay_operator import FakeKubeRayOperator

from rayfleet.api import JobState, TrainJob
from rayfleet.backends.kuberay.client import KubeRayBackend
from rayfleet.config import load_config
from rayfleet.server.auth import Principal
from rayfleet.server.fleet import Fleet
from rayfleet.server.main import assemble

ADMIN = Principal(team=None, admin=True, label="kuberay-scale")
WORKER_CPU = 12


def platform_yaml(*, cpu_hosts: int, t4_hosts: int, queues: int, qps: float, burst: int, ttl_s: int) -> str:
    per_cpu, per_t4 = cpu_hosts // queues, t4_hosts // queues
    docs = [
        "kind: Cluster\nmetadata: {name: scale}\nspec:\n  backend: kuberay\n  kuberay:\n    namespace: rayfleet\n"
        f"    ttlSecondsAfterFinished: {ttl_s}\n    clientConnection: {{qps: {qps}, burst: {burst}}}",
        "kind: Pool\nmetadata: {name: cpu}\nspec: {machineType: n2-standard-16, cpuPerHost: 15890m, memoryPerHost: 57Gi, "
        f"maxReplicas: {cpu_hosts}, provisioning: {{mode: on-demand}}, zone: us-central1-a}}",
        "kind: Pool\nmetadata: {name: t4}\nspec: {accelerator: nvidia-tesla-t4, acceleratorsPerHost: 1, machineType: n1-standard-8, "
        f"cpuPerHost: 7910m, memoryPerHost: 26Gi, maxReplicas: {t4_hosts}, provisioning: {{mode: on-demand}}, zone: us-central1-a}}",
        "kind: Flavor\nmetadata: {name: cpu}\nspec: {pool: cpu}",
        "kind: Flavor\nmetadata: {name: t4}\nspec: {pool: t4}",
    ]
    for q in range(queues):
        docs.append(f"kind: Team\nmetadata: {{name: team-{q}}}\nspec: {{displayName: team {q}}}")
        docs.append(
            f"kind: Queue\nmetadata: {{name: q-{q}}}\nspec:\n  team: team-{q}\n  resourceGroups:\n"
            "    - coveredResources: [cpu, nvidia.com/gpu]\n      flavors:\n"
            f"        - name: cpu\n          resources: [{{name: cpu, nominalQuota: {per_cpu * WORKER_CPU}}}, {{name: nvidia.com/gpu, nominalQuota: 0}}]\n"
            f"        - name: t4\n          resources: [{{name: cpu, nominalQuota: 0}}, {{name: nvidia.com/gpu, nominalQuota: {per_t4}}}]")
    return "\n---\n".join(docs) + "\n"


def job_shape(i: int) -> tuple[int, dict[str, Any]]:
    """(workers, resources per worker) of job ``i``."""
    if i % 5 == 4:
        return 1, {"nvidia.com/gpu": 1}
    if i % 7 == 3:
        return 2, {"cpu": WORKER_CPU}
    return 1, {"cpu": WORKER_CPU}


def train_jobs(n: int, queues: int) -> list[TrainJob]:
    out = []
    for i in range(n):
        workers, per = job_shape(i)
        out.append(TrainJob.model_validate({"metadata": {"name": f"job-{i:05d}"}, "spec": {
            "entrypoint": "python train.py", "queue": f"q-{i % queues}", "maxRunDuration": "1h",
            "gang": {"workers": workers, "resourcesPerWorker": per}}}))
    return out


@dataclass
class ScaleRun:
    api: FakeApiServer
    operator: FakeKubeRayOperator
    backend: KubeRayBackend
    fleet: Fleet
    jobs: list[TrainJob]
    submitted_at: float = 0.0
    counts_before: dict[tuple[str, str], int] = field(default_factory=dict)

    def close(self) -> None:
        self.fleet.controller.stop()
        self.fleet.close()
        self.operator.stop()
        self.api.stop()


def start(work: Path, *, jobs: int, cpu_hosts: int = 32, t4_hosts: int = 8, queues: int = 4, qps: float = 300, burst: int = 500,
          ttl_s: int = 0, runtime: tuple[float, float] = (0.1, 0.3), interval: float = 0.2, watch: bool = True,
          max_events: int | None = 50_000, validate: bool = True, seed: int = 1) -> ScaleRun:
    """Everything up (fake API server, operator with the pools' nodes, backend ``up()``, the fleet),
    nothing submitted yet. ``validate``: the fake API server checks writes against the CRD schemas
    (the backend checks every object itself before it sends it either way)."""
    (work / "platform.yaml").write_text(platform_yaml(cpu_hosts=cpu_hosts, t4_hosts=t4_hosts, queues=queues, qps=qps, burst=burst,
                                                      ttl_s=ttl_s))
    config = load_config([work / "platform.yaml"])
    api = FakeApiServer(max_events=max_events, validate=validate).start()
    operator = FakeKubeRayOperator(api, init_delay=0.02, start_delay=0.02)
    for name in ("cpu", "t4"):
        operator.add_pool_nodes(name, config.pools[name].spec)
    rng = random.Random(seed)
    specs = train_jobs(jobs, queues)
    for job in specs:
        operator.script(job.name, rng.uniform(*runtime))
    operator.start()
    backend = KubeRayBackend(config, api.api_client(), watch=watch)
    backend.up()
    fleet = assemble(config, backend, work / "data", clock=time.time, controller_interval=interval)
    return ScaleRun(api, operator, backend, fleet, specs)


def submit_all(run: ScaleRun) -> None:
    """Start the controller (and the backend's watches), then submit every job."""
    run.counts_before = dict(run.api.counts)
    run.fleet.start()
    run.submitted_at = time.time()
    for job in run.jobs:
        run.fleet.submit_job(job, ADMIN)


def wait_done(run: ScaleRun, timeout: float) -> int:
    """Wait until every job is terminal or ``timeout``; the terminal count."""
    terminal = [s.value for s in JobState if s.terminal]
    deadline = time.time() + timeout
    done = 0
    while time.time() < deadline:
        done = run.fleet.store.count("TrainJob", terminal)
        if done >= len(run.jobs):
            break
        time.sleep(0.1)
    return done


def calls_since(run: ScaleRun) -> dict[tuple[str, str], int]:
    """API requests since :func:`submit_all`, by (verb, resource)."""
    return {k: n - run.counts_before.get(k, 0) for k, n in run.api.counts.items() if n - run.counts_before.get(k, 0) > 0}
