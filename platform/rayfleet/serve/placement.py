"""Where a Service's replica goes: one placement group per replica, one bundle per host.

Pure data (no Ray import): a :class:`GroupPlacement` is what Ray Serve's own per-replica options
need — ``placement_group_bundles``, ``placement_group_strategy`` and
``placement_group_bundle_label_selector`` — plus the replica actor's resources (a subset of bundle 0,
as Serve requires) and the Serve knobs that make a broken group go away quickly.

Resources map the same way on fake and real accelerators:

=================================  =======================================================
``resourcesPerHost``               Ray bundle resource
=================================  =======================================================
``nvidia.com/gpu: n``              ``GPU: n``
``google.com/tpu: n``              ``TPU: n``
accelerator (spec or pool)         ``accelerator_type:<Ray type>: 0.001`` (Ray's convention)
``cpu``                            ``CPU``: ``cpu_per_bundle`` if given (small, locally), else the spec
``memory``                         not reserved (Ray's ``memory`` resource is advisory)
=================================  =======================================================

Every bundle is pinned to the admitted pool by the bundle label selector
``rayfleet.io/pool=<pool>`` (plus the flavor's extra node labels). Multi-host replicas spread one
bundle per host (``STRICT_SPREAD``). On a multi-host TPU pool a replica is a whole slice: bundle
``i`` selects ``rayfleet.io/tpu-worker-id=i``, bundle 0 also takes the slice-head resource
``TPU-<type>-<chips>-head`` (one per slice, so at most one replica per slice), and when the pool has
one slice the selector names it. With several slices Serve's static per-replica options cannot say
"all bundles in the same slice, whichever it is"; the leader then checks the slice labels of its
members when the group starts and fails the replica (Serve retries it) if they differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api import CPU, GPU, TPU, PoolSpec, ServiceSpec
from ..api.labels import LABEL_POOL, LABEL_TPU_SLICE, LABEL_TPU_WORKER, tpu_head_resource

#: How much of ``accelerator_type:<name>`` a bundle asks for (Ray's own ``accelerator_type=`` uses 0.001).
ACCELERATOR_TYPE_AMOUNT = 0.001


class PlacementError(ValueError):
    """The replica shape does not fit the pool (the field named first)."""


@dataclass(frozen=True)
class GroupPlacement:
    """Serve deployment options that make each replica a leader-worker group on one pool."""

    pool: str
    hosts: int
    bundles: list[dict[str, float]]
    strategy: str
    bundle_label_selector: list[dict[str, str]]
    same_slice_label: str | None = None       # members must agree on this node label (multi-slice TPU)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def actor_resources(self) -> dict[str, Any]:
        """``ray_actor_options`` resources of the replica (leader) actor: all of bundle 0."""
        return bundle_actor_options(self.bundles[0])

    def deployment_options(self) -> dict[str, Any]:
        """The placement part of ``Deployment.options()`` / a ServeApplicationSchema deployment."""
        return {
            "placement_group_bundles": [dict(b) for b in self.bundles],
            "placement_group_strategy": self.strategy,
            "placement_group_bundle_label_selector": [dict(s) for s in self.bundle_label_selector],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "hosts": self.hosts,
            "bundles": self.bundles,
            "strategy": self.strategy,
            "bundleLabelSelector": self.bundle_label_selector,
            "sameSliceLabel": self.same_slice_label,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GroupPlacement:
        return cls(
            pool=d["pool"],
            hosts=int(d["hosts"]),
            bundles=[{k: float(v) for k, v in b.items()} for b in d["bundles"]],
            strategy=d["strategy"],
            bundle_label_selector=[dict(s) for s in d["bundleLabelSelector"]],
            same_slice_label=d.get("sameSliceLabel"),
        )


def bundle_actor_options(bundle: dict[str, float]) -> dict[str, Any]:
    """Actor options that take exactly one bundle's resources."""
    custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU", "memory")}
    opts: dict[str, Any] = {"num_cpus": bundle.get("CPU", 0), "num_gpus": bundle.get("GPU", 0)}
    if custom:
        opts["resources"] = custom
    return opts


def host_bundle(spec: ServiceSpec, pool: PoolSpec, *, cpu_per_bundle: float | None) -> dict[str, float]:
    """Ray resources of one host of a replica."""
    res = spec.replica_group.resources_per_host
    bundle: dict[str, float] = {}
    cpu = cpu_per_bundle if cpu_per_bundle is not None else res.get(CPU, 0) / 1000
    if cpu:
        bundle["CPU"] = float(cpu)
    gpus, chips = res.get(GPU, 0), res.get(TPU, 0)
    if gpus:
        bundle["GPU"] = float(gpus)
    if chips:
        bundle["TPU"] = float(chips)
    accel = spec.replica_group.accelerator or (pool.accelerator if (gpus or chips) else None)
    if accel is not None:
        bundle[f"accelerator_type:{accel.ray_type}"] = ACCELERATOR_TYPE_AMOUNT
    if not bundle:
        # A bundle must ask for something; a sliver of CPU keeps the host's other work unaffected.
        bundle["CPU"] = 0.01
    return bundle


def check_fits(spec: ServiceSpec, pool_name: str, pool: PoolSpec) -> None:
    """Raise :class:`PlacementError` if a replica of ``spec`` cannot run on ``pool``."""
    group = spec.replica_group
    res = group.resources_per_host
    if group.accelerator is not None and pool.accelerator != group.accelerator:
        raise PlacementError(
            f"spec.replicaGroup.accelerator: {group.accelerator.value} is not the accelerator of pool "
            f"{pool_name!r} ({pool.accelerator.value if pool.accelerator else 'none'})"
        )
    for resource in (GPU, TPU):
        want = res.get(resource, 0)
        if want and (pool.accelerator is None or pool.accelerator.resource != resource):
            raise PlacementError(f"spec.replicaGroup.resourcesPerHost: pool {pool_name!r} offers no {resource}")
        if want > pool.accelerators_per_host:
            raise PlacementError(
                f"spec.replicaGroup.resourcesPerHost: {want} {resource} per host, pool {pool_name!r} hosts have {pool.accelerators_per_host}"
            )
    if pool.is_tpu and group.hosts_per_replica > 1 and group.hosts_per_replica != pool.slice_hosts:
        raise PlacementError(
            f"spec.replicaGroup.hostsPerReplica: a multi-host TPU replica is one whole slice of pool {pool_name!r} "
            f"({pool.slice_hosts} hosts), not {group.hosts_per_replica}"
        )
    if group.hosts_per_replica > pool.max_hosts:
        raise PlacementError(
            f"spec.replicaGroup.hostsPerReplica: {group.hosts_per_replica} hosts, pool {pool_name!r} has at most {pool.max_hosts}"
        )


def group_placement(
    spec: ServiceSpec,
    pool_name: str,
    pool: PoolSpec,
    *,
    cpu_per_bundle: float | None = 0.1,
    node_labels: dict[str, str] | None = None,
) -> GroupPlacement:
    """The placement of one replica of ``spec`` admitted on pool ``pool_name``.

    ``cpu_per_bundle``: Ray CPUs each bundle reserves (small locally, where simulated hosts share
    the machine's cores; ``None`` takes ``resourcesPerHost.cpu``). ``node_labels``: extra labels the
    admitted flavor selects (``Flavor.spec.nodeLabels``).
    """
    check_fits(spec, pool_name, pool)
    hosts = spec.replica_group.hosts_per_replica
    bundle = host_bundle(spec, pool, cpu_per_bundle=cpu_per_bundle)
    bundles = [dict(bundle) for _ in range(hosts)]
    base_selector = {LABEL_POOL: pool_name, **(node_labels or {})}
    selectors = [dict(base_selector) for _ in range(hosts)]
    same_slice: str | None = None
    if pool.is_tpu and hosts > 1:
        bundles[0][tpu_head_resource(pool)] = 1.0
        for i, sel in enumerate(selectors):
            sel[LABEL_TPU_WORKER] = str(i)
        if pool.max_replicas == 1:
            for sel in selectors:
                sel[LABEL_TPU_SLICE] = f"{pool_name}-0"
        else:
            same_slice = LABEL_TPU_SLICE
    strategy = "STRICT_SPREAD" if hosts > 1 else "PACK"
    return GroupPlacement(
        pool=pool_name,
        hosts=hosts,
        bundles=bundles,
        strategy=strategy,
        bundle_label_selector=selectors,
        same_slice_label=same_slice,
    )
