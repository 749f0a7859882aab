"""Leader election among control-service replicas that share one store (:mod:`.leases` has the rules).

Every replica serves the API, the Ray Jobs API and the metrics; the one that holds the
``controller`` lease also runs the controller. :class:`LeaderElector` is the replica's side:
:meth:`~LeaderElector.step` is one try (renew the lease held, or watch the holder's renewals and
take the lease once they stop for ``lease_duration``), with both clocks passed in, so tests step
two replicas by hand; :meth:`~LeaderElector.start` runs it every ``retry_period`` in a thread.

``renew_deadline``: a leader that could not renew for that long (its store unreachable) stops
leading before another replica can take over (``lease_duration`` after its last renewal), so two
controllers never act at once; and whatever it still writes is fenced by the lease's generation.
The defaults (10 s, 7 s, 2 s: Kubernetes' 15 / 10 / 2 made shorter) give a take-over within
``lease_duration + retry_period`` = 12 s of a leader's death.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import FieldProblem, SpecError
from .leases import CONTROLLER, LeaseRecord, Leases
from .store import Store

log = logging.getLogger("rayfleet.leader")


@dataclass(frozen=True)
class ElectionTiming:
    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise SpecError(FieldProblem(field="--lease-duration", problem=(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period:g} < {self.renew_deadline:g} < {self.lease_duration:g}")))


def replica_id() -> str:
    """This process's name as a lease holder: the host (a pod's name on GKE), the pid and a random
    part (a restarted process is another holder)."""
    return f"{socket.gethostname()}/{os.getpid()}-{secrets.token_hex(3)}"


class LeaderElector:
    """``on_started(generation)`` runs when this replica starts leading, ``on_stopped(why)`` when it
    stops (taken over, could not renew, released); both in the elector's thread."""

    def __init__(self, store: Store, *, on_started: Callable[[int], None], on_stopped: Callable[[str], None],
                 holder: str | None = None, lease: str = CONTROLLER, timing: ElectionTiming = ElectionTiming(),
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 on_following: Callable[[], None] | None = None):
        self.leases = Leases(store)
        self.holder = holder or replica_id()
        self.name = lease
        self.timing = timing
        self.clock, self.monotonic = clock, monotonic
        self.on_started, self.on_stopped, self.on_following = on_started, on_stopped, on_following
        self.held: LeaseRecord | None = None   # the lease while this replica leads
        self._renewed_at = 0.0                  # monotonic: the last successful renewal (or the take-over)
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0                 # monotonic: when the record last changed, as seen from here
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ state

    @property
    def generation(self) -> int | None:
        return self.held.generation if self.held is not None else None

    def leading(self) -> bool:
        """This replica leads and renewed within ``renew_deadline`` (checked before acting on a
        backend: a paused leader that resumes acts on nothing until it has renewed again)."""
        return self.held is not None and self.monotonic() - self._renewed_at < self.timing.renew_deadline

    def role(self) -> str:
        return "leader" if self.leading() else "follower"

    # ------------------------------------------------------------ one try

    def step(self) -> None:
        now = self.monotonic()
        try:
            if self.held is not None:
                self._renew(now)
            else:
                self._try_acquire(now)
            self.last_error = None
        except Exception as e:   # the store unreachable, a fault: the next try tries again
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("leader election: %s", self.last_error)
            if self.held is not None and now - self._renewed_at >= self.timing.renew_deadline:
                self._lose(f"could not renew the lease for {now - self._renewed_at:.1f}s ({self.last_error})")

    def _renew(self, now: float) -> None:
        assert self.held is not None
        renewed = self.leases.renew(self.held, self.clock())
        if renewed is None:
            current = self.leases.get(self.name)
            self._lose(f"the lease was taken over by {current.holder if current else 'nobody'}"
                       f" (generation {current.generation if current else '-'})")
            return
        self.held, self._renewed_at = renewed, now

    def _try_acquire(self, now: float) -> None:
        record = self.leases.get(self.name)
        if record is not None and record.holder and record.holder != self.holder:
            if self._observed is None or (record.holder, record.version) != (self._observed.holder, self._observed.version):
                self._observed, self._observed_at = record, now   # the holder renewed (or changed): it is alive
            if now - self._observed_at < self.timing.lease_duration:
                if self.on_following is not None:
                    self.on_following()
                return
        got = self.leases.acquire(self.name, self.holder, record, self.clock())
        if got is None:   # another replica was first
            self._observed = None
            return
        self.held, self._renewed_at, self._observed = got, now, None
        log.warning("this replica (%s) now leads: %s lease generation %d", self.holder, self.name, got.generation)
        self.on_started(got.generation)

    def _lose(self, why: str) -> None:
        self.held, self._observed = None, None
        log.warning("this replica (%s) no longer leads: %s", self.holder, why)
        self.on_stopped(why)

    # ------------------------------------------------------------ the thread

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="rayfleet-leader-election", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.timing.retry_period)

    def stop(self) -> None:
        """Stop trying; a lease held is released (another replica takes it at its next try)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.held is not None:
            held = self.held
            self._lose("this replica is stopping")
            try:
                self.leases.release(held, self.clock())
            except Exception as e:   # the store gone: the others wait the lease out instead
                log.warning("could not release the %s lease: %s", self.name, e)
