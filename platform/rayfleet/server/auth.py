"""Bearer-token auth and tenancy.

Tokens are per team (or admin), stored hashed. Sent as ``Authorization: Bearer <token>``; Ray's
own CLI in token mode (``RAY_AUTH_MODE=token RAY_AUTH_TOKEN=...``) sends the same header, or
``X-Ray-Authorization``, and both are accepted. No token, or an unknown one: 401 (the Ray Jobs
API answers an unknown token 403, as Ray's dashboard does). A team token reaches only its team's
objects: another team's job or service is answered exactly as a missing one (404, the same body),
so names cannot be probed (:meth:`Principal.require_own`); one whose stored record is quarantined
too (:meth:`Principal.require_own_quarantined`). Names are unique across teams, so a submission
under another team's live name is refused, but with one answer whatever its spec and naming no
owner (:func:`name_taken`). Queues are platform config: submitting
into another team's queue is 403 naming the owner (:meth:`Principal.require`); reading it is 404.
An admin token reaches everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ..errors import Conflict, Forbidden, NotFound, Unauthorized

_HEADERS = ("authorization", "x-ray-authorization")


@dataclass(frozen=True)
class Principal:
    team: str | None
    admin: bool
    label: str = ""

    def can_access(self, team: str | None) -> bool:
        return self.admin or (team is not None and team == self.team)

    def require(self, team: str | None, what: str) -> None:
        """403 unless the caller may use ``what`` (platform config: a queue, a team's listing)."""
        if not self.can_access(team):
            raise Forbidden(f"team {self.team!r} may not access {what} (owned by team {team!r})")

    def require_own(self, team: str | None, kind: str, name: str) -> None:
        """Another team's object is reported exactly as a missing one (the store's NotFound)."""
        if not self.can_access(team):
            raise not_found(kind, name)

    def require_own_quarantined(self, err: Exception, kind: str, name: str) -> None:
        """A quarantined record of another team is reported as a missing one too (its 409 would
        name the decode error and so the record's contents); the caller re-raises ``err`` otherwise."""
        self.require_own(getattr(err, "team", None), kind, name)

    def require_admin(self, what: str) -> None:
        if not self.admin:
            raise Forbidden(f"{what} needs an admin token")


class UnknownToken(Unauthorized):
    """A token was sent but is not one of this service's (or was revoked)."""


def not_found(kind: str, name: str) -> NotFound:
    """The error for a missing object, word for word as ``Store.get`` raises it."""
    return NotFound(f"{kind} {name!r} not found", field="name")


def name_taken(kind: str, name: str) -> Conflict:
    """The answer to a submission under a name another team's live object holds: the same whatever
    the submitted spec (an answer that differed would confirm a guess of the other team's spec),
    naming neither that team nor anything of its object."""
    return Conflict(f"{kind} name {name!r} is taken; names are unique across teams: choose another metadata.name",
                    field="metadata.name")


def bearer_token(request: Request) -> str | None:
    for header in _HEADERS:
        value = request.headers.get(header)
        if value:
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


MISSING_TOKEN = ("rayfleet needs a bearer token: send 'Authorization: Bearer <token>' "
                 "(the ray CLI: RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<token>)")


def principal(request: Request) -> Principal:
    """FastAPI dependency: who is calling."""
    return principal_of_token(request.app.state.fleet.store, bearer_token(request))


def principal_of_token(store, token: str | None) -> Principal:
    """The caller behind a token (from a header or a websocket), or Unauthorized / UnknownToken."""
    if token is None:
        raise Unauthorized(MISSING_TOKEN)
    found = store.check_token(token)
    if found is None:
        raise UnknownToken("rayfleet does not know this token (unknown or revoked)")
    return Principal(found.team, found.admin, found.label)
