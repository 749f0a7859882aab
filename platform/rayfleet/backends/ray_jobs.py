"""A small wrapper over Ray's Job Submission API (``ray.job_submission.JobSubmissionClient``).

Every rayfleet run is one Ray job whose ``submission_id`` is the run id, so logs, status and stop
all go through Ray's own Jobs API; ``ray job logs <run id>`` works against the cluster too.
The wrapper adds what the backend needs on top: "not found" as ``None`` instead of an exception,
a bounded wait for a terminal state, and explicit auth headers (so the process-wide
``RAY_AUTH_MODE`` of the caller does not decide which token is sent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..errors import BackendError

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class JobInfo:
    submission_id: str
    job_id: str | None          # Ray's own job id (hex), set once the driver started
    status: str                 # PENDING | RUNNING | SUCCEEDED | FAILED | STOPPED
    message: str
    start_time: float | None    # epoch seconds
    end_time: float | None
    metadata: dict[str, str]
    driver_exit_code: int | None = None  # the entrypoint's exit code once it ended (Ray reports it)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class RayJobs:
    """Jobs API of one Ray cluster, by its dashboard URL."""

    def __init__(self, dashboard_url: str, *, headers: dict[str, str] | None = None):
        self.dashboard_url = dashboard_url
        self.headers = dict(headers or {})
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = JobSubmissionClient(self.dashboard_url, headers=self.headers or None)
            except Exception as e:  # connection refused, auth
                raise BackendError(f"Ray Jobs API at {self.dashboard_url} is not reachable: {e}") from e
        return self._client

    def submit(
        self,
        submission_id: str,
        entrypoint: str,
        *,
        runtime_env: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Submit; an existing job with that submission id is left as it is (idempotent)."""
        if self.info(submission_id) is not None:
            return submission_id
        try:
            return self.client.submit_job(
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env=runtime_env or None,
                metadata=metadata or None,
            )
        except RuntimeError as e:
            if "already exists" in str(e) and self.info(submission_id) is not None:
                return submission_id
            raise BackendError(f"submitting Ray job {submission_id}: {e}") from e

    def info(self, submission_id: str) -> JobInfo | None:
        try:
            d = self.client.get_job_info(submission_id)
        except RuntimeError as e:
            if "404" in str(e) or "does not exist" in str(e):
                return None
            raise BackendError(f"reading Ray job {submission_id}: {e}") from e
        return _to_info(d)

    def list(self) -> list[JobInfo]:
        return [_to_info(d) for d in self.client.list_jobs()]

    def stop(self, submission_id: str) -> bool:
        """Ask the job to stop (SIGTERM, then SIGKILL after Ray's grace period)."""
        try:
            return bool(self.client.stop_job(submission_id))
        except RuntimeError as e:
            if "404" in str(e) or "does not exist" in str(e):
                return False
            raise BackendError(f"stopping Ray job {submission_id}: {e}") from e

    def logs(self, submission_id: str) -> str:
        try:
            return self.client.get_job_logs(submission_id)
        except RuntimeError as e:
            if "404" in str(e) or "does not exist" in str(e):
                return ""
            raise BackendError(f"reading logs of Ray job {submission_id}: {e}") from e

    def wait_terminal(self, submission_id: str, timeout_s: float) -> JobInfo | None:
        deadline = time.monotonic() + timeout_s
        info = self.info(submission_id)
        while info is not None and not info.terminal and time.monotonic() < deadline:
            time.sleep(0.2)
            info = self.info(submission_id)
        return info


def _to_info(d: Any) -> JobInfo:
    def secs(ms: int | None) -> float | None:
        return ms / 1000.0 if ms else None

    return JobInfo(
        submission_id=d.submission_id or d.job_id or "",
        job_id=d.job_id,
        status=str(d.status.value if hasattr(d.status, "value") else d.status),
        message=d.message or "",
        start_time=secs(d.start_time),
        end_time=secs(d.end_time),
        metadata=dict(d.metadata or {}),
        driver_exit_code=getattr(d, "driver_exit_code", None),
    )
