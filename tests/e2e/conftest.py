"""A real rayfleet for end-to-end tests: the control service as its own process (``rayfleet serve``)
on a free port, over a real local Ray cluster, driven through real HTTP, the SDK and the real
``ray`` CLI. Started once per session; ``kill9()``/``start()`` simulate a crash and a restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rayfleet.backends import make_backend
from rayfleet.config import load_config

CONFIG = Path(__file__).with_name("fleet.yaml")
ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayfleetService:
    def __init__(self, data_dir: Path, config: Path = CONFIG):
        self.data_dir = data_dir
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = data_dir.parent / "service.log"
        # the operator's copy of the tokens minted at the first start, outside the data directory
        self.credentials = data_dir.parent / "credentials.json"

    def start(self, timeout: float = 300) -> None:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAYFLEET_LOG_LEVEL": "INFO"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rayfleet.cli", "serve", "--config", str(self.config), "--data-dir", str(self.data_dir),
                 "--port", str(self.port), "--credentials-out", str(self.credentials)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"service exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"rayfleet did not come up: {self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @property
    def creds(self) -> dict:
        return json.loads(self.credentials.read_text())

    def token(self, team: str | None = None) -> str:
        c = self.creds
        return c["teams"][team] if team else c["admin"]

    def client(self, team: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token(team)}"}, timeout=60)

    def ray(self, *args: str, team: str = "team-a", timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """The real ``ray`` CLI, in token mode with a team token."""
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token(team), "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        return subprocess.run([RAY, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)

    def wait_state(self, name: str, states: set[str], team: str | None = None, timeout: float = 300) -> dict:
        with self.client(team) as c:
            deadline = time.monotonic() + timeout
            while True:
                job = c.get(f"/api/v1/jobs/{name}").json()
                if job["status"]["state"] in states:
                    return job
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} is {job['status']['state']} after {timeout}s: {job['status']['message']}")
                time.sleep(0.5)


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
