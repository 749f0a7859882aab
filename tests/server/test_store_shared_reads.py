"""Shared reads (``Store.list(shared=True)``): a record read again unchanged gives the same document
without decoding it again; any change to its stored text gives a fresh one; other reads are untouched. On both engines (``store_target``)."""

from __future__ import annotations

from rayfleet.api import JobState, TrainJob
from rayfleet.server.store import Store


def _job(name: str) -> TrainJob:
    return TrainJob.model_validate({"metadata": {"name": name}, "spec": {"entrypoint": "echo hi", "queue": "team-a"}})


def _shared(s: Store) -> dict[str, TrainJob]:
    return {r.name: r.doc for r in s.list("TrainJob", shared=True)}  # type: ignore[misc]


def test_an_unchanged_record_is_the_same_document_a_changed_one_a_new_one(store_target):
    s = Store(store_target)
    for n in ("a", "b"):
        s.create(_job(n), team="team-a")
    first = _shared(s)
    again = _shared(s)
    assert again["a"] is first["a"] and again["b"] is first["b"]
    running = first["a"].model_copy(update={"status": first["a"].status.model_copy(update={"state": JobState.RUNNING})})
    rec = s.update(running, event="Running")
    after = _shared(s)
    assert after["a"] is not first["a"] and after["a"].status.state == JobState.RUNNING and after["b"] is first["b"]
    assert s.list("TrainJob", shared=True)[0].resource_version == rec.resource_version
    # a read that is not shared gets its own document, which its caller may change in place
    own = s.get("TrainJob", "b").doc
    assert own is not first["b"]
    own.status.state = JobState.FAILED   # type: ignore[attr-defined]
    assert _shared(s)["b"].status.state == JobState.QUEUED and s.list("TrainJob")[1].doc.status.state == JobState.QUEUED  # type: ignore[attr-defined]


def test_a_record_replaced_under_the_same_name_is_decoded_again(store_target):
    s = Store(store_target)
    s.create(_job("a"))
    old = _shared(s)["a"]
    s.delete("TrainJob", "a")
    assert _shared(s) == {}
    job = _job("a")
    job.spec.entrypoint = "echo again"
    s.create(job)
    new = _shared(s)["a"]
    assert new is not old and new.spec.entrypoint == "echo again"


def test_a_shared_write_is_what_shared_reads_give_back_unless_it_was_rolled_back(store_target):
    import pytest

    s = Store(store_target)
    s.create(_job("a"))
    first = _shared(s)["a"]
    running = first.model_copy(update={"status": first.status.model_copy(update={"state": JobState.RUNNING})})
    s.update(running, event="Running", shared=True)
    assert _shared(s)["a"] is running                     # the written document, not decoded again
    failed = running.model_copy(update={"status": running.status.model_copy(update={"state": JobState.FAILED})})
    with pytest.raises(RuntimeError), s.batch():
        s.update(failed, event="Failed", shared=True)
        raise RuntimeError("rolled back")
    back = _shared(s)["a"]
    assert back is not failed and back.status.state == JobState.RUNNING   # the stored text, decoded afresh
