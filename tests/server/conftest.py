"""A control service over a real SQLite file and the real config, with its controller not running:
the HTTP layer validates, authorises and stores; nothing here reaches Ray."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from rayfleet.backends import make_backend
from rayfleet.config import load_config
from rayfleet.server.app import create_app
from rayfleet.server.main import assemble
from rayfleet.server.tokens import ensure_tokens

LOCAL = Path(__file__).resolve().parents[2] / "cluster_configs" / "local.yaml"


@pytest.fixture
def fleet(tmp_path):
    cfg = load_config([LOCAL])
    f = assemble(cfg, make_backend(cfg, tmp_path), tmp_path)
    f.creds = ensure_tokens(f.store, cfg)  # the plaintext tokens minted now: their only copy
    yield f
    f.close()


@pytest.fixture
def api(fleet):
    with TestClient(create_app(fleet, start_controller=False)) as client:
        yield client


@pytest.fixture
def admin(fleet):
    return {"Authorization": f"Bearer {fleet.creds['admin']}"}


@pytest.fixture
def team_a(fleet):
    return {"Authorization": f"Bearer {fleet.creds['teams']['team-a']}"}


@pytest.fixture
def team_b(fleet):
    return {"Authorization": f"Bearer {fleet.creds['teams']['team-b']}"}


@pytest.fixture
def url(fleet):
    """The service (controller not started) over real HTTP: uvicorn in a thread on a free port."""
    server = uvicorn.Server(uvicorn.Config(create_app(fleet, start_controller=False), host="127.0.0.1", port=0,
                                           log_level="warning", ws="auto"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
