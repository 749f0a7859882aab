"""``rayfleet export --target gke``: every manifest of a config as YAML, one object kind per file,
ready for ``kubectl apply -f DIR``; sample workloads under ``DIR/examples`` (not applied by
``kubectl apply -f DIR``, which does not recurse).

Every object is validated against its CRD schema (:mod:`.crd_schema`) before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from ...api import TrainJob, TrainJobSpec
from ...api.base import GPU, TPU
from ...config import PlatformConfig
from ...errors import ConfigError, FieldProblem
from . import core_models, crd_schema, self_manifests
from .compute_class import compute_classes
from .kueue import kueue_objects, namespaces, not_exported, team_namespace
from .manifests import (
    cluster_kuberay,
    fleet_raycluster,
    is_queued_dws,
    launch_request_for,
    pod_share,
    run_objects,
    to_yaml,
)

# File of each kind, in apply order (kubectl applies a directory's files in name order).
FILES: dict[str, str] = {
    "Namespace": "00-namespaces.yaml",
    "ComputeClass": "10-computeclasses.yaml",
    "WorkloadPriorityClass": "20-workloadpriorityclasses.yaml",
    "Cohort": "21-cohorts.yaml",
    "ResourceFlavor": "22-resourceflavors.yaml",
    "ProvisioningRequestConfig": "23-provisioningrequestconfigs.yaml",
    "AdmissionCheck": "24-admissionchecks.yaml",
    "ClusterQueue": "25-clusterqueues.yaml",
    "LocalQueue": "26-localqueues.yaml",
    "RayCluster": "30-rayclusters.yaml",
}
EXAMPLE_FILES: dict[str, str] = {
    "RayJob": "examples/rayjobs.yaml",
    "PodTemplate": "examples/podtemplates.yaml",
    "ProvisioningRequest": "examples/provisioningrequests.yaml",
}

_ABOUT = {
    "Namespace": "the fleet namespace (RayClusters, rayfleet's RayJobs) and each team's namespace (its LocalQueue)",
    "ComputeClass": "GKE custom compute classes: ordered capacity fallback (reservation, DWS flex-start, spot)",
    "WorkloadPriorityClass": "Kueue priorities of rayfleet's priority classes",
    "Cohort": "Kueue cohorts: queues in one cohort lend and borrow idle quota",
    "ResourceFlavor": "one per rayfleet flavor: the pool's GKE node labels and tolerations",
    "ProvisioningRequestConfig": "queued DWS flex-start: the ProvisioningRequest class and max run duration per pool",
    "AdmissionCheck": "queued DWS flex-start: Kueue waits for GKE to provision a whole gang before admitting it",
    "ClusterQueue": "one per rayfleet queue: quota per flavor and resource, borrowing/lending limits, preemption, fair sharing",
    "LocalQueue": "one per queue, in the team's namespace: where the team's workloads are submitted",
    "RayCluster": "the fleet RayCluster: a head and one autoscaled worker group per pool (starts at zero workers)",
    "RayJob": "a sample RayJob per pool, suspended and labelled for Kueue (kueue.x-k8s.io/queue-name); `-direct` ones are what rayfleet's own backend creates",
    "PodTemplate": "worker pod templates referenced by the ProvisioningRequests",
    "ProvisioningRequest": "queued DWS flex-start requests (queued-provisioning.gke.io) that the `-direct` RayJobs' workers consume",
}


def dump_yaml(objects: Iterable[dict[str, Any]]) -> str:
    """YAML documents separated by ``---``, keys in the order they were built, multi-line strings
    (serveConfigV2, runtimeEnvYAML) as literal blocks."""
    return "---\n".join(to_yaml(o) for o in objects)


@dataclass
class ExportResult:
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # relative path -> objects
    notes: list[str] = field(default_factory=list)

    def objects(self) -> list[dict[str, Any]]:
        return [o for objs in self.files.values() for o in objs]


def _sample_job(cfg: PlatformConfig, pool: str, queue: str) -> TrainJob:
    """One slice (TPU) or one host (GPU/CPU) of ``pool``, asking for every accelerator of each host."""
    spec = cfg.pools[pool].spec
    share = pod_share(spec)
    per_worker: dict[str, int | str] = {"cpu": "1", "memory": "4Gi"}
    if spec.accelerator is not None:
        per_worker[spec.accelerator.resource] = share[spec.accelerator.resource]
    workers = spec.slice_hosts
    return TrainJob(
        metadata={"name": f"example-{pool}"},
        spec=TrainJobSpec(
            entrypoint="python -c 'import ray; ray.init(); print(ray.cluster_resources())'",
            queue=queue,
            gang={"workers": workers, "resourcesPerWorker": per_worker, "accelerator": spec.accelerator},
            maxRunDuration=3600,
        ),
    )


def _sample_queue(cfg: PlatformConfig, flavor: str) -> str | None:
    for q in cfg.queues.values():
        if flavor in q.spec.flavor_order():
            return q.name
    return None


def _default_priority(cfg: PlatformConfig) -> str | None:
    for pc in cfg.priority_classes.values():
        if pc.spec.default:
            return pc.name
    return None


def example_objects(cfg: PlatformConfig) -> list[dict[str, Any]]:
    """Sample RayJobs: Kueue-admitted (suspended) per flavor with quota, and the direct trio
    (PodTemplate, ProvisioningRequest, RayJob) for queued DWS pools."""
    cluster, kuberay = cluster_kuberay(cfg)
    out: list[dict[str, Any]] = []
    for flavor in cfg.flavors.values():
        queue = _sample_queue(cfg, flavor.name)
        if queue is None:
            continue
        pool = flavor.spec.pool
        job = _sample_job(cfg, pool, queue)
        req = launch_request_for(job, cfg, pool)
        ns = team_namespace(cfg, cfg.queues[queue].spec.team)
        kueue_run = run_objects(
            req, cluster=cluster, kuberay=kuberay, namespace=ns, suspend=True, local_queue=queue,
            priority_class=_default_priority(cfg), pin_provisioning=False,
        )
        out.append(kueue_run.rayjob)
        if is_queued_dws(cfg.pools[pool].spec):
            direct = launch_request_for(job.model_copy(update={"metadata": job.metadata.model_copy(update={"name": f"example-{pool}-direct"})}), cfg, pool)
            out += run_objects(direct, cluster=cluster, kuberay=kuberay).objects()
    return out


def _check_all(objects: list[dict[str, Any]]) -> None:
    problems = []
    for obj in objects:
        built_in = core_models.has_model(obj["apiVersion"], obj["kind"])
        errors = core_models.model_errors(obj) if built_in else crd_schema.validate(obj)
        if errors:
            ref = f"{obj['kind']}/{obj['metadata']['name']}"
            problems.append(f"{ref}: " + "; ".join(errors))
    if problems:
        raise crd_schema.ManifestInvalid({"kind": "export", "metadata": {"name": f"{len(problems)} object(s)"}}, problems)


def build_export(cfg: PlatformConfig, control: self_manifests.ControlService | None = None) -> ExportResult:
    """Every object of the export, validated, grouped by file. Raises ConfigError when the config
    holds something GKE/Kueue cannot take (e.g. a borrowing limit outside a cohort). ``control``:
    also the control service's own objects (``--self``)."""
    try:
        platform = kueue_objects(cfg)
        objects = [*namespaces(cfg), *compute_classes(cfg), *platform, fleet_raycluster(cfg)]
        own = self_manifests.control_service_objects(cfg, control) if control is not None else []
        examples = example_objects(cfg)
    except pydantic.ValidationError:
        raise
    except ValueError as e:
        raise ConfigError(FieldProblem(field="(export)", problem=str(e))) from None
    _check_all(objects + own + examples)
    result = ExportResult(notes=not_exported(cfg))
    for obj in objects:
        result.files.setdefault(FILES[obj["kind"]], []).append(obj)
    for obj in own:
        result.files.setdefault(self_manifests.FILES[obj["kind"]], []).append(obj)
    for obj in examples:
        result.files.setdefault(EXAMPLE_FILES[obj["kind"]], []).append(obj)
    return result


def readme(cfg: PlatformConfig, result: ExportResult, sources: list[str],
           control: self_manifests.ControlService | None = None) -> str:
    cluster, kuberay = cluster_kuberay(cfg)
    lines = [
        f"# GKE manifests of rayfleet cluster `{cluster}`",
        "",
        f"Generated by `rayfleet export --target gke` from {', '.join(f'`{s}`' for s in sources) or 'the config'}.",
        "Every object was validated against its CRD schema (KubeRay `ray.io/v1`, Kueue `kueue.x-k8s.io/v1beta2`,",
        "`autoscaling.x-k8s.io/v1` ProvisioningRequest, GKE `cloud.google.com/v1` ComputeClass).",
        "",
        "## Apply",
        "",
        "Prerequisites: the KubeRay operator (v1.5 or later: worker-group `labels`, `authOptions`), Kueue (v1beta2 API)",
        "if you use the Kueue objects, GKE 1.32.2+ for flex-start, and GKE node pools (or node auto-creation) for the pools.",
        "",
        "```sh",
        "kubectl apply -f .                          # platform objects, in file order",
        "kubectl apply -f examples/rayjobs.yaml      # optional: sample RayJobs (suspended until Kueue admits them)",
        "```",
        "",
        "## Files",
        "",
        "| file | objects | what they are |",
        "| --- | --- | --- |",
    ]
    for path, objs in result.files.items():
        kind = objs[0]["kind"]
        names = ", ".join(f"`{o['metadata']['name']}`" for o in objs)
        kinds = sorted({o["kind"] for o in objs}, key=[o["kind"] for o in objs].index)
        about = _ABOUT.get(kind) or "; ".join(self_manifests.ABOUT[k] for k in kinds if k in self_manifests.ABOUT)
        lines.append(f"| `{path}` | {', '.join(kinds)}: {names} | {about} |")
    tpu_pools = [p for p in cfg.pools.values() if p.spec.is_tpu]
    gpu_pools = [p for p in cfg.pools.values() if p.spec.accelerator is not None and not p.spec.is_tpu]
    lines += ["", "## Pools", "", "| pool | accelerator | per host | hosts per slice | max replicas | provisioning |", "| --- | --- | --- | --- | --- | --- |"]
    for p in cfg.pools.values():
        acc = p.spec.accelerator.value if p.spec.accelerator else "-"
        per_host = f"{p.spec.accelerators_per_host} {TPU if p.spec.is_tpu else GPU}" if p.spec.accelerator else "-"
        topo = f" ({p.spec.tpu_topology})" if p.spec.tpu_topology else ""
        lines.append(f"| `{p.name}` | {acc}{topo} | {per_host} | {p.spec.slice_hosts} | {p.spec.max_replicas} | {p.spec.provisioning.mode} |")
    lines += [
        "",
        f"{len(gpu_pools)} GPU and {len(tpu_pools)} TPU pool(s). A multi-host TPU worker group replica is one slice",
        "(`numOfHosts` = hosts per slice); the GKE Ray TPU webhook (Ray operator add-on) gives each host its TPU worker id.",
        f"RayJobs rayfleet launches run in namespace `{kuberay.namespace}` with their own RayCluster.",
    ]
    if control is not None:
        lines += self_manifests.readme_section(cfg, control)
    if result.notes:
        lines += ["", "## Not exported (rayfleet enforces these itself)", ""]
        lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def write_export(cfg: PlatformConfig, out: Path, *, sources: list[str] | None = None,
                 control: self_manifests.ControlService | None = None) -> ExportResult:
    """Write the export to ``out`` (created if needed). Files of a previous export are replaced."""
    result = build_export(cfg, control)
    out.mkdir(parents=True, exist_ok=True)
    for rel, objs in result.files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_yaml(objs))
    (out / "README.md").write_text(readme(cfg, result, sources or [], control))
    secret_file = out / self_manifests.FILES["Secret"]
    if secret_file.exists():
        secret_file.chmod(0o600)   # it holds the admin token
    return result
