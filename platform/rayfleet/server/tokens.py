"""API tokens: one admin token and one per team, made on first start.

Only hashes are stored in the database. The plain tokens are written once to
``<data dir>/credentials.json`` (mode 0600) for the person who runs ``rayfleet up`` to hand out.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from ..config import PlatformConfig
from .store import Store


def new_token() -> str:
    return "rf_" + secrets.token_urlsafe(32)


def ensure_tokens(store: Store, config: PlatformConfig, credentials: Path) -> dict:
    """Create tokens for the admin and every team that has none; returns the credentials file content."""
    creds: dict = {"admin": None, "teams": {}}
    if credentials.exists():
        creds = json.loads(credentials.read_text())
    changed = False
    if not creds.get("admin") or store.check_token(creds["admin"]) is None:
        creds["admin"] = new_token()
        store.add_token(creds["admin"], team=None, admin=True, label="admin")
        changed = True
    for team in config.teams:
        tok = creds["teams"].get(team)
        if not tok or store.check_token(tok) is None:
            tok = new_token()
            store.add_token(tok, team=team, label=f"team {team}")
            creds["teams"][team] = tok
            changed = True
    if changed:
        tmp = credentials.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(creds, f, indent=2)
        tmp.replace(credentials)
    return creds
