"""HTTP client of the control service, shared by the laptop API (``rayfleet.connect``) and the CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Literal, overload

import httpx

from .api import Service, TrainJob
from .api.wire import ServiceRecord, ServiceSubmit, TrainJobRecord, TrainJobSubmit
from .errors import (
    BackendError,
    Conflict,
    FieldProblem,
    Forbidden,
    NotFound,
    RayfleetError,
    SpecError,
    Unauthorized,
)

_BY_STATUS = {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
    except ValueError:
        body = {"message": resp.text}
    message = body.get("message") or resp.text
    if resp.status_code == 422 or body.get("problems"):
        problems = [FieldProblem(field=p.get("field") or "?", problem=p.get("problem") or "") for p in body.get("problems") or []]
        raise SpecError(problems or [FieldProblem(field=body.get("field") or "(request)", problem=message)])
    cls = _BY_STATUS.get(resp.status_code)
    if cls is not None:
        raise cls(message, field=body.get("field"))
    raise BackendError(f"rayfleet answered {resp.status_code}: {message}")


class FleetClient:
    """``fleet = rayfleet.connect(url, token=...)``.

    Jobs and services come back as handles whose ``.job`` / ``.service`` is the typed document of the
    last answer (:class:`~rayfleet.api.wire.TrainJobRecord`, :class:`~rayfleet.api.wire.ServiceRecord`);
    ``jobs(typed=True)`` and ``services(typed=True)`` list typed documents, plain calls list dicts.
    Errors arrive as the classes of :mod:`rayfleet.errors` (a 422 as SpecError naming each field).
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ raw

    def response(self, method: str, path: str, **kw) -> httpx.Response:
        """The raw response of a successful call (headers included); errors raise as in request()."""
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise BackendError(f"cannot reach rayfleet at {self.url}: {e}") from None
        _raise_for(resp)
        return resp

    def request(self, method: str, path: str, **kw) -> Any:
        resp = self.response(method, path, **kw)
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.text

    def listed(self, path: str, cursor_param: str = "cursor", **params: Any) -> list[dict[str, Any]]:
        """Every item of a list that pages with the X-Next-Cursor header."""
        out: list[dict[str, Any]] = []
        cursor: str | None = "0"
        while cursor is not None:
            resp = self.response("GET", path, params={**params, cursor_param: cursor})
            out += resp.json()
            cursor = resp.headers.get("X-Next-Cursor")
        return out

    def log_text(self, name: str) -> str:
        """A job's whole log, following its pages (at most 1 MiB each)."""
        data, offset = bytearray(), 0
        while True:
            resp = self.response("GET", f"/api/v1/jobs/{name}/logs", params={"offset": offset})
            data += resp.content
            nxt = int(resp.headers.get("X-Next-Offset", offset + len(resp.content)))
            if nxt <= offset or nxt >= int(resp.headers.get("X-Log-Size", nxt)):
                return data.decode(errors="replace")
            offset = nxt

    # ------------------------------------------------------------ tokens (admin)

    def create_token(self, *, team: str | None = None, admin: bool = False, label: str = "") -> dict[str, Any]:
        """Mint a token; the answer's ``token`` is its only copy."""
        return self.request("POST", "/api/v1/tokens", json={"team": team, "admin": admin, "label": label})

    def tokens(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v1/tokens")

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/api/v1/tokens/{token_id}")

    # ------------------------------------------------------------ jobs

    def submit(self, job: TrainJob | TrainJobSubmit | dict[str, Any]) -> JobHandle:
        """Submit a TrainJob; resubmitting the same ``metadata.name`` is idempotent."""
        body = job.to_dict() if isinstance(job, TrainJob | TrainJobSubmit) else job
        body = {k: v for k, v in body.items() if k != "status"}
        data = self.request("POST", "/api/v1/jobs", json=body)
        return JobHandle(self, data["metadata"]["name"], data)

    def job(self, name: str) -> JobHandle:
        return JobHandle(self, name, self.request("GET", f"/api/v1/jobs/{name}"))

    @overload
    def jobs(self, *, state: list[str] | str | None = None, queue: str | None = None, team: str | None = None,
             limit: int = 100, typed: Literal[False] = False) -> list[dict[str, Any]]: ...

    @overload
    def jobs(self, *, state: list[str] | str | None = None, queue: str | None = None, team: str | None = None,
             limit: int = 100, typed: Literal[True]) -> list[TrainJobRecord]: ...

    def jobs(self, *, state: list[str] | str | None = None, queue: str | None = None, team: str | None = None,
             limit: int = 100, typed: bool = False) -> list[dict[str, Any]] | list[TrainJobRecord]:
        """Every job the caller may see, following pages; ``typed=True``: as TrainJobRecords."""
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = [state] if isinstance(state, str) else list(state)
        if queue:
            params["queue"] = queue
        if team:
            params["team"] = team
        out: list[dict[str, Any]] = []
        cursor: int | None = 0
        while cursor is not None:
            page = self.request("GET", "/api/v1/jobs", params={**params, "cursor": cursor})
            out += page["items"]
            cursor = page["next"]
        return [TrainJobRecord.model_validate(d) for d in out] if typed else out

    # ------------------------------------------------------------ queues, pools

    def queues(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v1/queues")

    def queue(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/queues/{name}")

    def pools(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v1/pools")

    # ------------------------------------------------------------ clusters

    def clusters(self) -> list[dict[str, Any]]:
        """Every cluster: backend, whether it answers, whether it is cordoned and why."""
        return self.request("GET", "/api/v1/clusters")

    def cordon_cluster(self, name: str, *, drain: bool = False, reason: str = "") -> dict[str, Any]:
        """Admin: no new work on cluster ``name``; ``drain``: its jobs checkpoint and move, its services come up elsewhere first."""
        return self.request("POST", f"/api/v1/clusters/{name}/cordon", json={"drain": drain, "reason": reason})

    def uncordon_cluster(self, name: str) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/clusters/{name}/uncordon")

    # ------------------------------------------------------------ services

    def deploy(self, svc: Service | ServiceSubmit | dict[str, Any]) -> ServiceHandle:
        """Deploy a Service; redeploying the same ``metadata.name`` is idempotent."""
        body = svc.to_dict() if isinstance(svc, Service | ServiceSubmit) else svc
        body = {k: v for k, v in body.items() if k != "status"}
        data = self.request("POST", "/api/v1/services", json=body)
        return ServiceHandle(self, data["metadata"]["name"], data)

    def service(self, name: str) -> ServiceHandle:
        return ServiceHandle(self, name, self.request("GET", f"/api/v1/services/{name}"))

    @overload
    def services(self, *, typed: Literal[False] = False) -> list[dict[str, Any]]: ...

    @overload
    def services(self, *, typed: Literal[True]) -> list[ServiceRecord]: ...

    def services(self, *, typed: bool = False) -> list[dict[str, Any]] | list[ServiceRecord]:
        """Every service the caller may see, following pages; ``typed=True``: as ServiceRecords."""
        out = self.listed("/api/v1/services")
        return [ServiceRecord.model_validate(d) for d in out] if typed else out


class JobHandle:
    """A submitted job. ``data`` is the last answer as a dict, ``job`` the same answer typed;
    ``status()``, ``wait()`` and ``stop()`` refresh both."""

    def __init__(self, fleet: FleetClient, name: str, data: dict[str, Any]):
        self.fleet, self.name, self.data = fleet, name, data

    @property
    def job(self) -> TrainJobRecord:
        """The job as last answered: the stored TrainJob, metadata.resourceVersion and team included."""
        return TrainJobRecord.model_validate(self.data)

    def refresh(self) -> dict[str, Any]:
        self.data = self.fleet.request("GET", f"/api/v1/jobs/{self.name}")
        return self.data

    def status(self) -> dict[str, Any]:
        return self.refresh()["status"]

    @property
    def state(self) -> str:
        return self.data["status"]["state"]

    def wait(self, timeout: float | None = None, poll: float = 1.0) -> dict[str, Any]:
        """Block until the job ends; returns its final status. TimeoutError after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status()
            if st["state"] in TERMINAL:
                return st
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.name} still {st['state']} after {timeout}s: {st.get('message', '')}")
            time.sleep(poll)

    def logs(self, follow: bool = False, poll: float = 1.0) -> str | Iterator[str]:
        """All logs so far, or (follow=True) an iterator of new text until the job ends."""
        if not follow:
            return self.fleet.log_text(self.name)
        return self._follow(poll)

    def _follow(self, poll: float) -> Iterator[str]:
        sent = 0
        while True:
            state = self.status()["state"]
            text = self.fleet.log_text(self.name)
            if len(text) < sent:
                sent = 0
            if len(text) > sent:
                yield text[sent:]
                sent = len(text)
            if state in TERMINAL:
                return
            time.sleep(poll)

    def events(self) -> list[dict[str, Any]]:
        return self.fleet.listed(f"/api/v1/jobs/{self.name}/events", cursor_param="after")

    def stop(self) -> dict[str, Any]:
        self.data = self.fleet.request("POST", f"/api/v1/jobs/{self.name}/stop")
        return self.data["status"]

    def __repr__(self) -> str:
        return f"<JobHandle {self.name} {self.data.get('status', {}).get('state')}>"


class ServiceHandle:
    """A deployed service. ``data`` is the last answer as a dict, ``service`` the same answer typed;
    ``status()`` and ``wait_running()`` refresh both."""

    def __init__(self, fleet: FleetClient, name: str, data: dict[str, Any]):
        self.fleet, self.name, self.data = fleet, name, data

    @property
    def service(self) -> ServiceRecord:
        """The service as last answered: the stored Service, metadata.resourceVersion and team included."""
        return ServiceRecord.model_validate(self.data)

    def status(self) -> dict[str, Any]:
        self.data = self.fleet.request("GET", f"/api/v1/services/{self.name}")
        return self.data["status"]

    @property
    def url(self) -> str | None:
        return self.status().get("url")

    def events(self) -> list[dict[str, Any]]:
        """The service's event log: submission, admissions of replica groups, preemptions, deletion."""
        return self.fleet.listed(f"/api/v1/services/{self.name}/events", cursor_param="after")

    def wait_running(self, timeout: float = 120.0, poll: float = 1.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st["state"] == "RUNNING" and st.get("replicasRunning", 0) >= 1:
                return st
            if st["state"] == "FAILED":
                raise RayfleetError(f"service {self.name} failed: {st.get('message')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {self.name} still {st['state']} after {timeout}s: {st.get('message', '')}")
            time.sleep(poll)

    def delete(self) -> None:
        self.fleet.request("DELETE", f"/api/v1/services/{self.name}")
