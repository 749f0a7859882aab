"""The laptop SDK against a running rayfleet: train apps as gangs, borrowing, reclaim by a
production job, requeue and resume from the checkpoint (tiny_lm, a 2-worker DDP gang over two hosts)."""

from __future__ import annotations

import time

import pytest

import rayfleet

pytestmark = pytest.mark.slow


def _train(name, queue, workers, gpus, priority=None, steps=40, sleep=0.25, every=5):
    spec = {"queue": queue, "trainApp": {"module": "train_apps.tiny_lm",
                                         "config": {"steps": steps, "checkpoint_every": every, "step_sleep_s": sleep}},
            "gang": {"workers": workers, "resourcesPerWorker": {"cpu": "500m", "nvidia.com/gpu": gpus}, "accelerator": "nvidia-tesla-t4"}}
    if priority:
        spec["priorityClass"] = priority
    return rayfleet.TrainJob.model_validate({"metadata": {"name": name}, "spec": spec})


def _command(name, queue, command, gpus=1, workers=2, priority=None):
    spec = {"queue": queue, "entrypoint": command,
            "gang": {"workers": workers, "resourcesPerWorker": {"cpu": "500m", "nvidia.com/gpu": gpus}, "accelerator": "nvidia-tesla-t4"}}
    if priority:
        spec["priorityClass"] = priority
    return rayfleet.TrainJob.model_validate({"metadata": {"name": name}, "spec": spec})


def test_sdk_submit_wait_logs_events(fleet_service):
    fleet = rayfleet.connect(fleet_service.url, token=fleet_service.token("team-b"))
    command = "python -c \"import os; print('gang', os.environ['RAYFLEET_WORKERS'], os.environ['RAYFLEET_PLACEMENT_GROUP'])\""
    job = fleet.submit(_command("sdk-gang", "team-b", command))
    assert job.state == "QUEUED"
    again = fleet.submit(_command("sdk-gang", "team-b", command))
    assert again.name == job.name  # idempotent
    final = job.wait(timeout=300)
    assert final["state"] == "SUCCEEDED", final
    assert final["pool"] == "t4" and final["attempt"] == 1
    assert "gang 2 rayfleet-sdk-gang-1" in job.logs()
    types = [e["type"] for e in job.events()]
    assert types[:1] == ["Submitted"] and "Admitted" in types and types[-1] == "Succeeded"
    assert [j["metadata"]["name"] for j in fleet.jobs(state="SUCCEEDED") if j["metadata"]["name"] == "sdk-gang"]
    assert {q["metadata"]["name"] for q in fleet.queues()} == {"team-b"}
    with pytest.raises(rayfleet.errors.Forbidden):
        fleet.submit(_train("sdk-x", "team-a", workers=1, gpus=1))


def test_borrow_then_reclaim_then_resume_from_checkpoint(fleet_service):
    a = rayfleet.connect(fleet_service.url, token=fleet_service.token("team-a"))
    b = rayfleet.connect(fleet_service.url, token=fleet_service.token("team-b"))
    # team-a's gang needs 4 GPUs: its 2 nominal + 2 borrowed from team-b's idle quota.
    exp = a.submit(_train("exp-borrow", "team-a", workers=2, gpus=2, steps=24, sleep=0.25, every=5))
    deadline = time.monotonic() + 300
    while True:
        st = exp.status()
        if st["state"] == "RUNNING" and (st.get("lastCheckpointStep") or 0) >= 5:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.5)
    assert st["borrowed"].get("nvidia.com/gpu") == 2
    queue_a = a.queue("team-a")["status"]
    assert queue_a["borrowed"]["t4"]["nvidia.com/gpu"] == 2
    # team-b's production job reclaims its quota: the experiment is preempted and requeued.
    prod = b.submit(_command("prod-reclaim", "team-b", "sleep 2", gpus=2, workers=1, priority="production"))
    deadline = time.monotonic() + 120
    while not exp.status()["interruptions"]:
        assert time.monotonic() < deadline, exp.status()
        time.sleep(0.5)
    st = exp.status()
    assert st["interruptions"][0]["reason"] == "preempted"
    checkpoint_at_preemption = st["lastCheckpointStep"]
    assert checkpoint_at_preemption >= 5
    assert prod.wait(timeout=300)["state"] == "SUCCEEDED"
    final = exp.wait(timeout=600)
    assert final["state"] == "SUCCEEDED", final
    assert final["attempt"] == 2
    first = final["interruptions"][0]
    assert first["recoveredAt"] is not None
    assert first["resumedFromStep"] is not None and first["resumedFromStep"] >= checkpoint_at_preemption
    assert "resumed from step" in exp.logs()
