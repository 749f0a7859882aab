"""Leases in the store: which control-service replica leads, and the generation that fences the others.

Several replicas share one PostgreSQL store; one of them, the holder of the ``controller`` lease,
runs the controller. The rules are Kubernetes' leader election (client-go ``leaderelection``, the
``coordination.k8s.io`` Lease), kept in a table of the store beside what they protect:

- The holder renews the lease every ``retry_period`` (each renewal changes the record). A replica
  that sees the record unchanged for ``lease_duration`` of *its own* monotonic clock takes the
  lease over, so no two replicas' wall clocks are compared (clock skew between hosts does not
  matter; only their clock *rates* must agree, as in client-go).
- Every take-over is a compare-and-set on the record as the taker last saw it (generation and
  renewal count) and adds one to ``generation``: of two replicas taking over at once, one wins.
- **Fencing**: a replica that led once and was paused (a long GC, a frozen VM, a network
  partition) may resume believing it still leads. Its controller's writes are made inside
  :meth:`Store.fenced` (the check is the store's, beside its transactions): every transaction first reads the lease's generation (PostgreSQL: ``FOR
  SHARE``, so a take-over waits for the transaction, or the transaction sees the take-over) and
  rolls back with :class:`~rayfleet.errors.NotLeader` when it is no longer the generation the
  replica holds. A lease taken over therefore stops the old holder's decisions at its next write.
- A replica that stops cleanly releases the lease (holder ``''``), and another takes it at its
  next try instead of waiting ``lease_duration``.

This module is the store's side (records, compare-and-set);
:mod:`.leader` is the replica's loop. Times passed in are wall-clock stamps for people (when
acquired, last renewed); no decision reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Store

#: The lease whose holder runs the controller.
CONTROLLER = "controller"


@dataclass(frozen=True)
class LeaseRecord:
    name: str
    holder: str          # '' when released
    generation: int      # +1 at every change of holder
    renewals: int        # +1 at every renewal (a change the other replicas observe)
    acquired_at: float
    renewed_at: float

    @property
    def version(self) -> tuple[int, int]:
        """What a compare-and-set compares: the record as a replica observed it."""
        return self.generation, self.renewals


_COLS = "name, holder, generation, renewals, acquired_at, renewed_at"


class Leases:
    def __init__(self, store: Store):
        self.store = store

    def get(self, name: str) -> LeaseRecord | None:
        rows = self.store._q(f"SELECT {_COLS} FROM leases WHERE name=?", (name,))
        return LeaseRecord(*rows[0]) if rows else None

    def acquire(self, name: str, holder: str, seen: LeaseRecord | None, now: float) -> LeaseRecord | None:
        """Take the lease if it is still as ``seen`` (None: there was no record); the new record,
        or None when another replica changed it first."""
        with self.store._tx() as db:
            if seen is None:
                if db.execute("SELECT 1 FROM leases WHERE name=?", (name,)).fetchone():
                    return None
                db.execute(f"INSERT INTO leases ({_COLS}) VALUES (?,?,?,?,?,?)", (name, holder, 1, 0, now, now))
                return LeaseRecord(name, holder, 1, 0, now, now)
            generation = seen.generation + 1
            taken = db.execute("UPDATE leases SET holder=?, generation=?, renewals=0, acquired_at=?, renewed_at=? "
                               "WHERE name=? AND generation=? AND renewals=?",
                               (holder, generation, now, now, name, seen.generation, seen.renewals)).rowcount
            return LeaseRecord(name, holder, generation, 0, now, now) if taken == 1 else None

    def renew(self, lease: LeaseRecord, now: float) -> LeaseRecord | None:
        """Renew a lease this replica holds; None when it no longer holds it (taken over)."""
        with self.store._tx() as db:
            done = db.execute("UPDATE leases SET renewals=renewals+1, renewed_at=? WHERE name=? AND holder=? AND generation=?",
                              (now, lease.name, lease.holder, lease.generation)).rowcount
        if done != 1:
            return None
        return LeaseRecord(lease.name, lease.holder, lease.generation, lease.renewals + 1, lease.acquired_at, now)

    def release(self, lease: LeaseRecord, now: float) -> bool:
        """Give the lease up (a clean stop): the next replica takes it without waiting it out."""
        with self.store._tx() as db:
            return bool(db.execute("UPDATE leases SET holder='', renewals=renewals+1, renewed_at=? "
                                   "WHERE name=? AND holder=? AND generation=?",
                                   (now, lease.name, lease.holder, lease.generation)).rowcount)
