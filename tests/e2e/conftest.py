"""A real rayfleet for end-to-end tests: the control service as its own process (``rayfleet serve``,
tests/service_process.py) on a free port, over a real local Ray cluster, driven through real HTTP,
the SDK and the real ``ray`` CLI. Started once per session; ``kill9()``/``start()`` simulate a
crash and a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_process import RayfleetService, free_port

from rayfleet.backends import make_backend
from rayfleet.config import load_config

CONFIG = Path(__file__).with_name("fleet.yaml")


@pytest.fixture(scope="session")
def fleet_service(tmp_path_factory):
    root = tmp_path_factory.mktemp("rayfleet-e2e")
    # the test platform, with a free port for Serve's proxy
    config = root / "fleet.yaml"
    config.write_text(CONFIG.read_text().replace("headCpus: 4}", f"headCpus: 4, servePort: {free_port()}}}"))
    svc = RayfleetService(root / "data", config)
    svc.start()
    yield svc
    svc.stop()
    make_backend(load_config([config]), svc.data_dir).down()
