"""The store on both engines (a real SQLite file, a real PostgreSQL server: ``store_target``):
versions, conflicts, events, migrations, tokens, durability; and what only one engine has."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3

import pytest
from databases import connect

from rayfleet.api import JobState, TrainJob
from rayfleet.errors import Conflict, NotFound
from rayfleet.server.store import MIGRATIONS, Store


def _job(name: str, queue: str = "team-a") -> TrainJob:
    return TrainJob.model_validate({"metadata": {"name": name}, "spec": {"entrypoint": "echo hi", "queue": queue}})


def test_create_get_update_and_versions(store_target):
    s = Store(store_target)
    rec = s.create(_job("a"), team="team-a")
    assert rec.resource_version == 1
    got = s.get("TrainJob", "a")
    assert got.doc == _job("a") and got.team == "team-a"
    job = got.doc
    job.status.state = JobState.RUNNING
    rec2 = s.update(job, expected_version=1, event="Running", message="go")
    assert rec2.resource_version == 2
    with pytest.raises(Conflict, match="expected 1"):
        s.update(job, expected_version=1)
    assert s.get("TrainJob", "a").doc.status.state == JobState.RUNNING
    assert [e.type for e in s.events("TrainJob", "a")] == ["Created", "Running"]
    with pytest.raises(Conflict):
        s.create(_job("a"))
    with pytest.raises(NotFound):
        s.get("TrainJob", "nope")


def test_list_filters_and_pages_in_submission_order(store_target):
    s = Store(store_target)
    for i in range(7):
        s.create(_job(f"j{i}"), team="team-a" if i % 2 == 0 else "team-b")
    assert [r.name for r in s.list("TrainJob", team="team-b")] == ["j1", "j3", "j5"]
    page1, cur = s.page("TrainJob", team=None, states=None, limit=3, cursor=0)
    page2, cur2 = s.page("TrainJob", team=None, states=None, limit=3, cursor=cur)
    page3, cur3 = s.page("TrainJob", team=None, states=None, limit=3, cursor=cur2)
    assert [r.name for r in page1 + page2 + page3] == [f"j{i}" for i in range(7)]
    assert cur3 is None
    assert s.count("TrainJob", states=["QUEUED"]) == 7
    # the newest first, as many as asked (a starting controller's read of the last successes)
    assert [r.name for r in s.list("TrainJob", states=["QUEUED"], limit=3, newest_first=True)] == ["j6", "j5", "j4"]


def test_reopen_keeps_everything_and_schema_version(store_target):
    path = store_target
    s = Store(path)
    s.create(_job("keep"))
    s.add_token("secret", team="team-a")
    s.close()
    s2 = Store(path)
    assert s2.schema_version == len(MIGRATIONS)
    assert s2.get("TrainJob", "keep").doc.name == "keep"
    tok = s2.check_token("secret")
    assert tok is not None and tok.team == "team-a" and not tok.admin
    assert s2.check_token("other") is None
    # only the hash is stored
    raw = connect(path).execute("SELECT hash FROM tokens").fetchall()
    assert raw and all("secret" not in r[0] for r in raw)


def test_newer_schema_is_refused(store_target):
    path = store_target
    Store(path).close()
    db = connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        Store(path)


def _writer(path, n: int, conn) -> None:
    s = Store(path)
    for i in range(n):
        s.create(_job(f"w{i}"))
        conn.send(i)  # acknowledged only after the commit returned


@pytest.mark.slow  # forks a writer and kills it
def test_acknowledged_writes_survive_kill_9(store_target):
    path = store_target
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(target=_writer, args=(path, 100000, child))
    proc.start()
    acked = -1
    while acked < 150:
        acked = parent.recv()
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    while parent.poll():
        acked = parent.recv()
    s = Store(path)
    names = {r.name for r in s.list("TrainJob")}
    assert all(f"w{i}" in names for i in range(acked + 1))
    if not isinstance(path, str):   # (a PostgreSQL server checks its own pages)
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_batch_is_one_transaction_committed_at_its_end_or_rolled_back_whole(store_target):
    path = store_target
    s = Store(path)
    for n in ("a", "b"):
        s.create(_job(n), team="team-a")
    other = connect(path)   # another reader of the file sees only what is committed
    with s.batch():
        for n in ("a", "b"):
            job = s.get("TrainJob", n).doc
            job.status.state = JobState.RUNNING
            s.update(job, event="Running")
        assert other.execute("SELECT COUNT(*) FROM objects WHERE state='RUNNING'").fetchone()[0] == 0
        assert s.get("TrainJob", "a").doc.status.state == JobState.RUNNING   # the batch sees its own writes
    assert other.execute("SELECT COUNT(*) FROM objects WHERE state='RUNNING'").fetchone()[0] == 2
    with pytest.raises(NotFound):
        with s.batch():
            job = s.get("TrainJob", "a").doc
            job.status.state = JobState.SUCCEEDED
            s.update(job, event="Succeeded")
            s.update(_job("gone"))   # fails: nothing of the batch is kept
    assert s.get("TrainJob", "a").doc.status.state == JobState.RUNNING
    assert [e.type for e in s.events("TrainJob", "a")] == ["Created", "Running"]
    s.create(_job("c"))   # the store goes on after a rolled-back batch
    assert other.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 3


def test_queue_heads_per_queue_and_priority_class_in_submission_order(tmp_path):
    path = tmp_path / "db.sqlite"
    raw = sqlite3.connect(path, isolation_level=None)   # a store of schema 5, before the queue columns
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for m in MIGRATIONS[:5]:
        raw.executescript(m)
    raw.execute("INSERT INTO schema_version VALUES (5)")
    old = _job("old")
    old.status.state = JobState.QUEUED
    raw.execute("INSERT INTO objects (kind, name, team, state, body, resource_version, created_at, updated_at, seq) "
                "VALUES ('TrainJob', 'old', 'team-a', 'QUEUED', ?, 1, 0, 0, 1)", (old.model_dump_json(by_alias=True),))
    raw.close()
    s = Store(path)   # migration 6 fills the columns of the rows there
    assert s.queue_groups("TrainJob", "QUEUED") == [("team-a", "")]
    for i, (queue, pclass) in enumerate([("team-b", None), ("team-a", "production"), ("team-a", None), ("team-b", None)]):
        job = TrainJob.model_validate({"metadata": {"name": f"j{i}"}, "spec": {
            "entrypoint": "echo hi", "queue": queue, **({"priorityClass": pclass} if pclass else {})}})
        job.status.state = JobState.QUEUED
        s.create(job)
    running = _job("running")
    running.status.state = JobState.RUNNING
    s.create(running)
    assert s.queue_groups("TrainJob", "QUEUED") == [("team-a", ""), ("team-a", "production"), ("team-b", "")]
    heads = s.queue_heads("TrainJob", "QUEUED", "team-b", "", after=0, limit=5)
    assert [row[0] for _, _, row in heads] == ["j0", "j3"]
    assert [row[0] for _, _, row in s.queue_heads("TrainJob", "QUEUED", "team-a", "", after=0, limit=1)] == ["old"]
    after = s.queue_heads("TrainJob", "QUEUED", "team-b", "", after=heads[0][0], limit=5)
    assert [row[0] for _, _, row in after] == ["j3"]
    assert s.decode("TrainJob", after[0][2]).doc.name == "j3"
    assert s.count("TrainJob", ["QUEUED"], queue="team-a") == 3
