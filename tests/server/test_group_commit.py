"""Group commit (server/group_commit.py): creates from many threads at once share a transaction,
each still committed before it returns, each failing alone when its own write fails. On both engines (``store_target``)."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from rayfleet.api import TrainJob
from rayfleet.errors import Conflict, StorageUnavailable
from rayfleet.server.store import Store


def _job(name: str) -> TrainJob:
    return TrainJob.model_validate({"metadata": {"name": name, "uid": f"uid-{name}"},
                                    "spec": {"entrypoint": "true", "queue": "q", "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 1}}}})


def _create_all(store: Store, names: list[str]) -> dict[str, object]:
    """Create ``names`` from one thread each, all queued while the store's lock is held, so the
    first thread to get it carries the rest; each name's result or error."""
    out: dict[str, object] = {}
    started = threading.Barrier(len(names) + 1)

    def create(name: str) -> None:
        started.wait()
        try:
            out[name] = store.create(_job(name), team="t").resource_version
        except Exception as e:  # the test looks at which error each thread got
            out[name] = e

    threads = [threading.Thread(target=create, args=(n,)) for n in names]
    with store._lock:
        for t in threads:
            t.start()
        started.wait()
        deadline = time.monotonic() + 10
        while len(store.creates._queued) < len(names) and time.monotonic() < deadline:
            time.sleep(0.001)
    for t in threads:
        t.join(10)
    return out


def test_concurrent_creates_share_transactions_and_are_all_committed(store_target):
    store = Store(store_target)
    names = [f"j{i}" for i in range(20)]
    out = _create_all(store, names)
    assert out == {n: 1 for n in names}
    assert store.creates.writes == 20
    assert store.creates.transactions == 1      # every create was queued behind the held lock
    store.close()
    again = Store(store_target)            # committed: another connection reads them all
    assert sorted(r.name for r in again.list("TrainJob")) == sorted(names)
    seqs = [r[0] for r in again._select("TrainJob", None, None, 0, None)]
    assert seqs == sorted(set(seqs)) and len(seqs) == 20   # one seq each, in order


def test_a_name_taken_fails_only_its_own_create(store_target):
    store = Store(store_target)
    store.create(_job("taken"), team="t")
    out = _create_all(store, ["a", "taken", "b"])
    assert out["a"] == 1 and out["b"] == 1
    assert isinstance(out["taken"], Conflict) and "already exists" in str(out["taken"])
    assert sorted(r.name for r in store.list("TrainJob")) == ["a", "b", "taken"]
    events = [e.name for e in store.events("TrainJob")]
    assert sorted(events) == ["a", "b", "taken"]   # the rolled-back write left no event behind


def test_a_failed_transaction_is_every_carried_create_s_error(tmp_path):
    store = Store(tmp_path / "s.db")
    store._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.name = 'poison' "
                      "BEGIN SELECT RAISE(FAIL, 'disk I/O error'); END")
    out = _create_all(store, ["x", "poison", "y"])
    assert all(isinstance(e, sqlite3.Error) for e in out.values()), out   # the storage error reaches every write
    assert store.list("TrainJob") == []        # and nothing of the transaction was stored


@pytest.mark.slow   # a PostgreSQL server
def test_a_failed_transaction_on_postgresql_is_every_carried_create_s_storage_fault(postgres):
    store = Store(postgres.new_database())
    store._db.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                      "IF NEW.name = 'poison' THEN RAISE EXCEPTION 'could not write block' USING ERRCODE = 'io_error'; END IF; "
                      "RETURN NEW; END $$")
    store._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()")
    out = _create_all(store, ["x", "poison", "y"])
    assert all(isinstance(e, StorageUnavailable) and e.reason == "io-error" for e in out.values()), out
    assert store.list("TrainJob") == []
    assert store.guard.health() == "io-error"
    store.create(_job("after"), team="t")        # the next commit clears the fault
    assert store.guard.health() is None and [r.name for r in store.list("TrainJob")] == ["after"]


def test_a_create_inside_the_callers_own_batch_is_part_of_that_batch(store_target):
    store = Store(store_target)
    with pytest.raises(RuntimeError), store.batch():
        store.create(_job("inside"), team="t")
        raise RuntimeError("the batch is rolled back")
    assert store.find("TrainJob", "inside") is None
    assert store.creates.writes == 0
