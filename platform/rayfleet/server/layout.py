"""Where a job's files live under the data directory. Everything hangs off the job's uid, so a new
job with an old name starts with empty logs and no checkpoints (a job stored before uids existed
keeps the old name-only paths)."""

from __future__ import annotations

from pathlib import Path

from ..api import TrainJob
from ..backends.base import checkpoint_dir


class DataLayout:
    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("logs", "packages"):
            (self.data_dir / sub).mkdir(exist_ok=True)

    @staticmethod
    def _key(job: TrainJob) -> Path:
        return Path(job.name) / job.metadata.uid if job.metadata.uid else Path(job.name)

    def log_path(self, job: TrainJob, attempt: int) -> Path:
        """``logs/<name>/<uid>/<attempt>.log``: where a data directory from before store migration 9
        kept an attempt's saved log (they are in the store now: :mod:`.shared_bytes`)."""
        return self.data_dir / "logs" / self._key(job) / f"{attempt}.log"

    def checkpoint_dir(self, job: TrainJob) -> str | None:
        """The user's ``checkpoint.storagePath``/<job>, else None: the backend's default
        (``<its root>/checkpoints/<job>/<uid>``), never inside this data directory, which is closed to
        the Ray processes. The one rule: :func:`rayfleet.backends.base.checkpoint_dir`."""
        return checkpoint_dir(job, None)
