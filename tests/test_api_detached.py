"""``api.base.detached``: the transitions' copy of a status, deep copy's result at less cost."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from pydantic import BaseModel

from rayfleet.api import ServiceStatus, TrainJob, TrainJobStatus
from rayfleet.api.base import detached
from rayfleet.api.job import CapacityWait, Interruption, NoticeRecord

NOW = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
_IMMUTABLE = (str, int, float, bool, type(None), enum.Enum, dt.datetime, dt.timedelta)


def _mutables(v: Any, out: dict[int, str], path: str = "") -> dict[int, str]:
    """Every object reachable from ``v`` that is not of a known immutable type, by id."""
    if isinstance(v, _IMMUTABLE):
        return out
    out[id(v)] = path or "."
    if isinstance(v, BaseModel):
        for k, x in v.__dict__.items():
            _mutables(x, out, f"{path}.{k}")
        _mutables(v.__pydantic_fields_set__, out, f"{path}.<fields set>")
    elif isinstance(v, dict):
        for k, x in v.items():
            _mutables(x, out, f"{path}[{k!r}]")
    elif isinstance(v, list | tuple | set):
        for i, x in enumerate(v):
            _mutables(x, out, f"{path}[{i}]")
    return out


def _full_status() -> TrainJobStatus:
    return TrainJobStatus(
        attempt=3, restarts=1, disruptions=1, borrowed={"cpu": 4000}, message="m", submitted_at=NOW,
        interruptions=[Interruption(at=NOW, attempt=1, reason="preempted", message="by prod"),
                       Interruption(at=NOW, attempt=2, reason="reclaimed", recovered_at=NOW, resumed_from_step=7)],
        notice=NoticeRecord(kind="reclaim", host="spot-0", at=NOW, deadline=NOW, checkpoint_step=7),
        capacity_wait=CapacityWait(flavor="spot", since=NOW), capacity_skipped=["reserved"], last_checkpoint_step=7)


def test_a_detached_status_equals_its_deep_copy_and_shares_nothing_mutable():
    for st in (_full_status(), TrainJobStatus(), ServiceStatus(group_moves={"0": "spot"}, url="http://x")):
        copy = detached(st)
        deep = st.model_copy(deep=True)
        assert copy == deep and copy.model_fields_set == deep.model_fields_set
        assert copy.model_dump_json(exclude_unset=True) == deep.model_dump_json(exclude_unset=True)
        shared = set(_mutables(copy, {})) & set(_mutables(st, {}))
        assert not shared, [_mutables(copy, {})[i] for i in shared]


def test_changing_a_detached_copy_leaves_the_original_as_it_was():
    st = _full_status()
    before = st.model_dump_json()
    copy = detached(st)
    copy.borrowed["cpu"] = 1
    copy.interruptions[0].recovered_at = NOW
    copy.interruptions.append(Interruption(at=NOW, attempt=3, reason="failure"))
    copy.notice.checkpoint_step = 9  # type: ignore[union-attr]
    copy.capacity_skipped.append("spot")
    copy.attempt = 4
    assert st.model_dump_json() == before


def test_a_whole_job_detaches_too():
    job = TrainJob.model_validate({
        "metadata": {"name": "j", "labels": {"a": "b"}},
        "spec": {"queue": "q", "entrypoint": "python x.py", "gang": {"workers": 2, "resourcesPerWorker": {"cpu": "1"}}},
    })
    copy = detached(job)
    assert copy == job and not set(_mutables(copy, {})) & set(_mutables(job, {}))
