"""Capacity fallback through the control service: quota admits a gang on its compute class's first
flavor, the machines are not there, and after the step's ``waitForCapacity`` the attempt is given
up and the job runs on the next flavor.

The platform (tests/e2e/fleet.yaml): team-c's queue has quota for 4 T4s and 4 L4s and the compute
class ``t4-then-l4`` (T4 for 6s, a request not served in 2.5s cancelled and resubmitted; then L4).
One of the two T4 hosts is lost (its raylet killed, as when a reserved machine goes into
maintenance), so a gang of 2 workers x 2 GPUs has quota on T4 but not the hosts.
"""

from __future__ import annotations

import time

import pytest

import rayfleet
from rayfleet.backends import make_backend
from rayfleet.config import load_config

pytestmark = pytest.mark.slow


def test_a_gang_without_capacity_on_its_first_flavor_falls_back_to_the_next(fleet_service):
    backend = make_backend(load_config([fleet_service.config]), fleet_service.data_dir)
    lost = backend.host_names("t4")[-1]
    backend.kill_host(lost)
    try:
        c = rayfleet.connect(fleet_service.url, token=fleet_service.token("team-c"))
        job = c.submit(rayfleet.TrainJob.model_validate({
            "metadata": {"name": "needs-4-gpus"},
            "spec": {"queue": "team-c", "entrypoint": "sleep 1",
                     "gang": {"workers": 2, "resourcesPerWorker": {"cpu": "500m", "nvidia.com/gpu": 2}}},
        }))
        final = job.wait(timeout=400)
        assert final["state"] == "SUCCEEDED", final
        assert (final["flavor"], final["pool"]) == ("l4", "l4")
        assert final["capacitySkipped"] == [] and final.get("capacityWait") is None  # cleared once it ran
        assert final["interruptions"] == [] and final["restarts"] == 0  # nothing ran on T4: no interruption, no failure

        events = job.events()
        admitted = [e["data"]["flavor"] for e in events if e["type"] == "Admitted"]
        resubmits = [e for e in events if e["type"] == "CapacityResubmit"]
        # T4, its request resubmitted (2.5s) until the step's 6s ran out, then L4
        assert len(resubmits) >= 1 and admitted == ["t4"] * (len(resubmits) + 1) + ["l4"], admitted
        assert final["attempt"] == len(admitted)
        assert all(e["data"]["flavor"] == "t4" and "not served after" in e["message"] for e in resubmits)
        first_launch = next(e for e in events if e["type"] == "Launched")
        fell_back = next(e for e in events if e["type"] == "CapacityFallback")
        assert fell_back["data"]["flavor"] == "t4"
        assert "no capacity on flavor t4 (pool t4) after" in fell_back["message"] and "next: l4" in fell_back["message"]
        assert fell_back["ts"] - first_launch["ts"] >= 6  # counted from the first launch on T4, across resubmissions
        assert fell_back["ts"] > resubmits[-1]["ts"]
    finally:
        backend.up()  # the lost host comes back for the tests that follow
    deadline = time.monotonic() + 60
    while backend.capacity()["t4"].ready_hosts < 2:
        assert time.monotonic() < deadline, backend.capacity()
        time.sleep(1)
