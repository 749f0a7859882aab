"""Which database a store opens: a ``postgresql://`` URL or a SQLite file (``--store``,
$RAYFLEET_STORE), and the :class:`Engine` protocol both engines keep (:mod:`.store_sqlite`,
:mod:`.store_postgres`)."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any, Protocol

from .store_sqlite import SqliteEngine


class Engine(Protocol):
    """What the store needs of a database (:class:`.store_sqlite.SqliteEngine`,
    :class:`.store_postgres.PostgresEngine`)."""

    name: str
    migrations: builtins.list[str]
    storage_errors: tuple[type[BaseException], ...]   # the driver's errors that fail a whole transaction
    db: Any                                            # the writer's connection: execute(sql, args) -> cursor
    guard: Any                                         # health() -> None or the fault's reason

    def describe(self) -> str: ...
    def indexed_by(self, index: str) -> str: ...
    def lock_kind(self, db: Any, kind: str) -> None: ...
    def lock_schema(self, db: Any) -> None: ...
    def for_share(self) -> str: ...
    def begin(self) -> Any: ...
    def end(self, exc: BaseException | None) -> None: ...
    def translate(self, exc: BaseException) -> Exception | None: ...
    def open_readers(self) -> None: ...
    def read(self, query: str, args: tuple | builtins.list) -> builtins.list[tuple] | None: ...
    def close(self) -> None: ...


#: The environment variable that names the store when ``--store`` does not.
STORE_ENV = "RAYFLEET_STORE"


def is_url(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL database (else it is a SQLite file's path)."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def store_target(store: str | None, data_dir: Path) -> str | Path:
    """What ``--store`` (or $RAYFLEET_STORE) names: a ``postgresql://`` URL, or a SQLite file's
    path; nothing: the SQLite file in the data directory. Any other URL is a SpecError (exit 2)."""
    if not store:
        return data_dir / "rayfleet.db"
    if is_url(store):
        return store
    if "://" in store:
        from ..errors import FieldProblem, SpecError

        scheme = store.split("://", 1)[0]
        raise SpecError(FieldProblem(field="--store", problem=(
            f"must be a postgresql:// URL or a SQLite file's path, got a {scheme}:// URL")))
    return Path(store)


def open_engine(target: str | Path) -> Engine:
    """The engine for a ``postgresql://`` URL, else for a SQLite file at the path ``target``."""
    if is_url(target):
        from .store_postgres import PostgresEngine  # psycopg is loaded only for a PostgreSQL store

        return PostgresEngine(str(target))
    return SqliteEngine(target)
