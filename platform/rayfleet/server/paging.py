"""Caps on what one response carries: log pages and tails, list pages by item count and bytes.

The bounds are ``limits.LOG_PAGE_MAX_BYTES``, ``limits.LIST_PAGE_MAX_ITEMS`` and
``limits.LIST_PAGE_MAX_BYTES``; the routes of both APIs use these helpers so one rule holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..api import limits


@dataclass(frozen=True)
class LogPage:
    data: bytes        # the page, UTF-8 bytes [offset, next_offset) of the whole log
    offset: int
    next_offset: int   # where the next page starts; == size at the end
    size: int          # bytes of the whole log so far


def log_page(text: str, offset: int, limit: int) -> LogPage:
    """Bytes ``[offset, offset+limit)`` of ``text`` (UTF-8); ``limit`` is capped at LOG_PAGE_MAX_BYTES.
    A page may end inside a multi-byte character: joining pages gives the log back exactly."""
    raw = text.encode()
    start = min(max(offset, 0), len(raw))
    end = min(start + max(1, min(limit, limits.LOG_PAGE_MAX_BYTES)), len(raw))
    return LogPage(raw[start:end], start, end, len(raw))


def log_tail(text: str, max_bytes: int = limits.LOG_PAGE_MAX_BYTES) -> str:
    """The whole log if it fits in ``max_bytes``, else its last bytes after a first line saying so."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    kept = raw[-max_bytes:].decode(errors="ignore")
    note = (f"[rayfleet] log cut: showing the last {len(kept.encode())} of {len(raw)} bytes; "
            "GET /api/v1/jobs/<id>/logs?offset=N pages through all of it\n")
    return note + kept


def encoded_size(item: Any) -> int:
    return len(json.dumps(item, separators=(",", ":"), default=str).encode())


def fill_page(batches: Callable[[int, int], tuple[list[Any], int | None]], cursor: int, limit: int,
              encode: Callable[[Any], dict[str, Any]], keep: Callable[[Any], bool] = lambda _: True,
              recut: Callable[[int, int], int | None] | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Items of one page, at most ``limit`` of them and LIST_PAGE_MAX_BYTES of encoded JSON.

    ``batches(cursor, n)`` returns up to ``n`` records after ``cursor`` and the next cursor (None at the
    end); ``recut(cursor, n)`` is the cursor after the first ``n`` records from ``cursor``, used when the
    byte cap ends a page inside a batch. Returns the encoded items and the cursor of the next page.
    """
    items: list[dict[str, Any]] = []
    size = 0
    nxt: int | None = cursor
    while nxt is not None and len(items) < limit:
        start = nxt
        recs, nxt = batches(start, limit - len(items))
        for i, rec in enumerate(recs):
            if not keep(rec):
                continue
            item = encode(rec)
            size += encoded_size(item)
            if size > limits.LIST_PAGE_MAX_BYTES and items:
                # This item starts the next page: the cursor after the first i records of the batch.
                return items, (start if i == 0 else (recut(start, i) if recut else start))
            items.append(item)
    return items, nxt


def tail_items(items: Iterable[dict[str, Any]], max_items: int = limits.LIST_PAGE_MAX_ITEMS) -> tuple[list[dict[str, Any]], int]:
    """The newest ``max_items`` items (and at most LIST_PAGE_MAX_BYTES of them), in their order, and
    how many there were in all."""
    from collections import deque

    last: deque[dict[str, Any]] = deque(maxlen=max_items)
    total = 0
    for item in items:
        last.append(item)
        total += 1
    out: list[dict[str, Any]] = []
    size = 0
    for item in reversed(last):
        size += encoded_size(item)
        if size > limits.LIST_PAGE_MAX_BYTES and out:
            break
        out.append(item)
    out.reverse()
    return out, total
