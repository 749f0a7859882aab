"""Shared test settings, and the one small local Ray cluster the Train and Serve tests share.

``pools_backend`` is started once per session, on first use, through the product's own
:class:`rayfleet.backends.local.LocalBackend` (real ``ray start`` nodes carrying the pools' labels
and resources). Its pools:

- ``tpu``: one v5e 2x4 slice, 2 hosts x 4 chips (multi-host Train and entry-point gangs);
- ``grow``: 1 to 2 CPU hosts, idle ones given back after 3 s, a new host ready 2 s after it is
  asked for (the cluster's scenario): a pool that grows for a gang and shrinks after;
- ``spot``: one CPU spot host, 8 s of reclaim notice;
- ``l4``: 3 hosts x 1 fake L4 GPU from DWS flex-start (non-queued), up to 4 (Serve leader-worker
  groups: 3 hosts, so a lost host can be replaced by a group on the other two, and a fourth for
  the replacement of a recycled host).

Tests pin their work to a pool with label selectors, so the pools do not disturb each other. A test
that kills a host brings it back (``up()`` repairs dead hosts) before it ends.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

# ---------------------------------------------------------------- the fast tier starts no process
# Every way Python starts a process raises an audit event (subprocess.Popen, os.system, os.fork,
# os.exec*, os.posix_spawn, os.spawn*); Ray's own start (ray.init, `ray start`) goes through them.
# The hook only records; a test not marked ``slow`` that started a process (in its setup, its body
# or its teardown, session fixtures included) is reported as failed, so `pytest -m "not slow"`
# (make test-fast) cannot grow a test that starts Ray or the control service.
_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn"}
_started: list[str] = []
_STARTED_AT = pytest.StashKey[int]()
pytest_plugins = ("pytester",)  # tests/test_fast_tier_guard.py runs the guard on a test file of its own


def _audit(event: str, args: tuple) -> None:
    if event in _PROCESS_EVENTS:
        _started.append(f"{event} {args[0]!r}"[:200] if args else event)


sys.addaudithook(_audit)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    item.stash[_STARTED_AT] = len(_started)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when == "setup" or item.get_closest_marker("slow") is not None:
        return
    started = _started[item.stash.get(_STARTED_AT, len(_started)):]
    item.stash[_STARTED_AT] = len(_started)
    if started and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} is not marked slow but started {len(started)} process(es): "
                           + "; ".join(started[:3]) + ". Mark it @pytest.mark.slow (make test-fast runs no process).")


# ---------------------------------------------------------------- one Ray cluster at a time
# The slow tests share a few real clusters (these fixtures). Two clusters side by side on the CI
# machine's 2 cores slow each other's tests by half even when one is idle (dashboards, GCS, raylets
# poll), so the modules that use a cluster run next to each other (whole modules keep their order)
# and a cluster is shut down after the last test that uses it, not at the end of the session.
CLUSTER_FIXTURES = ("yaml_backend", "fleet_service", "pools_backend")


def _cluster_of(item: pytest.Item) -> int:
    used = [i for i, name in enumerate(CLUSTER_FIXTURES) if name in item.fixturenames]
    return used[0] + 1 if used else 0


def pytest_collection_modifyitems(session, config, items):
    # A module's place is that of its first item that uses a cluster (its other items move with it).
    module_key: dict[object, int] = {}
    for item in items:
        key = _cluster_of(item)
        if key and item.module not in module_key:
            module_key[item.module] = key
    items.sort(key=lambda item: module_key.get(item.module, 0))  # stable: order kept within a group


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    # After the item's own teardown: a session cluster the next test does not use is finished now
    # (its finalizers run, those of the fixtures built on it first); a later user would start it again.
    for name in CLUSTER_FIXTURES:
        if name not in item.fixturenames or (nextitem is not None and name in nextitem.fixturenames):
            continue
        for fixturedef in item._fixtureinfo.name2fixturedefs.get(name, ()):
            if fixturedef.scope == "session" and fixturedef.cached_result is not None:
                fixturedef.finish(item._request)


# ---------------------------------------------------------------- the store's two engines
@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (tests/databases.py), started on first use."""
    from databases import PostgresServer

    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store_target(request, tmp_path):
    """Where a store's test keeps its data, once per engine: a SQLite file, or a new database on
    the session's PostgreSQL server (a process: that half is in the slow tier)."""
    if request.param == "sqlite":
        return tmp_path / "db.sqlite"
    return request.getfixturevalue("postgres").new_database()


ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "cluster_configs"

POOLS_CONFIG = """\
kind: Cluster
metadata: {name: test-pools}
spec:
  backend: local
  local: {objectStoreMemory: 96Mi, headCpus: 2, scenario: SCENARIO}
  startTimeout: 300
---
kind: Pool
metadata: {name: grow}
spec: {machineType: n2-standard-8, cpuPerHost: 8, memoryPerHost: 32Gi, minReplicas: 1, maxReplicas: 2, idleTimeout: 3}
---
kind: Pool
metadata: {name: spot}
spec: {machineType: n2-standard-8, cpuPerHost: 8, memoryPerHost: 32Gi, minReplicas: 1, maxReplicas: 1, provisioning: {mode: spot, reclaimNotice: 8}}
---
kind: Pool
metadata: {name: tpu}
spec: {accelerator: tpu-v5-lite-podslice, acceleratorsPerHost: 4, machineType: ct5lp-hightpu-4t, tpuTopology: 2x4, cpuPerHost: 112, memoryPerHost: 192Gi, minReplicas: 1, maxReplicas: 1}
---
kind: Pool
metadata: {name: l4}
spec: {accelerator: nvidia-l4, acceleratorsPerHost: 1, machineType: g2-standard-8, cpuPerHost: 8, memoryPerHost: 32Gi, minReplicas: 3, maxReplicas: 4,
       provisioning: {mode: dws-flex, queued: false, nodeRecyclingLeadTime: 30}}
"""


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def local_config_path() -> Path:
    return CONFIGS / "local.yaml"


@pytest.fixture(scope="session")
def pools_backend(tmp_path_factory):
    from rayfleet.backends import local_procs
    from rayfleet.backends.local import LocalBackend

    data = tmp_path_factory.mktemp("rf-pools")
    scenario = Path(data) / "scenario.yaml"
    scenario.write_text("pools:\n  grow: {provisioningDelay: 2}\n")
    cfg = Path(data) / "pools.yaml"
    cfg.write_text(POOLS_CONFIG.replace("SCENARIO", str(scenario)))
    temp_dir = f"/tmp/rf-pools-{uuid.uuid4().hex[:8]}"
    backend = LocalBackend.from_config_files([cfg], data / "data", temp_dir=temp_dir, placement_timeout_s=90)
    backend.up()
    try:
        yield backend
    finally:
        backend.down()
        assert not local_procs.cluster_pids(temp_dir), "processes of the test cluster survived down()"
        shutil.rmtree(temp_dir, ignore_errors=True)
