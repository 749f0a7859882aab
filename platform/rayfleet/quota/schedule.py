"""Quota schedules: a queue's quota by time of day and day of week, at an injected ``now``.

A :class:`~rayfleet.quota.types.QuotaWindow` applies on its ``days`` from ``start`` to ``end``
(local time in its IANA ``timezone``); an ``end`` at or before ``start`` wraps past midnight, so
"mon..fri 20:00-08:00" covers each weeknight until the next morning (the days name the evening the
window starts). When several windows of a queue apply at once, the first one listed wins for each
(flavor, resource) it overrides.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache

from .types import (
    DAYS,
    FlavorResource,
    QueueConfig,
    QuotaConfig,
    QuotaWindow,
    ResourceQuota,
    merge_quota,
    parse_hhmm,
)


@lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def window_active(window: QuotaWindow, now: float) -> bool:
    """Whether ``window`` is in force at ``now`` (seconds since the epoch)."""
    local = datetime.fromtimestamp(now, tz=UTC).astimezone(_zone(window.timezone))
    minute = local.hour * 60 + local.minute
    today = DAYS[local.weekday()]
    yesterday = DAYS[(local.weekday() - 1) % 7]
    start, end = parse_hhmm(window.start), parse_hhmm(window.end)
    if start < end:
        return today in window.days and start <= minute < end
    # Wraps past midnight (or, start == end, covers a whole day from start to start).
    return (today in window.days and minute >= start) or (yesterday in window.days and minute < end)


def effective_quotas(queue: QueueConfig, now: float) -> dict[FlavorResource, ResourceQuota]:
    """The queue's quotas at ``now``, with the windows in force applied."""
    out = dict(queue.quotas)
    overridden: set[FlavorResource] = set()
    for window in queue.schedule:
        if not window_active(window, now):
            continue
        for fr, rq in window.quotas.items():
            if fr in overridden or fr not in out:
                continue
            out[fr] = merge_quota(queue.quotas[fr], rq)
            overridden.add(fr)
    return out


def active_windows(queue: QueueConfig, now: float) -> list[str]:
    """Names of the queue's windows in force at ``now``."""
    return [w.name for w in queue.schedule if window_active(w, now)]


def effective_config(config: QuotaConfig, now: float) -> QuotaConfig:
    """``config`` with every queue's schedule evaluated at ``now`` (the result has no schedules)."""
    queues = tuple(
        replace(q, quotas=effective_quotas(q, now), schedule=()) if q.schedule else q for q in config.queues
    )
    return replace(config, queues=queues)


def has_schedules(config: QuotaConfig) -> bool:
    return any(q.schedule for q in config.queues)
