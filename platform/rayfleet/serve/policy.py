"""The autoscaling policy of a Service's deployment: Serve's own, observed.

Serve decides the replica count exactly as with its default policy (``target_ongoing_requests``,
upscale/downscale delays, scaling factors, bounds): :class:`QuotaAwarePolicy` returns what
``replica_queue_length_autoscaling_policy`` returns, and Serve applies delays and the
``min_replicas``/``max_replicas`` bounds itself. rayfleet sets ``max_replicas`` to the number of groups
quota granted, so Serve never runs more than that.

What Serve cannot report is how many replicas it *would* run without that cap; Serve 2.60 exposes
only the capped ``target_num_replicas`` (``serve.status()``, the dashboard), and the
``serve_autoscaling_desired_replicas`` metric is the per-tick raw decision, which falls back to the
capped target while an upscale delay runs. So the policy also keeps a shadow decision, **wanted**:
the same queue-length arithmetic and the same delays, bounded by the Service's own
``minReplicas``/``maxReplicas`` instead of the granted cap. It publishes wanted (with the request
total it came from, the current target and the cap) to Ray's internal KV under
``rayfleet`` / ``serve/<app>/<deployment>``; :mod:`rayfleet.serve.deployer` reads it, the controller
asks quota for ``wanted`` groups, and sets the cap to what was granted.

This module runs inside the Serve controller (Serve imports the policy by its import path and
pickles it by value); it imports only :mod:`rayfleet.serve.names` of rayfleet.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy

from rayfleet.serve.names import KV_NAMESPACE, kv_key

logger = logging.getLogger("ray.serve")


class QuotaAwarePolicy:
    """Serve's default policy plus the uncapped shadow decision ("wanted"), published to the GCS KV.

    Serve instantiates it once per deployment config with ``policy_kwargs``.
    """

    def __init__(self, min_replicas: int, max_replicas: int, publish_interval_s: float = 1.0) -> None:
        self.min_replicas = int(min_replicas)
        self.max_replicas = int(max_replicas)
        self.publish_interval_s = float(publish_interval_s)
        self._wanted: int | None = None
        self._direction = 0
        self._since: float | None = None
        self._last_publish = 0.0
        self._last_payload: tuple | None = None

    def __call__(self, ctx: Any) -> tuple[float, dict[str, Any]]:
        desired, state = replica_queue_length_autoscaling_policy(ctx)
        try:
            self._shadow(ctx, float(desired))
        except Exception:  # never let bookkeeping break Serve's autoscaling
            logger.exception("rayfleet: could not update the wanted replica count")
        return desired, state

    # ------------------------------------------------------------------ shadow decision

    def _clamp(self, n: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, n))

    def _shadow(self, ctx: Any, desired: float) -> None:
        cfg = ctx.config
        now = ctx.current_time if ctx.current_time is not None else time.time()
        key = kv_key(ctx.app_name, ctx.deployment_name)
        if self._wanted is None:
            self._wanted = self._clamp(self._restore(key, ctx.target_num_replicas))
        wanted = self._wanted
        if ctx.current_num_replicas == 0:
            # Nothing reports load while nothing runs; a request waiting wants one replica.
            raw = max(wanted, 1) if ctx.total_num_requests > 0 else wanted
        else:
            delta = desired - wanted
            factor = cfg.get_upscaling_factor() if delta > 0 else cfg.get_downscaling_factor()
            raw = math.ceil(wanted + factor * delta - 1e-9)
            if math.ceil(desired - 1e-9) < wanted and raw == wanted:
                raw -= 1
        raw = self._clamp(raw)
        if raw == wanted:
            self._direction, self._since = 0, None
        else:
            direction = 1 if raw > wanted else -1
            if direction != self._direction:
                self._direction, self._since = direction, now
            if direction > 0:
                delay = cfg.upscale_delay_s
            elif wanted == 1 and raw == 0 and cfg.downscale_to_zero_delay_s is not None:
                delay = cfg.downscale_to_zero_delay_s
            else:
                delay = cfg.downscale_delay_s
            since = self._since if self._since is not None else now
            if now - since + 1e-6 >= delay:
                self._wanted = raw
                self._direction, self._since = 0, None
        self._publish(key, ctx, desired, now)

    # ------------------------------------------------------------------ KV

    def _restore(self, key: str, default: int) -> int:
        from ray.experimental import internal_kv

        try:
            raw = internal_kv._internal_kv_get(key, namespace=KV_NAMESPACE)
            if raw:
                return int(json.loads(raw)["wanted"])
        except Exception:
            logger.debug("rayfleet: no previous wanted replica count for %s", key)
        return default

    def _publish(self, key: str, ctx: Any, desired: float, now: float) -> None:
        from ray.experimental import internal_kv

        summary = (self._wanted, ctx.target_num_replicas, ctx.current_num_replicas, ctx.capacity_adjusted_max_replicas)
        if summary == self._last_payload and now - self._last_publish < self.publish_interval_s:
            return
        payload = {
            "wanted": self._wanted,
            "desired": round(desired, 3),
            "totalRequests": round(float(ctx.total_num_requests), 3),
            "target": ctx.target_num_replicas,
            "running": ctx.current_num_replicas,
            "cap": ctx.capacity_adjusted_max_replicas,
            "minReplicas": self.min_replicas,
            "maxReplicas": self.max_replicas,
            "targetOngoingRequests": ctx.config.get_target_ongoing_requests(),
            "time": now,
        }
        internal_kv._internal_kv_put(key, json.dumps(payload), overwrite=True, namespace=KV_NAMESPACE)
        self._last_payload = summary
        self._last_publish = now
