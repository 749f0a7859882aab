"""Autoscaling under quota on real Ray: Serve scales up to what quota grants and no further, falls
back when load stops, and a reclaim drains a borrowed group without failing requests.

The service is the single-host torch classifier (``serve_apps.classifier``); the pool has 3 hosts,
so the limit of 2 groups comes from the grant, not from capacity.
"""

from __future__ import annotations

import time

import pytest
from serve_helpers import Controller, Load, make_service

from rayfleet.api import ServiceState

pytestmark = pytest.mark.slow

BODY = {"inputs": [[5.1, 3.5, 1.4, 0.2]], "work_ms": 300}


@pytest.fixture(scope="module")
def classifier(deployer):
    svc = make_service(
        "clf", "serve_apps.classifier:app", hosts=1, min_r=1, max_r=3,
        targetOngoingRequests=1, upscaleDelay=1, downscaleDelay=2,
    )
    with Controller(deployer, svc, grant=2) as ctl:
        ctl.wait(lambda r: r.running == 1, 240, "first group running")
        yield ctl
    deployer.delete(svc.name)


def test_load_scales_up_to_the_grant_and_no_further_then_back(classifier, deployer, serve_cluster):
    ctl = classifier
    url = ctl.last.url + "/"
    load = Load(url, BODY, clients=6).start()
    try:
        rep = ctl.wait(lambda r: r.running == 2 and r.wanted == 3, 240, "2 groups running, 3 wanted")
        assert rep.granted == 2 and rep.cap == 2
        assert "1 group(s) wanted beyond quota: 2 granted" in rep.message
        # Load still wants 3 and a third host is free, but the grant holds Serve at 2.
        t0 = time.monotonic()
        time.sleep(6)
        window = [r for t, r in ctl.reports if t >= t0]
        assert window and max(r.target for r in window) == 2 and max(r.running for r in window) == 2
        assert all(r.wanted == 3 for r in window)
        st = deployer.status("clf")
        assert st.cap == 2 and len(st.replicas) == 2
        assert len({r.node_id for r in st.replicas}) == 2 and len(serve_cluster.hosts_of("l4")) == 3
    finally:
        load.stop()
    assert not load.failures(), load.failures()[:5]
    rep = ctl.wait(lambda r: r.running == 1 and r.wanted == 1 and r.target == 1, 120, "back to 1 group")
    assert rep.state is ServiceState.RUNNING


def test_reclaim_drains_a_borrowed_group_without_failing_requests(classifier, deployer):
    ctl = classifier
    ctl.grant = 2
    load = Load(ctl.last.url + "/", BODY, clients=6).start()
    try:
        ctl.wait(lambda r: r.running == 2, 240, "2 groups running again")
        time.sleep(1)
        ctl.grant = 1  # the lender reclaims: one group must go
        rep = ctl.wait(lambda r: r.cap == 1 and r.target == 1, 30, "cap lowered to the grant")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = deployer.status("clf")
            if len(st.replicas) == 1 and st.running == 1:
                break
            time.sleep(0.2)
        assert len(st.replicas) == 1 and st.running == 1, st
        time.sleep(3)  # the remaining group carries the load
    finally:
        load.stop()
    assert len(load.results) > 20
    assert not load.failures(), load.failures()[:5]
    rep = ctl.last
    assert (rep.granted, rep.running) == (1, 1)
    assert rep.wanted == 3 and "wanted beyond quota: 1 granted" in rep.message
