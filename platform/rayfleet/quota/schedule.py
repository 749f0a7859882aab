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
from datetime import UTC, datetime, timedelta
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


def next_change(config: QuotaConfig, now: float, *, within_days: int = 8) -> float | None:
    """The first moment after ``now`` at which a window of ``config`` starts or ends (epoch
    seconds), looked for up to ``within_days`` ahead; None if there is none."""
    found = changes(config, now, now + within_days * 86400.0)
    return found[0] if found else None


def changes(config: QuotaConfig, start: float, end: float) -> tuple[float, ...]:
    """Every moment in (``start``, ``end``] at which a window of ``config`` starts or ends, in
    order: a candidate edge on a day the window does not apply changes nothing and is left out."""
    found: set[float] = set()
    for q in config.queues:
        for w in q.schedule:
            found.update(_edges(w, start, end))
    return tuple(sorted(found))


def _edges(window: QuotaWindow, start: float, end: float) -> list[float]:
    zone = _zone(window.timezone)
    day0 = datetime.fromtimestamp(start, tz=UTC).astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    days = int((end - start) // 86400) + 2
    minutes = {parse_hhmm(window.start), parse_hhmm(window.end)}
    candidates = (t for d in range(-1, days + 1) for m in minutes
                  if start < (t := (day0 + timedelta(days=d, minutes=m)).replace(tzinfo=zone).timestamp()) <= end)
    return [t for t in candidates if window_active(window, t) != window_active(window, t - 1.0)]
