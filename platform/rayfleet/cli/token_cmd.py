"""``rayfleet token create | list | revoke``: API tokens, for an admin (the caller's token is
found as for every command: --token, $RAYFLEET_TOKEN, then the admin token of the user's
credentials file)."""

from __future__ import annotations

import datetime

import typer
from rich.table import Table

from .common import TokenOpt, UrlOpt, connect
from .output import console, print_json

app = typer.Typer(no_args_is_help=True)


@app.command("create")
def create(
    team: str = typer.Option(None, "--team", help="The team the new token acts for."),
    admin: bool = typer.Option(False, "--admin", help="An admin token (no --team)."),
    label: str = typer.Option("", "--label", help="Whose token this is (shown by `token list`)."),
    as_json: bool = typer.Option(False, "--json"),
    url: str = UrlOpt, token: str = TokenOpt,
) -> None:
    """Mint a token and print it: this is its only copy (rayfleet keeps its hash)."""
    if admin == (team is not None):
        console.print("give exactly one of --team TEAM or --admin")
        raise typer.Exit(2)
    made = connect(url, token).create_token(team=team, admin=admin, label=label)
    if as_json:
        print_json(made)
        return
    who = "admin" if made["admin"] else f"team {made['team']}"
    console.print(f"{who} token {made['id']} ({made['label']}), shown once:\n{made['token']}")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json"), url: str = UrlOpt, token: str = TokenOpt) -> None:
    """Tokens: id, team, admin, label, created (never a token itself)."""
    tokens = connect(url, token).tokens()
    if as_json:
        print_json(tokens)
        return
    t = Table("id", "team", "admin", "label", "created")
    for k in tokens:
        created = datetime.datetime.fromtimestamp(k["createdAt"], datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        t.add_row(k["id"], k["team"] or "-", "yes" if k["admin"] else "", k["label"], created)
    console.print(t)


@app.command("revoke")
def revoke(token_id: str = typer.Argument(..., help="The token's id (from `token list` or `token create`)."),
           url: str = UrlOpt, token: str = TokenOpt) -> None:
    """Revoke a token: it is refused from now on."""
    gone = connect(url, token).revoke_token(token_id)
    console.print(f"revoked token {gone['id']} ({gone['label']})")
