"""The one gang-fit rule (``backends.placement.gang_fit``): what a worker gets of a host on each
backend, how many hosts and slices a gang takes, and which gang field is to blame when it can never fit."""

from __future__ import annotations

from rayfleet.api import Accelerator, PoolSpec
from rayfleet.backends.placement import POD_HOST_FRACTION, gang_fit, host_offer

GiB = 2**30
H100 = PoolSpec(accelerator=Accelerator.H100, accelerators_per_host=8, machine_type="a3-highgpu-8g", cpu_per_host=200,
                memory_per_host=1800 * GiB, max_replicas=2)
V5E = PoolSpec(accelerator=Accelerator.TPU_V5E, accelerators_per_host=4, machine_type="ct5lp-hightpu-4t", tpu_topology="2x4",
               cpu_per_host=112, max_replicas=3)


def test_a_kuberay_worker_pod_gets_a_fraction_of_cpu_and_memory_and_every_accelerator():
    assert host_offer(H100) == H100.host_resources()
    pod = host_offer(H100, "kuberay")
    assert pod["cpu"] == int(200_000 * POD_HOST_FRACTION) and pod["nvidia.com/gpu"] == 8
    whole_host = {"cpu": 200_000}
    assert gang_fit(H100, 1, whole_host).ok
    fit = gang_fit(H100, 1, whole_host, backend="kuberay", pool="h100")
    assert [f for f, _ in fit.problems] == ["resourcesPerWorker"] and "pool 'h100'" in fit.problems[0][1]


def test_hosts_and_slices_of_a_gang():
    assert (gang_fit(H100, 4, {"nvidia.com/gpu": 4}).hosts, gang_fit(H100, 4, {"nvidia.com/gpu": 4}).slices) == (2, 2)
    spread = gang_fit(H100, 2, {"nvidia.com/gpu": 1}, "STRICT_SPREAD")
    assert spread.ok and spread.hosts == 2
    pack = gang_fit(H100, 8, {"nvidia.com/gpu": 1}, "STRICT_PACK")
    assert pack.ok and pack.hosts == 1 and pack.per_host == 8
    # a multi-host TPU gang takes whole slices
    tpu = gang_fit(V5E, 3, {"google.com/tpu": 4}, backend="kuberay")
    assert tpu.ok and (tpu.hosts, tpu.slices, tpu.strategy) == (4, 2, "STRICT_SPREAD")


def test_the_field_to_blame():
    assert [f for f, _ in gang_fit(H100, 2, {"nvidia.com/gpu": 8}, "STRICT_PACK").problems] == ["placementStrategy"]
    assert [f for f, _ in gang_fit(H100, 3, {"nvidia.com/gpu": 1}, "STRICT_SPREAD").problems] == ["placementStrategy"]
    assert [f for f, _ in gang_fit(H100, 3, {"nvidia.com/gpu": 8}).problems] == ["workers"]
    # the local backend pins a multi-host TPU gang to one slice; KubeRay spans up to the pool's slices
    local = gang_fit(V5E, 3, {"google.com/tpu": 4}, pool="v5e")
    assert local.problems == (("workers", "STRICT_SPREAD puts each of the 3 workers on its own host, but one slice of pool 'v5e' (2 hosts) has 2"),)
    kuberay = gang_fit(V5E, 7, {"google.com/tpu": 4}, pool="v5e", backend="kuberay")
    assert kuberay.problems == (("workers", "STRICT_SPREAD puts each of the 7 workers on its own host, but pool 'v5e' (3 slices of 2 hosts: 6 hosts) has 6"),)
