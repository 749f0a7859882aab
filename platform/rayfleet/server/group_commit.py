"""Group commit: writes that arrive from many threads at once share one transaction and one fsync.

The store commits durably (SQLite's ``synchronous=FULL``, PostgreSQL's ``synchronous_commit``), so every transaction costs a WAL fsync, and one
writer at a time holds the store's lock. Under a burst of submissions (many API threads, each
creating one job) most of a create's time is that fsync, spent while the others wait for the
lock. Here a write is queued; the first thread to get the lock becomes the *leader*, takes every
write queued so far and runs them in one transaction, each inside its own savepoint (a write that
raises, a name already taken, is rolled back alone and its thread gets its error), then commits
once; the threads whose writes it carried wake up to their results without a transaction of their
own. (The same idea as PostgreSQL's group commit and etcd's batched raft proposals; in the
literature, *flat combining*.)

Every caller still returns only after its write is committed (or has failed), so an acknowledged
write survives ``kill -9`` exactly as before. A failure of the transaction itself (the disk full,
the file gone: the store's storage faults) is every carried write's error.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any


class _Write:
    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[Any], Any]):
        self.fn = fn
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """``lock``: the store's writer lock; ``transaction``: opens one transaction under it (commits
    when its block ends, rolls back if an exception leaves it); ``storage_errors``: the database
    driver's errors that are the storage's (they fail the whole transaction, not one write)."""

    def __init__(self, lock: threading.RLock, transaction: Callable[[], AbstractContextManager[Any]], *,
                 storage_errors: tuple[type[BaseException], ...] = (sqlite3.Error,)):
        self._lock = lock
        self._storage_errors = storage_errors
        self._transaction = transaction
        self._queued: list[_Write] = []
        self._queue_lock = threading.Lock()
        self.transactions = 0   # transactions run, and writes carried: the batching achieved
        self.writes = 0

    def run(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(db)`` in a committed transaction, shared with the writes queued beside it; its
        result, or its exception."""
        w = _Write(fn)
        with self._queue_lock:
            self._queued.append(w)
        with self._lock:
            if not w.done:   # no leader took it yet: lead, and carry what else is queued
                with self._queue_lock:
                    batch, self._queued = self._queued, []
                self._commit(batch)
        if w.error is not None:
            raise w.error
        return w.result

    def _commit(self, batch: list[_Write]) -> None:
        try:
            with self._transaction() as db:
                for w in batch:
                    db.execute("SAVEPOINT group_write")
                    try:
                        w.result = w.fn(db)
                    except self._storage_errors:    # the storage itself (disk full, I/O): the whole transaction fails
                        raise
                    except Exception as e:   # this write alone is undone (a name taken); the others go on
                        db.execute("ROLLBACK TO group_write")
                        w.error = e
                    db.execute("RELEASE group_write")
        except BaseException as e:   # the transaction failed: nothing of it was stored
            for w in batch:
                w.result, w.error = None, w.error or e
            if not isinstance(e, Exception):
                raise
        finally:
            self.transactions += 1
            self.writes += len(batch)
            for w in batch:
                w.done = True
