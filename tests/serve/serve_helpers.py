"""Helpers of the Serve tests: a simulated controller loop."""

from __future__ import annotations

import threading
import time

from rayfleet.api import PoolSpec, Service
from rayfleet.serve.deployer import ServeDeployer
from rayfleet.serve.scaler import ReplicaScaler, ScaleReport, quota_requests

POOL = "l4"  # the pool of the shared test cluster (tests/conftest.py) the Serve tests use


def make_service(name: str, import_path: str, *, hosts: int, min_r: int, max_r: int, **auto) -> Service:
    return Service.model_validate(
        {
            "metadata": {"name": name},
            "spec": {
                "importPath": import_path,
                "queue": "team-c",
                "routePrefix": f"/{name}",
                "replicaGroup": {"hostsPerReplica": hosts, "resourcesPerHost": {"nvidia.com/gpu": 1}},
                "autoscaling": {"minReplicas": min_r, "maxReplicas": max_r, **auto},
            },
        }
    )


class Controller:
    """What the control service does each cycle for one Service, with a grant the test sets."""

    def __init__(self, deployer: ServeDeployer, service: Service, grant: int, pool_spec: PoolSpec, period_s: float = 0.5) -> None:
        self.pool_spec = pool_spec
        self.scaler = ReplicaScaler(deployer)
        self.service = service
        self.grant = grant
        self.period_s = period_s
        self.reports: list[tuple[float, ScaleReport]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                obs = self.scaler.observe(self.service)
                granted = min(quota_requests(self.service, obs.wanted).total_groups, self.grant)
                self.reports.append((time.monotonic(), self.scaler.apply(self.service, POOL, self.pool_spec, granted, observed=obs)))
            except Exception as e:  # keep cycling, like the real controller; the test asserts on it
                self.errors.append(e)
            self._stop.wait(self.period_s)

    @property
    def last(self) -> ScaleReport | None:
        return self.reports[-1][1] if self.reports else None

    def wait(self, predicate, timeout_s: float, what: str) -> ScaleReport:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rep = self.last
            if rep is not None and predicate(rep):
                return rep
            time.sleep(0.2)
        raise AssertionError(f"{what}: not reached in {timeout_s}s; last report {self.last}; errors {self.errors[-3:]}")

    def __enter__(self) -> Controller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
