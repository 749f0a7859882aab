"""A control service over a real SQLite file and the real config, with its controller not running:
the HTTP layer validates, authorises and stores; nothing here reaches Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from http_server import serving

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
    with serving(create_app(fleet, start_controller=False)) as base:
        yield base
