"""Autoscaling under quota: the controller-side step that caps Serve to what quota granted.

Each controller cycle, for each Service:

1. ``obs = scaler.observe(service)`` — Serve's view (running groups, capped target) and the
   policy's **wanted** count (what Serve's autoscaler would run without the cap);
2. the controller asks quota for ``quota_requests(service, obs.wanted)``: the base workload
   (``minReplicas`` groups, at least 1, admitted as one workload) plus one request per group above
   it; quota grants some of them (possibly borrowed) or refuses;
3. ``report = scaler.apply(service, pool, pool_spec, granted)`` — sets Serve's ``max_replicas`` to
   the granted count (a no-op when unchanged) and returns wanted/granted/running with the reason
   they differ, ready for ``ServiceStatus``.

When a lender reclaims, the controller passes the smaller grant: Serve lowers its target at once
(``max_replicas`` bounds it) and stops the surplus groups gracefully — a stopping replica gets no
new requests, finishes the ones it holds (``graceful_shutdown_timeout_s``), then its placement
group (every host of the group) is released.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api import PoolSpec, Service, ServiceState, ServiceStatus
from .deployer import ServeAppStatus, ServeDeployer, base_replicas, replica_cap


@dataclass(frozen=True)
class QuotaRequests:
    """What a Service asks quota for: the base workload and extra groups, each its own request."""

    base_groups: int      # admitted together (minReplicas, at least 1)
    extra_groups: int     # one quota request each, above the base
    hosts_per_group: int

    @property
    def total_groups(self) -> int:
        return self.base_groups + self.extra_groups


@dataclass(frozen=True)
class ScaleReport:
    """Replica counts of a Service and why they differ."""

    wanted: int
    granted: int
    running: int
    cap: int
    target: int
    state: ServiceState
    message: str
    url: str | None
    changed: bool = False     # this call changed Serve's config

    def to_status(self, status: ServiceStatus | None = None, *, flavor: str | None = None) -> ServiceStatus:
        """``status`` (or a fresh one) updated with these counts."""
        base = status.model_copy() if status is not None else ServiceStatus()
        return base.model_copy(
            update={
                "state": self.state,
                "replicas_wanted": self.wanted,
                "replicas_granted": self.granted,
                "replicas_running": self.running,
                "url": self.url,
                "message": self.message,
                **({"flavor": flavor} if flavor is not None else {}),
            }
        )


def quota_requests(service: Service, wanted: int | None) -> QuotaRequests:
    """Groups to ask quota for, given the policy's wanted count (None: not yet known -> the base)."""
    a = service.spec.autoscaling
    base = base_replicas(service)
    want = base if wanted is None else max(base, min(a.max_replicas, wanted))
    return QuotaRequests(base_groups=base, extra_groups=want - base, hosts_per_group=service.spec.replica_group.hosts_per_replica)


def explain(service: Service, obs: ServeAppStatus, granted: int) -> tuple[ServiceState, str]:
    """The Service's state and a one-line reason for the counts, from Serve's view and the grant."""
    a = service.spec.autoscaling
    wanted = obs.wanted if obs.wanted is not None else obs.target
    cap = replica_cap(service, granted)
    parts: list[str] = []
    if not obs.exists:
        return ServiceState.PENDING, "not deployed"
    if obs.app_status == "DEPLOY_FAILED":
        return ServiceState.FAILED, f"Serve could not deploy the application: {obs.message}".strip()
    if obs.app_status == "DELETING":
        return ServiceState.DELETING, "Serve is removing the application"
    if wanted > cap:
        if cap >= a.max_replicas:
            parts.append(f"load wants {wanted} groups, maxReplicas is {a.max_replicas}")
        else:
            parts.append(f"{wanted - cap} group(s) wanted beyond quota: {cap} granted")
    if obs.stopping:
        why = "above the quota grant" if wanted > cap else "no longer wanted by load"
        parts.append(f"draining {obs.stopping} group(s) {why}")
    if obs.running < min(obs.target, cap):
        starting = min(obs.target, cap) - obs.running
        parts.append(f"{starting} group(s) starting: placement of all {service.spec.replica_group.hosts_per_replica} hosts pending or members starting")
    if obs.running > cap:
        parts.append(f"{obs.running - cap} group(s) above the grant being removed")
    if obs.running == 0:
        state = ServiceState.DEPLOYING if obs.app_status in ("DEPLOYING", "NOT_STARTED", "") else ServiceState.DEGRADED
        if obs.app_status == "UNHEALTHY" and obs.message:
            parts.append(obs.message)
    elif obs.running < base_replicas(service) and a.min_replicas > 0:
        state = ServiceState.DEGRADED
        parts.insert(0, f"{obs.running} of minReplicas {a.min_replicas} groups running")
    else:
        state = ServiceState.RUNNING
    if not parts:
        parts.append(f"{obs.running} group(s) running as wanted")
    return state, "; ".join(parts)


class ReplicaScaler:
    """Caps a Service's Serve autoscaling to its quota grant; see the module docstring."""

    def __init__(self, deployer: ServeDeployer) -> None:
        self.deployer = deployer

    def observe(self, service: Service) -> ServeAppStatus:
        return self.deployer.status(service.name)

    def apply(
        self,
        service: Service,
        pool_name: str,
        pool_spec: PoolSpec,
        granted: int,
        *,
        node_labels: dict[str, str] | None = None,
        observed: ServeAppStatus | None = None,
    ) -> ScaleReport:
        """Deploy or re-cap ``service`` for ``granted`` groups and report its counts.

        ``granted`` counts every group quota admitted for the Service (base + granted extras).
        Below the base the Service is not deployed (the controller keeps it PENDING).
        """
        if granted < base_replicas(service):
            obs = observed or self.observe(service)
            return ScaleReport(
                wanted=obs.wanted if obs.wanted is not None else base_replicas(service),
                granted=granted,
                running=obs.running,
                cap=0,
                target=obs.target,
                state=ServiceState.PENDING,
                message=f"waiting for quota for {base_replicas(service)} group(s) of {service.spec.replica_group.hosts_per_replica} host(s)",
                url=obs.url,
            )
        changed = self.deployer.deploy(service, pool_name, pool_spec, granted, node_labels=node_labels)
        obs = self.observe(service) if (changed or observed is None) else observed
        state, message = explain(service, obs, granted)
        cap = replica_cap(service, granted)
        return ScaleReport(
            wanted=obs.wanted if obs.wanted is not None else max(obs.target, base_replicas(service)),
            granted=min(granted, service.spec.autoscaling.max_replicas),
            running=obs.running,
            cap=cap,
            target=obs.target,
            state=state,
            message=message,
            url=obs.url,
            changed=changed,
        )
