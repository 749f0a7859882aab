"""Where the CLI finds the control service and its token."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from ..client import FleetClient

DEFAULT_URL = "http://127.0.0.1:8265"


def home() -> Path:
    """rayfleet's local state: ``$RAYFLEET_HOME``, default ``~/.rayfleet``."""
    return Path(os.environ.get("RAYFLEET_HOME") or Path.home() / ".rayfleet")


def data_dir() -> Path:
    return home() / "data"


def credentials_path() -> Path:
    """The user's credentials file: ``$RAYFLEET_CREDENTIALS``, default ``$RAYFLEET_HOME/credentials.json``
    (JSON ``{"admin": token, "teams": {team: token}}``, as ``rayfleet up --credentials-out`` writes it;
    never inside the data directory, which holds no secret)."""
    return Path(os.environ.get("RAYFLEET_CREDENTIALS") or home() / "credentials.json")


def credentials() -> dict:
    path = credentials_path()
    return json.loads(path.read_text()) if path.exists() else {}


def resolve(url: str | None, token: str | None, team: str | None = None) -> tuple[str, str | None]:
    """URL: --url, $RAYFLEET_URL, the running local service, the default. Token: --token,
    $RAYFLEET_TOKEN, then the user's credentials file (:func:`credentials_path`; the team's token
    with --team, else the admin token)."""
    if url is None:
        url = os.environ.get("RAYFLEET_URL")
    if url is None:
        svc = data_dir() / "service.json"
        url = json.loads(svc.read_text())["url"] if svc.exists() else DEFAULT_URL
    if token is None:
        token = os.environ.get("RAYFLEET_TOKEN")
    if token is None:
        creds = credentials()
        token = creds.get("teams", {}).get(team) if team else creds.get("admin")
    return url, token


UrlOpt = typer.Option(None, "--url", help="Control service URL (default: $RAYFLEET_URL or the local service).")
TokenOpt = typer.Option(None, "--token", help="API token (default: $RAYFLEET_TOKEN, else the admin token of $RAYFLEET_CREDENTIALS).")
TeamOpt = typer.Option(None, "--team", help="Use this team's token from $RAYFLEET_CREDENTIALS (default $RAYFLEET_HOME/credentials.json).")


def connect(url: str | None, token: str | None, team: str | None = None) -> FleetClient:
    u, t = resolve(url, token, team)
    return FleetClient(u, token=t)
