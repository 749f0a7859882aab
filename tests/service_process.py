"""The control service as its own process (``rayfleet serve``) on a free port, for tests that
drive it through real HTTP: ``kill9()``/``start()`` simulate a crash and a restart. ``store``: a
``postgresql://`` URL, handed over in $RAYFLEET_STORE (default: the data directory's SQLite file);
``backend``: ``--backend`` (sim: no Ray)."""

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

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayfleetService:
    def __init__(self, data_dir: Path, config: Path, *, store: str | None = None, backend: str | None = None):
        self.data_dir = data_dir
        self.config = config
        self.store = store
        self.backend = backend
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = data_dir.parent / "service.log"
        # the operator's copy of the tokens minted at the first start, outside the data directory
        self.credentials = data_dir.parent / "credentials.json"

    def start(self, timeout: float = 300) -> None:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAYFLEET_LOG_LEVEL": "INFO"}
        if self.store:
            env["RAYFLEET_STORE"] = self.store
        backend = ["--backend", self.backend] if self.backend else []
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rayfleet.cli", "serve", "--config", str(self.config), "--data-dir", str(self.data_dir),
                 "--port", str(self.port), "--credentials-out", str(self.credentials), *backend],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
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
