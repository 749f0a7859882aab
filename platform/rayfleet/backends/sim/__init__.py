"""The simulated backend: scripted hosts, runs and services on an injected clock (see ``docs/sim.md``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from ...config import PlatformConfig
from .backend import PoolHandle, SimBackend
from .scenario import RunScript, Scenario, ServiceScript, load_scenario, parse_scenario


def scaled_clock(scale: float, *, start: float | None = None, now: Callable[[], float] = time.time) -> Callable[[], float]:
    """Real time, ``scale`` simulated seconds per real second from ``start`` (default: now)."""
    t0 = now() if start is None else start
    if scale == 1.0:
        return now
    return lambda: t0 + (now() - t0) * scale


def from_config(config: PlatformConfig, *, clock: Callable[[], float] | None = None,
                checkpoints: dict[str, int] | None = None) -> SimBackend:
    """The sim for a platform config: its cluster's pools, ``spec.sim`` settings and scenario file;
    ``checkpoints``: a checkpoint store shared with other clusters' sims."""
    cluster = config.cluster
    spec = cluster.spec if cluster else None
    sim = spec.sim if spec else None
    wanted = spec.pools if spec and spec.pools else list(config.pools)
    pools = {p: config.pools[p].spec for p in wanted if p in config.pools}
    scenario = load_scenario(sim.scenario) if sim and sim.scenario else None
    return SimBackend(
        pools,
        clock=clock or scaled_clock(sim.time_scale if sim else 1.0),
        seed=sim.seed if sim else 0,
        scenario=scenario,
        cluster_name=cluster.name if cluster else "sim",
        provisioning_delay=sim.provisioning_delay if sim else 0.0,
        provisioning_jitter=sim.provisioning_jitter if sim else 0.0,
        default_runtime=sim.default_runtime if sim else 30.0,
        repair_time=spec.host_health.repair_time if spec else 600.0,
        checkpoints=checkpoints,
    )


__all__ = ["PoolHandle", "RunScript", "Scenario", "ServiceScript", "SimBackend", "from_config", "load_scenario", "parse_scenario", "scaled_clock"]
