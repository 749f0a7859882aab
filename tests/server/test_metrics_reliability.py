"""MTTR / MTBI on /metrics: rayfleet's one definition (``train.history.reliability``), checked through
the scrape output of the control service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rayfleet.api import Interruption

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _metric(text: str, name: str, job: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f'{name}{{job="{job}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return None


def _submit(api, headers, fleet, name: str, **status) -> None:
    r = api.post("/api/v1/jobs", headers=headers, json={"metadata": {"name": name},
                                                         "spec": {"entrypoint": "python train.py", "queue": "team-a"}})
    assert r.status_code == 201, r.text
    job = fleet.store.get("TrainJob", name).doc
    fleet.store.update(job.model_copy(update={"status": job.status.model_copy(update=status)}))


def test_mttr_and_mtbi_on_metrics(api, team_a, admin, fleet):
    # ran 1000 s, interrupted twice: down 30 s and 10 s -> MTTR 20 s; 960 s running / 2 -> MTBI 480 s
    _submit(api, team_a, fleet, "twice", started_at=at(0), finished_at=at(1000), interruptions=[
        Interruption(at=at(100), attempt=1, reason="preempted", recovered_at=at(130)),
        Interruption(at=at(500), attempt=2, reason="host-failure", recovered_at=at(510)),
    ])
    # interrupted once, never recovered before it ended at 300 s: no MTTR; 200 s running / 1
    _submit(api, team_a, fleet, "lost", started_at=at(0), finished_at=at(300), interruptions=[
        Interruption(at=at(200), attempt=1, reason="capacity"),
    ])
    _submit(api, team_a, fleet, "calm", started_at=at(0), finished_at=at(50))
    text = api.get("/metrics", headers=admin).text
    assert _metric(text, "rayfleet_job_mttr_seconds", "twice") == pytest.approx(20.0)
    assert _metric(text, "rayfleet_job_mtbi_seconds", "twice") == pytest.approx(480.0)
    assert _metric(text, "rayfleet_job_mttr_seconds", "lost") is None
    assert _metric(text, "rayfleet_job_mtbi_seconds", "lost") == pytest.approx(200.0)
    assert _metric(text, "rayfleet_job_mttr_seconds", "calm") is None
    assert _metric(text, "rayfleet_job_mtbi_seconds", "calm") is None
