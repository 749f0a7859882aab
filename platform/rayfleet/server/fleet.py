"""The Fleet: one control service's state — config, store, backend, controller — and the
operations the HTTP layer calls. The HTTP layer validates, authorises and writes specs through
here; it never launches anything itself (the controller does).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..api import JobState, Service, TrainJob
from ..backends.base import Backend
from ..config import PlatformConfig
from ..errors import Conflict, FieldProblem, SpecError
from . import admission
from .auth import Principal
from .store import Record, Store


class Fleet:
    def __init__(self, config: PlatformConfig, backend: Backend, data_dir: str | Path, *, controller_interval: float = 1.0):
        from .controller import Controller
        from .services import ServiceManager

        self.config = config
        self.backend = backend
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("logs", "packages"):
            (self.data_dir / sub).mkdir(exist_ok=True)
        self.store = Store(self.data_dir / "rayfleet.db")
        self.services = ServiceManager(self)
        self.controller = Controller(self, interval=controller_interval)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
        self.store.close()

    # ------------------------------------------------------------ tenancy

    def team_of_queue(self, queue: str) -> str | None:
        q = self.config.queues.get(queue)
        return q.spec.team if q else None

    def default_queue(self, principal: Principal) -> str:
        for name, q in self.config.queues.items():
            if q.spec.team == principal.team:
                return name
        raise SpecError(FieldProblem(field="metadata.queue", problem="no queue given and the caller's team owns no queue"))

    # ------------------------------------------------------------ jobs

    def submit_job(self, job: TrainJob, principal: Principal) -> tuple[Record, bool]:
        """Validate, authorise and store a job (state QUEUED). Returns (record, created).

        Resubmitting the same id with the same spec returns the stored job (idempotent);
        the same id with a different spec is a 409.
        """
        placement = admission.check_job(self.config, job)
        team = self.team_of_queue(job.spec.queue)
        principal.require(team, f"queue {job.spec.queue!r}")
        existing = self.store.find("TrainJob", job.name)
        if existing is not None:
            if existing.doc.spec == job.spec:  # type: ignore[attr-defined]
                principal.require(existing.team, f"job {job.name!r}")
                return existing, False
            raise Conflict(f"job {job.name!r} already exists with a different spec", field="metadata.name")
        now = datetime.now(UTC)
        job = job.model_copy(deep=True)
        job.status = type(job.status)(state=JobState.QUEUED, submitted_at=now, queued_at=now,
                                       message=f"queued in {job.spec.queue} (priority {placement.priority})")
        try:
            rec = self.store.create(job, team=team, event="Submitted", message=job.status.message)
        except Conflict:
            # Lost a race with an identical resubmission: answer as the idempotent path does.
            existing = self.store.get("TrainJob", job.name)
            if existing.doc.spec == job.spec:  # type: ignore[attr-defined]
                return existing, False
            raise
        self.controller.wake()
        return rec, True

    def get_job(self, name: str, principal: Principal) -> Record:
        rec = self.store.get("TrainJob", name)
        principal.require(rec.team, f"job {name!r}")
        return rec

    def stop_job(self, name: str, principal: Principal) -> TrainJob:
        self.get_job(name, principal)
        return self.controller.request_stop(name)

    def delete_job(self, name: str, principal: Principal) -> None:
        rec = self.get_job(name, principal)
        if not rec.doc.status.state.terminal:  # type: ignore[attr-defined]
            raise Conflict(f"job {name!r} is {rec.doc.status.state.value}; stop it before deleting it", field="status.state")  # type: ignore[attr-defined]
        self.store.delete("TrainJob", name)

    def job_logs(self, name: str, principal: Principal) -> str:
        rec = self.get_job(name, principal)
        job: TrainJob = rec.doc  # type: ignore[assignment]
        parts = []
        for attempt in range(1, job.status.attempt + 1):
            path = self.log_path(name, attempt)
            live = attempt == job.status.attempt and job.status.state in (JobState.STARTING, JobState.RUNNING, JobState.STOPPING)
            if live:
                try:
                    text = self.backend.logs(f"{name}-{attempt}")
                except Exception as e:
                    text = f"[rayfleet] logs unavailable: {e}\n"
            elif path.exists():
                text = path.read_text()
            else:
                continue
            if job.status.attempt > 1:
                parts.append(f"[rayfleet] ---- attempt {attempt} ----\n")
            parts.append(text)
        return "".join(parts)

    def log_path(self, name: str, attempt: int) -> Path:
        d = self.data_dir / "logs" / name
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{attempt}.log"

    def checkpoint_dir(self, job: TrainJob) -> str | None:
        if job.spec.checkpoint.storage_path:  # a directory or a URI (gs://bucket/prefix): join as text
            return job.spec.checkpoint.storage_path.rstrip("/") + "/" + job.name
        # None: the backend's default per job, where its Ray processes may write (never inside this
        # data directory, which is closed to them; see docs/security.md).
        return None

    def placement_flavors(self, job: TrainJob) -> tuple[str, ...]:
        """Flavors a stored job may run on (re-derived from the config: a config change applies)."""
        try:
            return admission.check_gang(self.config, job.spec.queue, job.spec.gang, path="spec.gang")
        except (SpecError, KeyError):
            return ()

    # ------------------------------------------------------------ packages (ray job submit --working-dir)

    def store_package(self, uri: str, data: bytes) -> None:
        name = uri.split("://", 1)[-1]
        if "/" in name or name.startswith("."):
            raise SpecError(FieldProblem(field="package_name", problem=f"invalid package name {name!r}"))
        path = self.data_dir / "packages" / name
        tmp = path.with_suffix(path.suffix + f".{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        self.store.add_package(uri, str(path), len(data))

    def has_package(self, uri: str) -> bool:
        path = self.store.package_path(uri)
        return path is not None and Path(path).exists()

    def push_packages(self, runtime_env: dict[str, Any]) -> None:
        """Hand uploaded packages a runtime_env names to the backend's cluster before a launch."""
        uris = []
        wd = runtime_env.get("working_dir")
        if isinstance(wd, str):
            uris.append(wd)
        uris += [m for m in runtime_env.get("py_modules") or [] if isinstance(m, str)]
        for uri in uris:
            path = self.store.package_path(uri)
            if path is not None:
                self.backend.upload_package(uri, Path(path).read_bytes())

    # ------------------------------------------------------------ queues

    def queue_view(self, name: str) -> dict[str, Any]:
        """A queue's spec with live status: quota and usage per flavor and resource, borrowing,
        lending, pending and admitted workloads, and why each waiting one waits."""
        from ..api import format_quantity

        q = self.config.queues[name]
        usage = self.controller.quota.usage(name)

        def table(values) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for (flavor, res), v in sorted(values.items()):
                if v:
                    out.setdefault(flavor, {})[res] = format_quantity(res, v)
            return out

        admitted = [wid for wid, a in self.controller.quota.state.admitted.items() if a.workload.queue == name]
        waiting = sorted((w for w in self.controller.waiting.values() if w.queue == name), key=lambda w: w.position)
        d = q.to_dict()
        d["status"] = {
            "nominal": table(usage.nominal),
            "usage": table(usage.usage),
            "borrowed": table(usage.borrowed),
            "lent": table(usage.lent),
            "pending": len(waiting),
            "admitted": len(admitted),
            "admittedWorkloads": admitted,
            "waiting": [w.to_dict() for w in waiting],
        }
        return d

    # ------------------------------------------------------------ services

    def deploy_service(self, svc: Service, principal: Principal) -> tuple[Record, bool]:
        return self.services.deploy(svc, principal)

    def get_service(self, name: str, principal: Principal) -> Record:
        rec = self.store.get("Service", name)
        principal.require(rec.team, f"service {name!r}")
        return rec

    def delete_service(self, name: str, principal: Principal) -> None:
        self.get_service(name, principal)
        self.services.delete(name)
