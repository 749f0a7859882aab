"""What the PostgreSQL store has that one SQLite writer never needed: several stores (control-service
replicas) writing one database at once, a server that goes away and comes back, migrations run once
by replicas that start together. On a real PostgreSQL server (tests/databases.py). The rest of the
store's behaviour is tested on both engines by the store's own tests (``store_target``)."""

from __future__ import annotations

import threading
import time

import pytest
from databases import PostgresServer, connect

from rayfleet.api import JobState, TrainJob
from rayfleet.errors import Conflict, SpecError, StorageUnavailable
from rayfleet.server.store import Store, store_target
from rayfleet.server.store_postgres import MIGRATIONS as PG_MIGRATIONS
from rayfleet.server.store_postgres import redact, translate_sql
from rayfleet.server.store_sqlite import MIGRATIONS as SQLITE_MIGRATIONS


def _job(name: str) -> TrainJob:
    return TrainJob.model_validate({"metadata": {"name": name}, "spec": {"entrypoint": "echo hi", "queue": "team-a"}})


# ------------------------------------------------------------------ no server needed

def test_the_store_sql_is_translated_for_psycopg():
    assert translate_sql("SELECT a FROM objects INDEXED BY objects_by_queue WHERE kind=? AND name LIKE 'x%'") == \
        "SELECT a FROM objects WHERE kind=%s AND name LIKE 'x%%'"
    # one version number per migration on both engines, so that a later one has one number on both
    assert len(PG_MIGRATIONS) == len(SQLITE_MIGRATIONS)


def test_a_url_s_password_never_reaches_a_message():
    assert redact("postgresql://fleet:s3cret@db.internal:5432/rayfleet") == "postgresql://fleet:***@db.internal:5432/rayfleet"
    assert redact("postgresql://fleet@db/rayfleet") == "postgresql://fleet@db/rayfleet"


def test_store_option_names_a_url_or_a_file(tmp_path):
    assert store_target(None, tmp_path) == tmp_path / "rayfleet.db"
    assert store_target("postgresql://u@h/db", tmp_path) == "postgresql://u@h/db"
    assert store_target(str(tmp_path / "x.db"), tmp_path) == tmp_path / "x.db"
    with pytest.raises(SpecError) as e:
        store_target("mysql://u@h/db", tmp_path)
    assert e.value.problems[0].field == "--store" and "mysql://" in e.value.problems[0].problem


# ------------------------------------------------------------------ a real server

slow = pytest.mark.slow   # a test that starts, or uses, a PostgreSQL server (a process)


@slow
def test_replicas_writing_at_once_lose_nothing_and_hand_out_each_seq_once(postgres):
    url = postgres.new_database()
    replicas = [Store(url) for _ in range(3)]
    errors: list[BaseException] = []

    def submit(store: Store, prefix: str) -> None:
        try:
            for i in range(40):
                store.create(_job(f"{prefix}-{i}"), team="team-a")
        except BaseException as e:   # the assertion below shows it
            errors.append(e)

    threads = [threading.Thread(target=submit, args=(s, f"r{n}t{k}")) for n, s in enumerate(replicas) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    names = [r.name for r in replicas[0].list("TrainJob")]
    assert len(names) == len(set(names)) == 9 * 40
    seqs = [row[0] for row in replicas[1]._select("TrainJob", None, None, 0, None)]
    assert seqs == list(range(1, 9 * 40 + 1))   # one seq each, no gap, in commit order (the paging cursor)
    # a name taken by one replica is taken for all
    with pytest.raises(Conflict, match="already exists"):
        replicas[2].create(_job("r0t0-0"))
    for s in replicas:
        s.close()


@slow
def test_an_update_that_meets_a_concurrent_write_is_a_conflict_not_an_overwrite(postgres):
    url = postgres.new_database()
    store = Store(url)
    store.create(_job("a"))
    job = store.get("TrainJob", "a").doc
    other = connect(url)   # another replica, mid-write: the row is changed and locked, not yet committed
    other.execute("BEGIN")
    other.execute("UPDATE objects SET resource_version = resource_version + 1 WHERE kind='TrainJob' AND name='a'")
    result: list[BaseException | int] = []

    def update() -> None:
        job.status.state = JobState.RUNNING
        try:
            result.append(store.update(job, event="Running").resource_version)
        except Conflict as e:
            result.append(e)

    t = threading.Thread(target=update)
    t.start()
    watcher = connect(url)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not watcher.execute(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type='Lock' AND datname=current_database()").fetchall():
        time.sleep(0.02)   # the store read version 1 and now waits for the row
    other.execute("COMMIT")
    t.join(20)
    assert len(result) == 1 and isinstance(result[0], Conflict), result
    rec = store.get("TrainJob", "a")
    assert rec.resource_version == 2 and rec.doc.status.state == JobState.QUEUED   # the other replica's write stands
    assert [e.type for e in store.events("TrainJob", "a")] == ["Created"]          # and the refused one left nothing
    store.close()


@slow
def test_replicas_starting_together_migrate_once(postgres):
    url = postgres.new_database()
    stores: list[Store] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_store() -> None:
        start.wait()
        try:
            stores.append(Store(url))
        except BaseException as e:   # the assertion below shows it
            errors.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(stores) == 6
    assert {s.schema_version for s in stores} == {len(PG_MIGRATIONS)}
    assert connect(url).execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1
    for s in stores:
        s.close()


@slow
def test_a_server_that_goes_away_is_503_unreachable_and_the_store_reconnects_when_it_is_back():
    server = PostgresServer()   # its own server: this test stops it
    try:
        store = Store(server.new_database())
        store.create(_job("before"))
        server.stop()
        with pytest.raises(StorageUnavailable) as e:
            store.create(_job("during"))
        assert e.value.reason == "unreachable" and "***" not in e.value.message and "PostgreSQL" in e.value.message
        assert store.guard.health() == "unreachable"
        with pytest.raises(StorageUnavailable):
            store.list("TrainJob")   # a read, too, says why it cannot answer
        server.start()
        store.create(_job("after"))   # the writer's connection is opened again
        assert store.guard.health() is None
        assert [r.name for r in store.list("TrainJob")] == ["before", "after"]   # the readers too
        store.close()
    finally:
        server.close()


def test_a_store_that_cannot_reach_its_server_does_not_start():
    with pytest.raises(StorageUnavailable) as e:
        Store("postgresql://fleet:s3cret@127.0.0.1:1/rayfleet")
    assert e.value.reason == "unreachable" and "s3cret" not in e.value.message and "fleet:***@127.0.0.1:1" in e.value.message
