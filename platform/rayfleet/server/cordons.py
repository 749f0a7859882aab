"""Cordoned clusters, kept in the store (several Cluster documents; :mod:`rayfleet.backends.cluster_set`).

An admin cordons a cluster through the API (``rayfleet cluster cordon NAME [--drain]``); the
controller cordons one that stopped answering, and lifts its own cordons when it answers again
(:mod:`rayfleet.capacity.clusters`). Every replica's controller reads them from here each pass,
so a cordon outlives restarts and leader changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Store


@dataclass(frozen=True)
class CordonRecord:
    name: str
    drain: bool
    reason: str
    auto: bool       # set by the controller (not answering), lifted by it
    since: float


class Cordons:
    def __init__(self, store: Store):
        self.store = store

    def all(self) -> dict[str, CordonRecord]:
        rows = self.store._q("SELECT name, drain, reason, auto, since FROM cluster_cordons ORDER BY name")
        return {r[0]: CordonRecord(r[0], bool(r[1]), r[2], bool(r[3]), r[4]) for r in rows}

    def set(self, name: str, *, drain: bool, reason: str, auto: bool, now: float) -> CordonRecord:
        """Cordon ``name`` (again: ``drain`` and the reason are replaced, the time kept), with an event."""
        with self.store._tx() as db:
            row = db.execute("SELECT since FROM cluster_cordons WHERE name=?", (name,)).fetchone()
            since = row[0] if row else now
            if row:
                db.execute("UPDATE cluster_cordons SET drain=?, reason=?, auto=? WHERE name=?", (int(drain), reason, int(auto), name))
            else:
                db.execute("INSERT INTO cluster_cordons (name, drain, reason, auto, since) VALUES (?,?,?,?,?)",
                           (name, int(drain), reason, int(auto), now))
            what = "cordoned and drained" if drain else "cordoned"
            self.store._event(db, now, "Cluster", name, None, "ClusterDrained" if drain else "ClusterCordoned",
                              f"cluster {name} {what}{' automatically' if auto else ''}: {reason}".rstrip(": "),
                              {"drain": drain, "auto": auto})
        return CordonRecord(name, drain, reason, auto, since)

    def remove(self, name: str, *, reason: str, now: float) -> bool:
        """Uncordon ``name``; whether it was cordoned."""
        with self.store._tx() as db:
            gone = db.execute("DELETE FROM cluster_cordons WHERE name=?", (name,)).rowcount
            if gone:
                self.store._event(db, now, "Cluster", name, None, "ClusterUncordoned", f"cluster {name} uncordoned: {reason}", {})
        return bool(gone)
