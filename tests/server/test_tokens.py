"""API tokens: only hashes are kept; plaintext exists once, in the answer to whoever minted it;
an admin mints and revokes through /api/v1/tokens and `rayfleet token`; the CLI finds its token
in --token, $RAYFLEET_TOKEN or the user's credentials file (never the data directory)."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from rayfleet.cli import app as cli_app
from rayfleet.cli.common import resolve
from rayfleet.errors import Forbidden, SpecError
from rayfleet.server.app import create_app
from rayfleet.server.tokens import (
    check_credentials_out,
    ensure_tokens,
    remove_legacy_credentials,
    write_credentials,
)


def test_the_store_and_data_dir_hold_no_plaintext_token(fleet, tmp_path):
    tokens = [fleet.creds["admin"], *fleet.creds["teams"].values()]
    assert len(tokens) == 1 + len(fleet.config.teams) and all(t.startswith("rf_") for t in tokens)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(t.encode() in data for t in tokens), f"{path} holds a plaintext token"
    assert fleet.store.check_token(tokens[0]).admin


def test_tokens_are_minted_once_and_a_new_team_gets_its_own(fleet):
    again = ensure_tokens(fleet.store, fleet.config)
    assert again == {"admin": None, "teams": {}}  # nothing new: the first tokens are not shown again
    team = next(iter(fleet.config.teams))
    gone = next(t for t in fleet.store.list_tokens() if t.team == team)
    fleet.store.revoke_token(gone.id)
    assert ensure_tokens(fleet.store, fleet.config)["teams"].keys() == {team}


def test_a_legacy_plaintext_file_is_removed_from_the_data_dir(tmp_path):
    (tmp_path / "credentials.json").write_text('{"admin": "rf_x"}')
    assert remove_legacy_credentials(tmp_path) and not (tmp_path / "credentials.json").exists()
    assert not remove_legacy_credentials(tmp_path)


def test_credentials_out_is_0600_merged_and_never_in_the_data_dir(tmp_path):
    out = tmp_path / "ops" / "creds.json"
    write_credentials(out, {"admin": "rf_a", "teams": {"team-a": "rf_1"}})
    write_credentials(out, {"admin": None, "teams": {"team-b": "rf_2"}})
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text()) == {"admin": "rf_a", "teams": {"team-a": "rf_1", "team-b": "rf_2"}}
    with pytest.raises(SpecError) as e:
        check_credentials_out(tmp_path / "data" / "c.json", tmp_path / "data")
    assert e.value.problems[0].field == "--credentials-out"
    check_credentials_out(out, tmp_path / "data")


def test_admin_mints_lists_and_revokes_tokens(api, admin, team_a):
    r = api.post("/api/v1/tokens", json={"team": "team-a", "label": "ci of team a"}, headers=admin)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["team"] == "team-a" and not made["admin"] and made["token"].startswith("rf_") and len(made["id"]) == 16
    new = {"Authorization": f"Bearer {made['token']}"}
    assert api.get("/api/v1/queues", headers=new).status_code == 200
    listed = api.get("/api/v1/tokens", headers=admin).json()
    assert made["id"] in {t["id"] for t in listed}
    assert made["token"] not in json.dumps(listed) and all("token" not in t for t in listed)
    r = api.delete(f"/api/v1/tokens/{made['id']}", headers=admin)
    assert r.status_code == 200 and r.json()["label"] == "ci of team a"
    assert api.get("/api/v1/queues", headers=new).status_code == 401
    assert api.delete(f"/api/v1/tokens/{made['id']}", headers=admin).status_code == 404


def test_only_an_admin_touches_tokens(api, team_a):
    assert api.post("/api/v1/tokens", json={"team": "team-a"}, headers=team_a).status_code == 403
    assert api.get("/api/v1/tokens", headers=team_a).status_code == 403
    assert api.delete("/api/v1/tokens/0123456789abcdef", headers=team_a).status_code == 403
    assert api.post("/api/v1/tokens", json={"team": "team-a"}).status_code == 401


@pytest.mark.parametrize("body, field", [
    ({"team": "no-such-team"}, "team"),
    ({}, "team"),
    ({"admin": True, "team": "team-a"}, "team"),
    ({"team": "team-a", "label": "x" * 101}, "label"),
    ({"team": "team-a", "extra": 1}, "extra"),
])
def test_bad_token_requests_name_the_field(api, admin, body, field):
    r = api.post("/api/v1/tokens", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert any(field in (p.get("field") or "") for p in r.json()["problems"]), r.json()


def test_the_last_admin_token_cannot_be_revoked(api, admin, fleet):
    admin_id = next(t.id for t in fleet.store.list_tokens() if t.admin)
    r = api.delete(f"/api/v1/tokens/{admin_id}", headers=admin)
    assert r.status_code == 409 and r.json()["field"] == "token_id"
    second = api.post("/api/v1/tokens", json={"admin": True, "label": "ops"}, headers=admin).json()
    assert api.delete(f"/api/v1/tokens/{admin_id}", headers={"Authorization": f"Bearer {second['token']}"}).status_code == 200
    assert api.get("/api/v1/tokens", headers=admin).status_code == 401


@pytest.fixture
def http_service(fleet):
    """The app over real HTTP (uvicorn in a thread), for the CLI."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(fleet, start_controller=False), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def test_rayfleet_token_create_list_revoke(http_service, fleet, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAYFLEET_TOKEN", raising=False)
    creds = tmp_path / "creds.json"
    write_credentials(creds, fleet.creds)
    monkeypatch.setenv("RAYFLEET_CREDENTIALS", str(creds))
    runner = CliRunner()
    r = runner.invoke(cli_app, ["token", "create", "--team", "team-b", "--label", "laptop", "--json", "--url", http_service])
    assert r.exit_code == 0, r.output
    made = json.loads(r.output)
    assert made["team"] == "team-b" and httpx.get(f"{http_service}/api/v1/queues", headers={"Authorization": f"Bearer {made['token']}"}).status_code == 200
    r = runner.invoke(cli_app, ["token", "list", "--json", "--url", http_service])
    assert r.exit_code == 0 and made["id"] in r.output and made["token"] not in r.output
    r = runner.invoke(cli_app, ["token", "revoke", made["id"], "--url", http_service])
    assert r.exit_code == 0 and "revoked" in r.output
    assert httpx.get(f"{http_service}/api/v1/queues", headers={"Authorization": f"Bearer {made['token']}"}).status_code == 401
    # a team token may not mint: the server's 403 comes back as Forbidden (main() prints it, exit 1)
    r = runner.invoke(cli_app, ["token", "create", "--team", "team-a", "--url", http_service, "--token", fleet.creds["teams"]["team-a"]])
    assert isinstance(r.exception, Forbidden) and "admin" in r.exception.message
    r = runner.invoke(cli_app, ["token", "create", "--url", http_service])
    assert r.exit_code == 2  # neither --team nor --admin


def test_the_cli_finds_its_token_flag_env_then_user_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYFLEET_HOME", str(tmp_path))
    monkeypatch.delenv("RAYFLEET_CREDENTIALS", raising=False)
    monkeypatch.delenv("RAYFLEET_TOKEN", raising=False)
    monkeypatch.setenv("RAYFLEET_URL", "http://x")
    assert resolve(None, None) == ("http://x", None)
    write_credentials(tmp_path / "credentials.json", {"admin": "rf_admin", "teams": {"team-a": "rf_a"}})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "credentials.json").write_text('{"admin": "rf_data_dir"}')  # never read
    assert resolve(None, None)[1] == "rf_admin" and resolve(None, None, "team-a")[1] == "rf_a"
    monkeypatch.setenv("RAYFLEET_TOKEN", "rf_env")
    assert resolve(None, None)[1] == "rf_env"
    assert resolve(None, "rf_flag")[1] == "rf_flag"
    assert os.environ["RAYFLEET_TOKEN"] == "rf_env"
