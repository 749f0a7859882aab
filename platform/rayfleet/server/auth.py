"""Bearer-token auth and tenancy.

Tokens are per team (or admin), stored hashed. Sent as ``Authorization: Bearer <token>``; Ray's
own CLI in token mode (``RAY_AUTH_MODE=token RAY_AUTH_TOKEN=...``) sends the same header, or
``X-Ray-Authorization``, and both are accepted. No token: 401. A team token reaches only its
team's queues and jobs: anything else is 403. An admin token reaches everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ..errors import Forbidden, Unauthorized

_HEADERS = ("authorization", "x-ray-authorization")


@dataclass(frozen=True)
class Principal:
    team: str | None
    admin: bool
    label: str = ""

    def can_access(self, team: str | None) -> bool:
        return self.admin or (team is not None and team == self.team)

    def require(self, team: str | None, what: str) -> None:
        if not self.can_access(team):
            raise Forbidden(f"team {self.team!r} may not access {what} (owned by team {team!r})")

    def require_admin(self, what: str) -> None:
        if not self.admin:
            raise Forbidden(f"{what} needs an admin token")


def bearer_token(request: Request) -> str | None:
    for header in _HEADERS:
        value = request.headers.get(header)
        if value:
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def principal(request: Request) -> Principal:
    """FastAPI dependency: who is calling."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>' (or RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<token> for the ray CLI)")
    found = request.app.state.fleet.store.check_token(token)
    if found is None:
        raise Unauthorized("unknown or revoked token")
    return Principal(found.team, found.admin, found.label)
