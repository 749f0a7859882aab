"""Shared test settings. Ray-starting fixtures live next to the tests that need them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "cluster_configs"
CRDS = ROOT.parent / "shared" / "crds"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def local_config_path() -> Path:
    return CONFIGS / "local.yaml"
