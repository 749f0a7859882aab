"""Every job and service transition, pure: no store, no backend, the clock is an argument."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rayfleet.api import Interruption, JobState, PendingReason, ServiceState, ServiceStatus, TrainJob
from rayfleet.backends.base import Notice, NoticeKind, RunState, RunStatus, ServiceRunStatus, run_id_for
from rayfleet.server import transitions as tr
from rayfleet.server.transitions import Action

UID = "0f8e7d6c-5b4a-4392-8170-abcdefabcdef"
T0 = 1_000_000.0


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def job(state=JobState.RUNNING, *, attempt=1, max_restarts=3, max_disruptions=30, backoff=10.0, deadline=None,
        started=T0, uid=UID, **status) -> TrainJob:
    return TrainJob.model_validate({
        "metadata": {"name": "b-job-1", "uid": uid},
        "spec": {"entrypoint": "python train.py", "queue": "team-a", "maxRunDuration": deadline,
                 "failurePolicy": {"maxRestarts": max_restarts, "maxDisruptions": max_disruptions, "disruptionBackoff": backoff}},
        "status": {"state": state.value, "attempt": attempt, "pool": "cpu", "flavor": "cpu-default",
                   "startedAt": at(started).isoformat() if started is not None else None,
                   "rayJobId": run_id_for("b-job-1", attempt, uid), **status},
    })


def run(state: RunState, msg: str = "", **kw) -> RunStatus:
    return RunStatus("b-job-1-1", state, msg, **kw)


# ---------------------------------------------------------------- backend reports


def test_pending_report_keeps_the_job_starting_without_an_event():
    t = tr.observe(job(JobState.STARTING, started=None), run(RunState.PENDING), T0)
    assert t.status.state == JobState.STARTING and t.event is None and t.actions == ()


def test_first_running_report_starts_the_job():
    j = job(JobState.STARTING, started=None, capacitySkipped=["a"])
    t = tr.observe(j, run(RunState.RUNNING, started_at=T0 + 5), T0 + 9)
    assert t.status.state == JobState.RUNNING and t.event == "Running"
    assert t.status.started_at == at(T0 + 5) and t.status.capacity_skipped == []
    assert j.status.state == JobState.STARTING  # the input is never changed


def test_running_after_an_interruption_is_a_recovery():
    j = job(JobState.STARTING, attempt=2, lastCheckpointStep=40,
            interruptions=[Interruption(at=at(T0), attempt=1, reason="host-failure").model_dump(by_alias=True)])
    t = tr.observe(j, run(RunState.RUNNING, started_at=T0 + 30, resumed_from_step=40), T0 + 31)
    last = t.status.interruptions[-1]
    assert t.event == "Recovered" and last.recovered_at == at(T0 + 30) and last.resumed_from_step == 40
    assert t.status.started_at == at(T0)  # the first start is kept


def test_succeeded_ends_the_job_and_keeps_its_logs():
    t = tr.observe(job(), run(RunState.SUCCEEDED, finished_at=T0 + 50), T0 + 60)
    assert t.status.state == JobState.SUCCEEDED and t.status.reason == "Succeeded"
    assert t.status.finished_at == at(T0 + 50)
    assert set(t.actions) == {Action.SAVE_LOGS, Action.RELEASE_QUOTA}


def test_a_failed_program_counts_toward_max_restarts():
    t = tr.observe(job(max_restarts=1), run(RunState.FAILED, "exit 1"), T0 + 10)
    assert t.status.state == JobState.QUEUED and t.status.restarts == 1 and t.status.disruptions == 0
    assert t.status.not_before is None and t.status.interruptions[-1].reason == "failure"
    assert Action.STOP_RUN in t.actions and Action.SAVE_LOGS in t.actions
    again = tr.observe(job(max_restarts=1, restarts=1), run(RunState.FAILED, "exit 1"), T0 + 20)
    assert again.status.state == JobState.FAILED and again.status.reason == "BackoffLimitExceeded"
    assert again.event == "Failed" and "exit 1" in again.status.message


def test_a_lost_host_is_a_disruption_not_a_restart():
    """Regression: a `ray job submit` job (maxRestarts 0) is requeued when one spot host is reclaimed."""
    t = tr.observe(job(max_restarts=0), run(RunState.LOST, "host h1 died"), T0 + 100)
    assert t.status.state == JobState.QUEUED and t.status.restarts == 0 and t.status.disruptions == 1
    assert t.status.interruptions[-1].reason == "host-failure"
    assert t.status.not_before == at(T0 + 110)  # backoff 10s after the first disruption
    assert {Action.SAVE_LOGS, Action.STOP_RUN, Action.RELEASE_QUOTA} <= set(t.actions)


def test_a_run_the_backend_no_longer_knows_is_lost():
    t = tr.observe(job(max_restarts=0), None, T0)
    assert t.status.state == JobState.QUEUED and t.status.disruptions == 1 and "gone" in t.status.message


def test_a_run_stopped_by_the_backend_unasked_is_a_disruption():
    t = tr.observe(job(max_restarts=0), run(RunState.STOPPED, "the RayJob was suspended"), T0)
    assert t.status.state == JobState.QUEUED and t.status.restarts == 0
    assert t.status.interruptions[-1].reason == "disrupted"


def test_disruptions_are_bounded_on_their_own():
    t = tr.observe(job(max_restarts=0, max_disruptions=2, disruptions=2), run(RunState.LOST, "again"), T0)
    assert t.status.state == JobState.FAILED and t.status.reason == "DisruptionLimitExceeded" and t.status.disruptions == 3


def test_backoff_doubles_and_is_capped():
    assert [tr.backoff_seconds(10, n) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert tr.backoff_seconds(10, 30) == tr.MAX_BACKOFF_S
    t = tr.observe(job(disruptions=2), run(RunState.LOST), T0)
    assert t.status.not_before == at(T0 + 40)


def test_quota_skips_a_job_while_it_backs_off():
    j = job(JobState.QUEUED, notBefore=at(T0 + 10).isoformat())
    assert not tr.eligible(j, T0 + 9.9) and tr.eligible(j, T0 + 10)
    assert tr.eligible(job(JobState.QUEUED), T0)


# ---------------------------------------------------------------- the deadline


def test_the_in_cluster_deadline_ends_the_job_deadline_exceeded():
    """Regression: a KubeRay run past activeDeadlineSeconds is not relaunched."""
    t = tr.observe(job(deadline=60), run(RunState.DEADLINE_EXCEEDED, "activeDeadlineSeconds exceeded"), T0 + 61)
    assert t.status.state == JobState.FAILED and t.status.reason == "DeadlineExceeded" and t.event == "DeadlineExceeded"
    assert t.status.restarts == 0 and Action.RELEASE_QUOTA in t.actions


def test_the_controller_owns_the_deadline():
    assert tr.check_deadline(job(deadline=60), T0 + 59) is None
    assert tr.check_deadline(job(JobState.QUEUED, deadline=60), T0 + 100) is None
    stop = tr.check_deadline(job(deadline=60), T0 + 61)
    assert stop is not None and stop.status.state == JobState.STOPPING and stop.status.stop_reason == "deadline"
    j = job(deadline=60)
    j.status = stop.status
    end = tr.finish_stop(j, T0 + 62)
    assert end.status.state == JobState.FAILED and end.status.reason == "DeadlineExceeded" and end.status.stop_reason is None
    assert Action.STOP_RUN in end.actions


@pytest.mark.parametrize("report", [RunState.LOST, RunState.FAILED])
def test_no_requeue_past_the_deadline(report):
    t = tr.observe(job(deadline=60), run(report, "x"), T0 + 61)
    assert t.status.state == JobState.FAILED and t.status.reason == "DeadlineExceeded"


# ---------------------------------------------------------------- stops


def test_stop_of_a_queued_job_ends_it_at_once():
    t = tr.request_stop(job(JobState.QUEUED), "user", "stopped by user", T0)
    assert t.status.state == JobState.STOPPED and t.status.reason == "Stopped" and t.status.finished_at == at(T0)


def test_stop_of_an_ended_job_does_nothing():
    assert tr.request_stop(job(JobState.SUCCEEDED), "user", "x", T0) is None


def test_stop_of_a_running_job_is_an_intent_first():
    t = tr.request_stop(job(), "user", "stopped by user", T0)
    assert t.status.state == JobState.STOPPING and t.event == "Stopping" and t.actions == ()


def _stopping(reason: str, **kw) -> TrainJob:
    return job(JobState.STOPPING, stopReason=reason, message="why", **kw)


def test_user_stop_finishes_stopped():
    t = tr.finish_stop(_stopping("user"), T0)
    assert t.status.state == JobState.STOPPED and t.status.reason == "Stopped"
    assert set(t.actions) == {Action.STOP_RUN, Action.SAVE_LOGS, Action.RELEASE_QUOTA}
    assert tr.finish_stop(_stopping("user", attempt=0), T0).actions == (Action.RELEASE_QUOTA,)


def test_preemption_requeues_at_once_as_a_disruption():
    t = tr.finish_stop(_stopping("preempted", max_restarts=0), T0)
    assert t.status.state == JobState.QUEUED and t.status.restarts == 0 and t.status.disruptions == 1
    assert t.status.not_before is None and t.status.interruptions[-1].reason == "preempted"


@pytest.mark.parametrize("reason,event", [("capacity", "CapacityFallback"), ("resubmit", "CapacityResubmit")])
def test_capacity_steps_requeue_as_disruptions(reason, event):
    t = tr.finish_stop(_stopping(reason), T0)
    assert t.status.state == JobState.QUEUED and t.event == event and t.status.disruptions == 1 and t.status.not_before is None
    assert t.status.capacity_skipped == (["cpu-default"] if reason == "capacity" else [])


def test_capacity_stop_messages():
    nxt = tr.capacity_stop(job(JobState.STARTING), True, "spot", 120, T0)
    assert nxt.status.stop_reason == "capacity" and "next: spot" in nxt.message
    again = tr.capacity_stop(job(JobState.STARTING), False, None, 60, T0)
    assert again.status.stop_reason == "resubmit"


# ---------------------------------------------------------------- quota and launch


def test_admission_makes_a_new_attempt_with_a_uid_run_id():
    t = tr.admitted(job(JobState.QUEUED, attempt=0, notBefore=at(T0).isoformat()), "cpu-default", "cpu", {"cpu": 0, "memory": 5})
    assert t.status.state == JobState.ADMITTED and t.status.attempt == 1 and t.status.borrowed == {"memory": 5}
    assert t.status.ray_job_id == "b-job-1-1-0f8e7d6c5b4a" and t.status.not_before is None
    other = tr.admitted(job(JobState.QUEUED, attempt=0, uid="11111111-2222-4333-8444-555555555555"), "cpu-default", "cpu", {})
    assert other.status.ray_job_id != t.status.ray_job_id  # same name, same attempt, another object: another run


def test_waiting_only_changes_the_message_and_its_code():
    waits = job(JobState.QUEUED, message="no quota", pendingReason="WaitingForQuota")
    assert tr.waiting(waits, "no quota") is None
    t = tr.waiting(job(JobState.QUEUED), "no quota")
    assert t.status.message == "no quota" and t.status.pending_reason == PendingReason.WAITING_FOR_QUOTA and t.event is None
    t = tr.waiting(waits, "no quota", PendingReason.EXCEEDS_QUOTA)
    assert t.status.pending_reason == PendingReason.EXCEEDS_QUOTA and t.status.message == "no quota"


def test_a_pending_reason_is_kept_only_while_queued():
    assert tr.submitted("team-a", 100, T0).pending_reason == PendingReason.QUEUED
    # requeued with a back-off: Backoff; without: Queued; admitted (or ended): none
    t = tr.launch_failed(job(JobState.ADMITTED, max_restarts=0), "launch failed: cluster down", T0)
    tr.settle_pending_reason(JobState.ADMITTED, t.status)
    assert t.status.pending_reason == PendingReason.BACKOFF
    requeued = tr.finish_stop(job(JobState.STOPPING, stop_reason="preempted"), T0)
    tr.settle_pending_reason(JobState.STOPPING, requeued.status)
    assert requeued.status.state == JobState.QUEUED and requeued.status.pending_reason == PendingReason.QUEUED
    queued = job(JobState.QUEUED, pendingReason="WaitingForQuota")
    admitted = tr.admitted(queued, "cpu-default", "cpu", {})
    tr.settle_pending_reason(JobState.QUEUED, admitted.status)
    assert admitted.status.pending_reason is None


def test_launch_starts_the_capacity_wait():
    t = tr.launched(job(JobState.ADMITTED, started=None), "b-job-1-1-x", T0)
    assert t.status.state == JobState.STARTING and t.status.capacity_wait.flavor == "cpu-default"
    assert t.status.capacity_wait.since == at(T0) and t.data == {"run": "b-job-1-1-x"}


def test_a_failed_launch_is_a_disruption_with_backoff():
    t = tr.launch_failed(job(JobState.ADMITTED, max_restarts=0), "launch failed: cluster down", T0)
    assert t.status.state == JobState.QUEUED and t.status.restarts == 0 and t.status.disruptions == 1
    assert t.status.not_before == at(T0 + 10) and t.actions == (Action.RELEASE_QUOTA,)


def test_submission_status():
    st = tr.submitted("team-a", 100, T0)
    assert st.state == JobState.QUEUED and st.submitted_at == at(T0) and "priority 100" in st.message


# ---------------------------------------------------------------- services


def test_service_base_admission_deploys_and_a_group_grant_only_says_so():
    base = tr.service_admitted(ServiceStatus(), "svc.chat.base", None, "h100", {})
    assert base.status.state == ServiceState.DEPLOYING and base.status.flavor == "h100" and base.event == "Admitted"
    group = tr.service_admitted(base.status, "svc.chat.2", 2, "h100", {"gpu": 8})
    assert group.status.state == ServiceState.DEPLOYING and "group 2" in group.message and "borrowed" in group.message


def test_service_waiting():
    t = tr.service_waiting(ServiceStatus(), "queue full")
    assert t.status.message == "replicas waiting for quota: queue full"
    assert tr.service_waiting(t.status, "queue full") is None


def test_service_preemption_of_the_base_undeploys_everything():
    st = ServiceStatus(state=ServiceState.RUNNING, flavor="h100", replicas_granted=3, replicas_running=3)
    t = tr.service_preempted(st, "svc.chat.base", None, "reclaimed")
    assert t.status.state == ServiceState.PENDING and t.status.flavor is None and t.status.replicas_granted == 0
    assert set(t.actions) == {Action.RELEASE_QUOTA, Action.UNDEPLOY}
    group = tr.service_preempted(st, "svc.chat.2", 2, "reclaimed")
    assert group.status.state == ServiceState.RUNNING and group.actions == () and "replica group 2" in group.message


def test_service_delete():
    deleting = tr.service_deleting(ServiceStatus(state=ServiceState.RUNNING, url="http://x"))
    assert deleting.status.state == ServiceState.DELETING and deleting.event == "Deleting"
    gone = tr.service_deleted(deleting.status)
    assert gone.status.state == ServiceState.DELETED and gone.status.url is None
    assert set(gone.actions) == {Action.UNDEPLOY, Action.RELEASE_QUOTA}


def test_service_observed_running_degraded_and_not_listed_yet():
    st = ServiceStatus(state=ServiceState.DEPLOYING, flavor="h100")
    up = tr.service_observed(st, 2, ServiceRunStatus("chat", 2, 2, 2, url="http://x", state=ServiceState.RUNNING), "ok")
    assert up.status.state == ServiceState.RUNNING and up.event == "Running" and up.status.replicas_granted == 2
    again = tr.service_observed(up.status, 2, ServiceRunStatus("chat", 2, 2, 2, url="http://x", state=ServiceState.RUNNING), "ok")
    assert again.event is None
    deg = tr.service_observed(up.status, 2, ServiceRunStatus("chat", 2, 1, 2, state=ServiceState.DEGRADED), "one down")
    assert deg.status.state == ServiceState.DEGRADED and deg.status.message == "one down"
    unlisted = tr.service_observed(st, 1, ServiceRunStatus("chat", 1, 0, 1, state=ServiceState.PENDING), "starting")
    assert unlisted.status.state == ServiceState.DEPLOYING
    nothing = tr.service_observed(st, 0, None, st.message)
    assert nothing.status.state == ServiceState.DEPLOYING and nothing.status.replicas_granted == 0


# ---------------------------------------------------------------- capacity that comes and goes (issue 13)


def _reclaim(deadline: float | None = T0 + 30, kind: NoticeKind = NoticeKind.RECLAIM) -> Notice:
    return Notice(kind, "host-3", deadline)


def test_a_notice_is_recorded_once_and_asks_for_a_checkpoint():
    t = tr.noticed(job(lastCheckpointStep=40), _reclaim(), T0)
    n = t.status.notice
    assert t.event == "Notice" and t.actions == (Action.REQUEST_CHECKPOINT,)
    assert (n.kind, n.host, n.checkpoint_step, n.deadline) == ("reclaim", "host-3", 40, at(T0 + 30))
    assert "host-3" in t.message and "step 40" in t.message and "30s" in t.message
    assert tr.noticed(job(notice=n.model_dump(by_alias=True, mode="json")), _reclaim(T0 + 10), T0 + 1) is None
    assert tr.noticed(job(JobState.STARTING), _reclaim(), T0) is None


def test_the_earliest_notice_moves_the_attempt():
    late, soon, none = _reclaim(T0 + 90), _reclaim(T0 + 20, NoticeKind.WINDOW_END), _reclaim(None, NoticeKind.UNHEALTHY)
    assert tr.first_notice((none, late, soon)) is soon and tr.first_notice(()) is None


def _noticed(kind="reclaim", step=40, deadline=T0 + 30, **kw) -> TrainJob:
    rec = {"kind": kind, "host": "host-3", "at": at(T0).isoformat(), "checkpointStep": step,
           "deadline": at(deadline).isoformat() if deadline is not None else None}
    return job(notice=rec, **kw)


@pytest.mark.parametrize(("kind", "reason"), [("reclaim", "reclaimed"), ("recycle", "recycled"), ("window-end", "window-end"),
                                              ("unhealthy", "unhealthy-host")])
def test_a_noticed_attempt_moves_at_its_newer_checkpoint(kind, reason):
    assert tr.notice_due(_noticed(kind, lastCheckpointStep=40), T0 + 5) is None   # no newer checkpoint yet, deadline far
    t = tr.notice_due(_noticed(kind, lastCheckpointStep=41), T0 + 5)
    assert t.status.state == JobState.STOPPING and t.status.stop_reason == reason and "step 41" in t.message
    done = tr.finish_stop(job(JobState.STOPPING, stopReason=reason, lastCheckpointStep=41), T0 + 6)
    st = done.status
    assert st.state == JobState.QUEUED and st.not_before is None and st.restarts == 0 and st.disruptions == 1
    assert st.interruptions[-1].reason == reason and st.notice is None


def test_a_noticed_attempt_without_a_new_checkpoint_moves_just_before_the_deadline():
    j = _noticed(lastCheckpointStep=40)
    assert tr.notice_due(j, T0 + 30 - tr.NOTICE_LEAD_S - 0.5) is None
    t = tr.notice_due(j, T0 + 30 - tr.NOTICE_LEAD_S)
    assert t.status.stop_reason == "reclaimed" and "deadline" in t.message
    assert tr.notice_due(_noticed(deadline=None, lastCheckpointStep=40), T0 + 10_000) is None   # no deadline: only a checkpoint


def test_a_notice_on_a_flavor_with_nothing_left_skips_it():
    t = tr.notice_due(_noticed("window-end", lastCheckpointStep=41), T0 + 5, flavor_exhausted=True)
    assert t.status.capacity_skipped == ["cpu-default"] and "next compute-class step" in t.message
    kept = tr.notice_due(_noticed(lastCheckpointStep=41), T0 + 5)
    assert kept.status.capacity_skipped == []


def test_a_run_lost_with_a_notice_out_counts_with_the_notice_reason_and_requeues_at_once():
    t = tr.observe(_noticed(lastCheckpointStep=40, max_restarts=0), run(RunState.LOST, "host-3 reclaimed"), T0 + 31,
                   flavor_exhausted=True)
    st = t.status
    assert st.state == JobState.QUEUED and st.interruptions[-1].reason == "reclaimed" and st.not_before is None
    assert st.restarts == 0 and st.capacity_skipped == ["cpu-default"] and st.notice is None
    plain = tr.observe(job(), run(RunState.LOST, "gone"), T0 + 31)
    assert plain.status.interruptions[-1].reason == "host-failure" and plain.status.not_before is not None


def test_a_stockout_goes_to_the_next_step_at_once():
    t = tr.observe(job(JobState.STARTING, started=None), run(RunState.STOCKOUT, "zone out of g2"), T0, next_flavor="spot")
    st = t.status
    assert t.event == "CapacityFallback" and st.state == JobState.QUEUED and st.capacity_skipped == ["cpu-default"]
    assert st.not_before is None and st.disruptions == 1 and st.restarts == 0 and not st.interruptions
    assert "zone out of g2" in t.message and "next: spot" in t.message and t.data["stockout"] is True
    last = tr.observe(job(JobState.STARTING, started=None), run(RunState.STOCKOUT, "none"), T0)
    assert last.status.not_before is not None   # no step left: back off rather than spin


def test_a_migration_is_planned_then_made_at_the_next_checkpoint():
    j = job(lastCheckpointStep=40, flavor="l4-spot")
    t = tr.migration_planned(j, "l4-res", T0)
    assert t.event == "Migrating" and t.status.notice.kind == "migrate" and t.status.notice.host == "l4-res"
    assert t.actions == () and "l4-res" in t.message
    planned = j.model_copy(update={"status": t.status})
    assert tr.migration_planned(planned, "l4-res", T0 + 1) is None
    assert tr.notice_due(planned, T0 + 3600) is None   # no deadline: waits for the checkpoint
    moving = planned.model_copy(update={"status": planned.status.model_copy(update={"last_checkpoint_step": 50,
                                                                                    "capacity_skipped": ["x"]})})
    stop = tr.notice_due(moving, T0 + 60)
    assert stop.status.stop_reason == "migrated" and stop.status.capacity_skipped == []
    done = tr.finish_stop(moving.model_copy(update={"status": stop.status}), T0 + 61)
    assert done.event == "Migrated" and done.status.state == JobState.QUEUED and done.status.interruptions[-1].reason == "migrated"


def test_a_real_notice_replaces_a_planned_migration_and_a_withdrawn_one_is_dropped():
    j = job(lastCheckpointStep=40)
    planned = j.model_copy(update={"status": tr.migration_planned(j, "l4-res", T0).status})
    t = tr.noticed(planned, _reclaim(), T0 + 1)
    assert t.status.notice.kind == "reclaim"
    w = tr.migration_withdrawn(planned, "taken")
    assert w.event == "MigrationWithdrawn" and w.status.notice is None and "taken" in w.message
    assert tr.migration_withdrawn(j, "taken") is None


def test_a_failed_run_names_its_hosts_for_faulty_host_counting():
    t = tr.observe(job(), run(RunState.FAILED, "xid 79", hosts=("h2", "h1", "h2")), T0)
    assert t.data["hosts"] == ["h1", "h2"] and t.status.restarts == 1


def test_a_new_attempt_starts_without_the_old_notice():
    t = tr.admitted(_noticed(state=JobState.QUEUED), "l4-res", "l4-res", {})
    assert t.status.notice is None
