"""The KubeRay backend's API request budget: a token bucket, as client-go's rest config has one
(``QPS`` / ``Burst``; Kueue runs with 300 / 500) and the official Python client has none.

The bucket holds at most ``burst`` tokens and gains ``qps`` a second; a request takes one, waiting
for it when the bucket is empty. So over any stretch of ``T`` seconds at most ``burst + qps * T``
requests go out. :func:`limit_api_client` puts it in front of every HTTP request of a
``kubernetes.client.ApiClient`` (its ``rest_client.request``: gets, lists, writes and watches alike).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class TokenBucket:
    """``take()`` returns once a token is had. ``clock`` and ``sleep`` are injected (monotonic
    seconds), so the bucket is tested without waiting. Safe to share between threads."""

    def __init__(self, qps: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if not qps > 0:
            raise ValueError(f"qps must be more than 0, got {qps!r}")
        if not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be a whole number of at least 1, got {burst!r}")
        self.qps = float(qps)
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()
        self.taken = 0          # tokens handed out
        self.waited = 0         # takes that had to wait
        self.waited_s = 0.0     # seconds spent waiting, all takes together

    def _reserve(self) -> float:
        """Take a token now, in debt if need be; how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.qps)
            self._at = now
            self._tokens -= 1.0
            self.taken += 1
            if self._tokens >= 0:
                return 0.0
            wait = -self._tokens / self.qps
            self.waited += 1
            self.waited_s += wait
            return wait

    def take(self) -> float:
        """Wait for a token; the seconds waited. Reservations are taken in arrival order, as
        client-go's limiter does, so a waiting caller is never overtaken."""
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


_LIMITED = "_rayfleet_token_bucket"


def limit_api_client(api_client: Any, bucket: TokenBucket) -> TokenBucket:
    """Route every request of ``api_client`` through ``bucket``; an ApiClient already limited keeps
    its bucket (one budget per client), which is returned."""
    rest = api_client.rest_client
    have = getattr(rest, _LIMITED, None)
    if have is not None:
        return have  # type: ignore[no-any-return]
    request = rest.request

    def limited(*args: Any, **kwargs: Any) -> Any:
        bucket.take()
        return request(*args, **kwargs)

    rest.request = limited
    setattr(rest, _LIMITED, bucket)
    return bucket
