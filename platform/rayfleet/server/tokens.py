"""API tokens: an admin token and one per team, minted on first start; more by an admin.

The service keeps only SHA-256 hashes (in the store's ``tokens`` table). A plaintext token exists
once: in the answer to whoever minted it. On first start that is the operator: ``rayfleet serve
--credentials-out FILE`` (which ``rayfleet up`` uses) writes the tokens it minted to FILE, mode
0600, and ``rayfleet up`` prints them. FILE must be outside the data directory. Later tokens come
from ``POST /api/v1/tokens`` (``rayfleet token create``), revoked by ``DELETE /api/v1/tokens/<id>``.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from ..config import PlatformConfig
from ..errors import FieldProblem, SpecError
from .store import Store

#: What data directories written by earlier versions held in plaintext; removed on start.
LEGACY_CREDENTIALS = "credentials.json"


def new_token() -> str:
    return "rf_" + secrets.token_urlsafe(32)


#: A bootstrap admin token given to the service (a Kubernetes Secret on GKE): registered at start,
#: and then the service mints no token itself (team tokens come from ``rayfleet token create``).
ADMIN_TOKEN_ENV = "RAYFLEET_ADMIN_TOKEN"
MIN_TOKEN_CHARS = 32


def check_admin_token(token: str) -> None:
    """SpecError (exit 2) for a bootstrap token too short to be a secret."""
    if len(token) < MIN_TOKEN_CHARS or not token.isprintable() or any(c.isspace() for c in token):
        raise SpecError(FieldProblem(field=ADMIN_TOKEN_ENV, problem=(
            f"must be at least {MIN_TOKEN_CHARS} printable characters without spaces (e.g. `openssl rand -base64 32`), "
            f"got {len(token)} characters")))


def register_admin_token(store: Store, token: str) -> bool:
    """Register ``token`` as an admin token unless it is one already; True when it was added."""
    check_admin_token(token)
    existing = store.check_token(token)
    if existing is not None and existing.admin:
        return False
    store.add_token(token, team=None, admin=True, label=f"bootstrap admin (${ADMIN_TOKEN_ENV})")
    return True


def ensure_tokens(store: Store, config: PlatformConfig) -> dict:
    """Mint an admin token if there is no admin token, and a token for every configured team that
    has none. Returns the plaintext of what was minted now, ``{"admin": str | None, "teams":
    {team: str}}``: the only time these exist outside their holders' hands."""
    minted: dict = {"admin": None, "teams": {}}
    have = store.list_tokens()
    if not any(t.admin for t in have):
        tok = new_token()
        if store.add_first_token(tok, team=None, admin=True, label="admin"):   # (another replica may have been first)
            minted["admin"] = tok
    teams_with_token = {t.team for t in have if not t.admin}
    for team in config.teams:
        if team not in teams_with_token:
            tok = new_token()
            if store.add_first_token(tok, team=team, label=f"team {team}"):
                minted["teams"][team] = tok
    return minted


def check_credentials_out(path: Path, data_dir: Path) -> None:
    """``--credentials-out`` must not lie in the data directory (nothing there holds a secret)."""
    p, d = path.expanduser().resolve(), data_dir.expanduser().resolve()
    if p == d or d in p.parents:
        raise SpecError(FieldProblem(field="--credentials-out", problem=f"{path} is inside the data directory {data_dir}; choose a file outside it"))


def write_credentials(path: Path, minted: dict) -> None:
    """Merge freshly minted tokens into the operator's credentials file (mode 0600)."""
    if not minted.get("admin") and not minted.get("teams"):
        return
    current: dict = {"admin": None, "teams": {}}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            pass
    if minted.get("admin"):
        current["admin"] = minted["admin"]
    current.setdefault("teams", {}).update(minted.get("teams") or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(current, f, indent=2)
    tmp.replace(path)


def remove_legacy_credentials(data_dir: Path) -> bool:
    """Delete a plaintext credentials file an earlier version left in the data directory (its
    tokens stay valid: their hashes are in the store)."""
    legacy = data_dir / LEGACY_CREDENTIALS
    if legacy.exists():
        legacy.unlink()
        return True
    return False
