"""``/api/v1/tokens``: an admin mints and revokes API tokens. The plaintext of a token is in the
answer to its ``POST`` and nowhere else; the service keeps its hash (:mod:`rayfleet.server.tokens`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import Conflict, FieldProblem, NotFound, SpecError
from .auth import Principal, principal
from .store import TOKEN_ID_LEN, TokenRecord, hash_token
from .tokens import new_token

router = APIRouter(prefix="/api/v1")
Caller = Annotated[Principal, Depends(principal)]


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str | None = Field(default=None, description="The team the token acts for (a team of the platform config); none for an admin token.")
    admin: bool = Field(default=False, description="An admin token: reaches every team's objects and these endpoints.")
    label: str = Field(default="", max_length=100, description="Free text that says whose token this is (shown by GET).")


def _wire(t: TokenRecord) -> dict[str, Any]:
    return {"id": t.id, "team": t.team, "admin": t.admin, "label": t.label, "createdAt": t.created_at}


@router.get("/tokens", summary="Tokens (admin): id, team, admin, label; never a token itself", tags=["tokens"])
def list_tokens(request: Request, caller: Caller) -> list[dict[str, Any]]:
    caller.require_admin("listing tokens")
    return [_wire(t) for t in request.app.state.fleet.store.list_tokens()]


@router.post("/tokens", status_code=201, summary="Mint a token (admin); its plaintext is in this answer only", tags=["tokens"])
def create_token(body: TokenRequest, request: Request, caller: Caller) -> dict[str, Any]:
    caller.require_admin("minting tokens")
    fleet = request.app.state.fleet
    if body.admin and body.team is not None:
        raise SpecError(FieldProblem(field="team", problem="an admin token acts for every team; leave team out"))
    if not body.admin:
        if body.team is None:
            raise SpecError(FieldProblem(field="team", problem="a team token needs a team"))
        if body.team not in fleet.config.teams:
            raise SpecError(FieldProblem(field="team", problem=f"unknown team {body.team!r}; teams: {sorted(fleet.config.teams)}"))
    token = new_token()
    label = body.label or ("admin" if body.admin else f"team {body.team}")
    fleet.store.add_token(token, team=body.team, admin=body.admin, label=label)
    tid = hash_token(token)[:TOKEN_ID_LEN]
    rec = next(t for t in fleet.store.list_tokens() if t.id == tid)
    return {**_wire(rec), "token": token}


@router.delete("/tokens/{token_id}", summary="Revoke a token (admin); it stops working at once", tags=["tokens"])
def revoke_token(token_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    caller.require_admin("revoking tokens")
    store = request.app.state.fleet.store
    target = next((t for t in store.list_tokens() if t.id == token_id), None)
    if target is None:
        raise NotFound(f"no token with id {token_id!r}", field="token_id")
    if target.admin and sum(t.admin for t in store.list_tokens()) == 1:
        raise Conflict("this is the last admin token; mint another admin token before revoking it", field="token_id")
    store.revoke_token(token_id)
    return _wire(target)
