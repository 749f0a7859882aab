"""Tenancy over every route of the control service: two teams, team A's objects, and every attempt
of team B at them refused without leaking anything of A's.

``RULES`` names, for every route the app serves (rayfleet's API, the Ray Jobs API, the logs
websocket, the ops and docs pages), what team B may do with team A's things there; a test checks
it covers exactly the app's routes, so a route added later without a tenancy rule fails here.
The local Ray cluster itself (a ``ray job submit`` straight to its dashboard without the cluster's
token, or with a wrong one, is refused) is covered by ``tests/backends/test_local.py`` (slow).
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import zipfile
from pathlib import Path

import pytest
from starlette.websockets import WebSocketDisconnect

from rayfleet.backends.base import RunState, RunStatus, run_id_for
from rayfleet.server import transitions as tr
from rayfleet.server.app import create_app
from rayfleet.server.store import TOKEN_ID_LEN, hash_token

NOW = 2_000_000.0

OPEN = "open"            # no token needed; answers the same to everyone and names no team's objects
PLATFORM = "platform"    # platform config and capacity, the same for every team: 200, nothing of team A's
LISTING = "listing"      # lists only the caller's team's objects
OWN = "own"              # names one object: team A's answers team B word for word as a missing one (404)
SUBMIT = "submit"        # writes a new object: team A's queue refused; team A's live name refused, naming no owner
PACKAGE = "package"      # per-team name space: team B sees, runs and overwrites only its own copy
ADMIN = "admin"          # platform administration: a team token gets 403

WS = "WEBSOCKET"
RULES: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/docs/oauth2-redirect"): OPEN,
    ("GET", "/redoc"): OPEN,
    ("GET", "/healthz"): OPEN,
    ("GET", "/api/version"): OPEN,
    ("GET", "/metrics"): ADMIN,
    ("GET", "/api/v1/pools"): PLATFORM,
    ("GET", "/api/v1/flavors"): PLATFORM,
    ("GET", "/api/v1/clusters"): PLATFORM,
    ("POST", "/api/v1/clusters/{name}/cordon"): ADMIN,
    ("POST", "/api/v1/clusters/{name}/uncordon"): ADMIN,
    ("GET", "/api/v1/queues"): LISTING,
    ("GET", "/api/v1/queues/{name}"): OWN,
    ("POST", "/api/v1/jobs"): SUBMIT,
    ("GET", "/api/v1/jobs"): LISTING,
    ("GET", "/api/v1/jobs/{name}"): OWN,
    ("GET", "/api/v1/jobs/{name}/events"): OWN,
    ("GET", "/api/v1/jobs/{name}/logs"): OWN,
    ("POST", "/api/v1/jobs/{name}/stop"): OWN,
    ("POST", "/api/v1/services"): SUBMIT,
    ("GET", "/api/v1/services"): LISTING,
    ("GET", "/api/v1/services/{name}"): OWN,
    ("GET", "/api/v1/services/{name}/events"): OWN,
    ("DELETE", "/api/v1/services/{name}"): OWN,
    ("GET", "/api/v1/quarantine"): ADMIN,
    ("GET", "/api/v1/tokens"): ADMIN,
    ("POST", "/api/v1/tokens"): ADMIN,
    ("DELETE", "/api/v1/tokens/{token_id}"): ADMIN,
    ("GET", "/api/packages/{protocol}/{package_name}"): PACKAGE,
    ("PUT", "/api/packages/{protocol}/{package_name}"): PACKAGE,
    ("POST", "/api/jobs/"): SUBMIT,
    ("GET", "/api/jobs/"): LISTING,
    ("GET", "/api/jobs/{job_id}"): OWN,
    ("POST", "/api/jobs/{job_id}/stop"): OWN,
    ("DELETE", "/api/jobs/{job_id}"): OWN,
    ("GET", "/api/jobs/{job_id}/logs"): OWN,
    (WS, "/api/jobs/{job_id}/logs/tail"): OWN,
}

A_JOB, A_LIVE, A_SVC = "a-secret-job", "a-live-job", "a-secret-svc"
A_LOG = "TEAM-A-LOG-7f3c1e"
A_PKG_MARK = b"TEAM-A-PKG-9d1e42"
A_PKG = "gcs://_ray_pkg_a1b2c3d4e5f60718.zip"
OTHER_PKG = "gcs://_ray_pkg_0f0e0d0c0b0a0908.zip"
ENTRYPOINT = "python train.py --secret-flag"


def app_routes(app) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, websockets as ``WEBSOCKET``; HEAD, which Starlette adds
    to a GET route, is that GET. Included routers are walked whether FastAPI keeps them flat or
    nested."""
    out: set[tuple[str, str]] = set()

    def walk(routes, prefix: str) -> None:
        for r in routes:
            inner = getattr(r, "original_router", None)
            if inner is not None:
                walk(inner.routes, prefix + getattr(getattr(r, "include_context", None), "prefix", ""))
                continue
            methods = getattr(r, "methods", None)
            if methods is None:
                out.add((WS, prefix + r.path))
            else:
                out.update((m, prefix + r.path) for m in methods if m != "HEAD" or "GET" not in methods)

    walk(app.routes, "")
    return out


def zip_of(text: bytes) -> bytes:
    """The same bytes for the same text (a fixed timestamp: writestr with a name stamps the current
    time, at 2-second resolution, so two zips of one text made a moment apart could differ)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("main.py", date_time=(2020, 1, 1, 0, 0, 0)), text)
    return buf.getvalue()


def finish(fleet, name: str, log_text: str, state: RunState = RunState.SUCCEEDED, exit_code: int | None = None) -> str:
    """What the controller leaves of one attempt that ran and ended: status and events in the
    store, the saved log, the backend's final record of the run. Returns the run id."""
    job = fleet.store.get("TrainJob", name).doc
    t = tr.admitted(job, "cpu-default", "cpu", {})
    job = job.model_copy(update={"status": t.status})
    fleet.store.update(job, event=t.event, message=t.message, data=t.data, now=NOW)
    run_id = job.status.ray_job_id
    for t in (tr.launched(job, run_id, NOW + 1), tr.observe(job, RunStatus(run_id, RunState.RUNNING, started_at=NOW + 2), NOW + 2),
              tr.observe(job, RunStatus(run_id, state, finished_at=NOW + 3, exit_code=exit_code), NOW + 3)):
        job = job.model_copy(update={"status": t.status})
        fleet.store.update(job, event=t.event, message=t.message, data=t.data, now=NOW + 3)
    assert job.status.state.value == state.value
    fleet.controller.logs.save(job.name, job.metadata.uid, 1, log_text)
    fleet.backend.run_dir(run_id).mark("final", run_id=run_id, state=state.value, exit_code=exit_code)
    return run_id


def service_body(name: str, queue: str) -> dict:
    return {"metadata": {"name": name}, "spec": {
        "importPath": "serve_apps.pipeline_mlp:app", "queue": queue,
        "replicaGroup": {"hostsPerReplica": 1, "resourcesPerHost": {"nvidia.com/gpu": 8}}}}


def mark_deleted(fleet, name: str) -> None:
    svc = fleet.store.get("Service", name).doc
    for t in (tr.service_deleting(svc.status), ):
        svc = svc.model_copy(update={"status": t.status})
        fleet.store.update(svc, event=t.event, message=t.message, now=NOW)
    t = tr.service_deleted(svc.status)
    fleet.store.update(svc.model_copy(update={"status": t.status}), event=t.event, message=t.message, now=NOW)


@pytest.fixture
def world(api, fleet, team_a):
    """Team A's things: a package, a finished job running it (logs, events), a queued job, a
    service, its token. Returns the strings none of team B's answers may hold."""
    assert api.put(f"/api/packages/gcs/{A_PKG[6:]}", content=zip_of(A_PKG_MARK), headers=team_a).status_code == 200
    job = {"metadata": {"name": A_JOB}, "spec": {"entrypoint": ENTRYPOINT, "queue": "team-a", "runtimeEnv": {"working_dir": A_PKG}}}
    r = api.post("/api/v1/jobs", json=job, headers=team_a)
    assert r.status_code == 201, r.text
    job_uid = r.json()["metadata"]["uid"]
    finish(fleet, A_JOB, f"{A_LOG}\n")
    assert api.post("/api/v1/jobs", json={"metadata": {"name": A_LIVE}, "spec": {"entrypoint": ENTRYPOINT, "queue": "team-a"}},
                    headers=team_a).status_code == 201
    r = api.post("/api/v1/services", json=service_body(A_SVC, "team-a"), headers=team_a)
    assert r.status_code == 201
    token = fleet.creds["teams"]["team-a"]
    return [A_JOB, A_LIVE, A_SVC, A_LOG, A_PKG_MARK.decode(), A_PKG[6:], token, hash_token(token)[:TOKEN_ID_LEN],
            job_uid, r.json()["metadata"]["uid"], ENTRYPOINT]


def targets(method: str, path: str, world: list[str]) -> tuple[str, str, dict | bytes | None, tuple[str, str]]:
    """(the path naming team A's object, the same naming a missing one, the request body, and
    (the missing name, team A's name), to turn the answer about one into the answer about the other)."""
    if "/packages" in path:
        a, missing = A_PKG[6:], OTHER_PKG[6:]
    elif "/services" in path:
        a, missing = A_SVC, "no-such-svc"
    elif "/queues" in path:
        a, missing = "team-a", "team-z"
    elif "/stop" in path:
        a, missing = A_LIVE, "no-such-job"  # a live job: a stop that got through would show
    else:
        a, missing = A_JOB, "no-such-job"
    fill = {"name": a, "job_id": a, "protocol": "gcs", "package_name": a, "token_id": world[7]}
    gone = {**fill, "name": missing, "job_id": missing, "package_name": missing, "token_id": "0" * TOKEN_ID_LEN}
    body: dict | bytes | None = None
    if (method, path) == ("POST", "/api/v1/jobs"):
        body = {"metadata": {"name": A_JOB}, "spec": {"entrypoint": ENTRYPOINT, "queue": "team-b"}}
    elif (method, path) == ("POST", "/api/jobs/"):
        body = {"entrypoint": ENTRYPOINT, "submission_id": A_JOB, "metadata": {"queue": "team-b"}}
    elif (method, path) == ("POST", "/api/v1/services"):
        body = service_body(A_SVC, "team-b")
    elif (method, path) == ("POST", "/api/v1/tokens"):
        body = {"team": "team-a"}
    elif method == "PUT":
        body = zip_of(b"team B's own bytes")
    return path.format(**fill), path.format(**gone), body, (missing, a)


def call(api, method: str, url: str, body, headers):
    if method == WS:
        with api.websocket_connect(url, headers=headers) as ws:
            with pytest.raises(WebSocketDisconnect) as e:
                ws.receive_text()
        return e.value.code, e.value.reason
    kw = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    r = api.request(method, url, headers=headers, **kw)
    return r.status_code, r.headers.get("content-type"), r.text, {k: v for k, v in r.headers.items() if k.startswith("x-")}


def leaked(answer, asked: str, world: list[str]) -> list[str]:
    """Team A's strings in an answer, other than those the caller put in its own request."""
    text = repr(answer)
    return [s for s in world if s in text and s not in asked]


def test_the_table_covers_exactly_the_apps_routes(fleet):
    served = app_routes(create_app(fleet, start_controller=False))
    assert served - set(RULES) == set(), "a route without a tenancy rule: add it to RULES and test it"
    assert set(RULES) - served == set(), "RULES names a route the app no longer serves"


@pytest.mark.parametrize("method,path", list(RULES), ids=[f"{m} {p}" for m, p in RULES])
def test_team_b_is_refused_everything_of_team_as(api, fleet, world, team_b, method, path):
    rule = RULES[(method, path)]
    url, missing_url, body, (missing_name, a_name) = targets(method, path, world)
    answer = call(api, method, url, body, team_b)
    assert leaked(answer, url + repr(body), world) == [], answer
    if rule == OWN or (rule, method) == (PACKAGE, "GET"):
        # word for word the answer about a missing object, but for the name asked about
        missing = call(api, method, missing_url, body, team_b)
        assert repr(answer) == repr(missing).replace(missing_name, a_name)
        assert answer[0] == (4404 if method == WS else 404)
    elif rule == PACKAGE:
        assert answer[0] == 200  # team B's own copy under that name; team A's is untouched (below)
    elif rule == SUBMIT:
        assert answer[0] == 409 and "team-a" not in answer[2], answer
    elif rule == ADMIN:
        assert answer[0] == 403 and "admin token" in answer[2], answer
    else:
        assert answer[0] == 200, answer


@pytest.mark.parametrize("method,path", [k for k, rule in RULES.items() if rule != OPEN],
                         ids=[f"{m} {p}" for m, p in RULES if RULES[(m, p)] != OPEN])
def test_no_token_and_an_unknown_token_are_refused_on_every_route(api, world, method, path):
    url, _, body, _ = targets(method, path, world)
    for headers, codes in (({}, {401, 4401}), ({"Authorization": "Bearer rf_nope"}, {401, 403, 4403})):
        answer = call(api, method, url, body, headers)
        # Ray's dashboard answers an unknown token 403; rayfleet's own API 401
        assert answer[0] in codes and leaked(answer, url + repr(body), world) == [], answer


def test_open_routes_answer_without_a_token_and_name_nothing_of_team_as(api, world):
    for method, path in (k for k, rule in RULES.items() if rule == OPEN):
        answer = call(api, method, path, None, {})
        assert answer[0] == 200 and leaked(answer, "", world) == [], (path, answer)


def test_team_bs_attempts_change_nothing_of_team_as(api, fleet, world, team_a, team_b, admin):
    def snapshot():
        return (api.get(f"/api/v1/jobs/{A_JOB}", headers=team_a).json(), api.get(f"/api/v1/jobs/{A_LIVE}", headers=team_a).json(),
                api.get(f"/api/v1/jobs/{A_JOB}/events", headers=team_a).json(), api.get(f"/api/v1/jobs/{A_JOB}/logs", headers=team_a).text,
                api.get(f"/api/v1/services/{A_SVC}", headers=team_a).json(), api.get("/api/v1/tokens", headers=admin).json(),
                fleet.packages.bytes_of(fleet.packages.for_launch("team-a", {"working_dir": A_PKG})[1][0][1]))

    before = snapshot()
    assert A_LOG in before[3] and before[1]["status"]["state"] == "QUEUED"
    for method, path in RULES:
        url, _, body, _ = targets(method, path, world)
        call(api, method, url, body, team_b)
    assert snapshot() == before
    assert api.get("/api/v1/jobs", headers=team_a).status_code == 200  # team A's token still works
    assert A_PKG_MARK in before[6]


def test_team_bs_listings_hold_only_team_bs(api, world, team_b):
    b_job = {"metadata": {"name": "b-job"}, "spec": {"entrypoint": "x", "queue": "team-b"}}
    assert api.post("/api/v1/jobs", json=b_job, headers=team_b).status_code == 201
    assert [j["metadata"]["name"] for j in api.get("/api/v1/jobs", headers=team_b).json()["items"]] == ["b-job"]
    assert api.get("/api/v1/jobs", params={"queue": "team-a"}, headers=team_b).json()["items"] == []
    r = api.get("/api/v1/jobs", params={"team": "team-a"}, headers=team_b)
    assert r.status_code == 403 and leaked(r.text, "", world) == []
    assert [j["submission_id"] for j in api.get("/api/jobs/", headers=team_b).json()] == ["b-job"]
    assert api.get("/api/jobs/", headers=team_b).headers["X-Rayfleet-Jobs-Total"] == "1"
    assert api.get("/api/v1/services", headers=team_b).json() == []
    assert [q["metadata"]["name"] for q in api.get("/api/v1/queues", headers=team_b).json()] == ["team-b"]


# ------------------------------------------------------------------ names taken and reused


@pytest.mark.parametrize("spec", [{"entrypoint": ENTRYPOINT}, {"entrypoint": "something else"}])
def test_a_live_name_of_team_a_is_refused_alike_whatever_the_spec(api, world, team_b, spec):
    """Names are unique across teams, so B cannot take A's live name; the refusal is the same for
    any spec B sends and names no owner (a 403 "owned by team 'team-a'" would)."""
    rest = api.post("/api/v1/jobs", json={"metadata": {"name": A_JOB}, "spec": {**spec, "queue": "team-b"}}, headers=team_b)
    ray = api.post("/api/jobs/", json={**spec, "submission_id": A_JOB, "metadata": {"queue": "team-b"}}, headers=team_b)
    svc = service_body(A_SVC, "team-b")
    if spec["entrypoint"] != ENTRYPOINT:
        svc["spec"]["importPath"] = "serve_apps.other:app"
    service = api.post("/api/v1/services", json=svc, headers=team_b)
    taken = f"name {A_JOB!r} is taken; names are unique across teams: choose another metadata.name"
    assert (rest.status_code, rest.json()["field"]) == (409, "metadata.name") and rest.json()["message"] == f"job {taken}"
    assert (ray.status_code, ray.text) == (409, f"job {taken}")
    assert (service.status_code, service.json()["message"]) == (409, f"service {taken.replace(A_JOB, A_SVC)}")
    for r in (rest, ray, service):
        assert "team-a" not in r.text and leaked(r.text, A_JOB + A_SVC, world) == []


def _submit(api, name: str, queue: str, headers, via: str) -> None:
    if via == "rest":
        r = api.post("/api/v1/jobs", json={"metadata": {"name": name}, "spec": {"entrypoint": "python train.py", "queue": queue}},
                     headers=headers)
        assert r.status_code == 201, r.text
    else:
        r = api.post("/api/jobs/", json={"entrypoint": "python train.py", "submission_id": name, "metadata": {"queue": queue}},
                     headers=headers)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("via", ["rest", "ray"])
@pytest.mark.parametrize("first,second", [("team-a", "team-b"), ("team-b", "team-a")])
def test_a_reused_job_name_shows_nothing_of_the_other_teams_job(api, fleet, via, first, second):
    """A job of one team ran, logged and was deleted; the other team's new job of that name sees
    none of its logs or events, on either API, and the first team cannot reach the new one."""
    creds = fleet.creds["teams"]
    old, new = ({"Authorization": f"Bearer {creds[t]}"} for t in (first, second))
    _submit(api, "shared-name", first, old, via)
    finish(fleet, "shared-name", f"{first} secret log\n")
    assert f"{first} secret log" in api.get("/api/v1/jobs/shared-name/logs", headers=old).text
    assert api.delete("/api/jobs/shared-name", headers=old).status_code == 200

    _submit(api, "shared-name", second, new, via)
    assert api.get("/api/v1/jobs/shared-name/logs", headers=new).text == ""
    assert api.get("/api/jobs/shared-name/logs", headers=new).json() == {"logs": ""}
    assert [e["type"] for e in api.get("/api/v1/jobs/shared-name/events", headers=new).json()] == ["Submitted"]
    assert api.get("/api/jobs/shared-name", headers=new).json()["status"] == "PENDING"
    for url in ("/api/v1/jobs/shared-name", "/api/v1/jobs/shared-name/logs", "/api/jobs/shared-name", "/api/jobs/shared-name/logs"):
        r = api.get(url, headers=old)
        assert r.status_code == 404 and "secret log" not in r.text, url
    assert call(api, WS, "/api/jobs/shared-name/logs/tail", None, old) == (4404, "Job shared-name does not exist")


def test_a_reused_name_reports_its_own_exit_code_never_the_earlier_jobs(api, fleet, team_a, team_b):
    """Ray's driver_exit_code is read from the job's own run (its uid in the run id): neither from
    team A's earlier run of that name nor from a run left by a version without uids."""
    body = {"entrypoint": "python train.py", "submission_id": "exit-name"}
    assert api.post("/api/jobs/", json={**body, "metadata": {"queue": "team-a"}}, headers=team_a).status_code == 200
    finish(fleet, "exit-name", "a\n", RunState.FAILED, exit_code=3)
    legacy = run_id_for("exit-name", 1)  # a run of that name from before uids: team A's too
    fleet.backend.run_dir(legacy).mark("final", run_id=legacy, state="FAILED", exit_code=3)
    assert api.get("/api/jobs/exit-name", headers=team_a).json()["driver_exit_code"] == 3
    assert api.delete("/api/jobs/exit-name", headers=team_a).status_code == 200

    assert api.post("/api/jobs/", json={**body, "metadata": {"queue": "team-b"}}, headers=team_b).status_code == 200
    finish(fleet, "exit-name", "b\n", RunState.FAILED, exit_code=5)
    info = api.get("/api/jobs/exit-name", headers=team_b).json()
    assert (info["status"], info["driver_exit_code"]) == ("FAILED", 5)


@pytest.mark.parametrize("first,second", [("team-a", "team-b"), ("team-b", "team-a")])
def test_a_reused_service_name_shows_nothing_of_the_other_teams_service(api, fleet, first, second):
    creds = fleet.creds["teams"]
    old, new = ({"Authorization": f"Bearer {creds[t]}"} for t in (first, second))
    r = api.post("/api/v1/services", json=service_body("shared-svc", first), headers=old)
    assert r.status_code == 201
    old_uid = r.json()["metadata"]["uid"]
    assert api.delete("/api/v1/services/shared-svc", headers=old).status_code == 200
    # deleting, not yet deleted: the name is still taken, and the answer names no owner
    r = api.post("/api/v1/services", json=service_body("shared-svc", second), headers=new)
    assert r.status_code == 409 and first not in r.text
    mark_deleted(fleet, "shared-svc")
    r = api.post("/api/v1/services", json=service_body("shared-svc", second), headers=new)
    assert r.status_code == 201 and r.json()["metadata"]["uid"] != old_uid and r.json()["metadata"]["team"] == second
    assert [e["type"] for e in api.get("/api/v1/services/shared-svc/events", headers=new).json()] == ["Submitted"]
    assert api.get("/api/v1/services/shared-svc", headers=old).status_code == 404


# ------------------------------------------------------------------ packages


def test_team_b_cannot_see_run_or_replace_team_as_package(api, fleet, world, team_a, team_b):
    name = A_PKG[6:]
    probe, missing = (api.get(f"/api/packages/gcs/{n}", headers=team_b) for n in (name, OTHER_PKG[6:]))
    assert probe.status_code == missing.status_code == 404 and probe.text == missing.text.replace(OTHER_PKG[6:], name)
    # naming A's package in runtime_env: refused on both APIs, naming the field, never its bytes
    ray = api.post("/api/jobs/", json={"entrypoint": "python main.py", "runtime_env": {"working_dir": A_PKG},
                                        "metadata": {"queue": "team-b"}}, headers=team_b)
    rest = api.post("/api/v1/jobs", headers=team_b, json={"metadata": {"name": "b-steal"}, "spec": {
        "entrypoint": "python main.py", "queue": "team-b", "runtimeEnv": {"py_modules": [A_PKG]}}})
    assert ray.status_code == 422 and "runtime_env.working_dir" in ray.text and "not uploaded by team 'team-b'" in ray.text
    assert rest.status_code == 422 and rest.json()["field"] == "spec.runtimeEnv.py_modules[0]"
    for r in (probe, ray, rest):
        assert leaked(r.text, A_PKG, world) == []
    # uploading other bytes under A's name: team B gets its own copy; A's copy and launches are untouched
    mine = zip_of(b"team B's code")
    assert api.put(f"/api/packages/gcs/{name}", content=mine, headers=team_b).status_code == 200
    env_a, [(uri_a, blob_a)] = fleet.packages.for_launch("team-a", {"working_dir": A_PKG})
    env_b, [(uri_b, blob_b)] = fleet.packages.for_launch("team-b", {"working_dir": A_PKG})
    assert fleet.packages.bytes_of(blob_a) == zip_of(A_PKG_MARK) and fleet.packages.bytes_of(blob_b) == mine
    assert uri_a != uri_b and env_a["working_dir"] == uri_a and hashlib.sha256(mine).hexdigest() in uri_b
    # and A's second upload of its own name still sees its own bytes (write-once per team)
    assert api.put(f"/api/packages/gcs/{name}", content=zip_of(A_PKG_MARK), headers=team_a).status_code == 200
    assert api.put(f"/api/packages/gcs/{name}", content=mine, headers=team_a).status_code == 409


# ------------------------------------------------------------------ quarantined records, tokens


def _break(fleet, kind: str, name: str) -> None:
    """A hand edit that leaves the stored record undecodable (it holds a field no version knows)."""
    db = sqlite3.connect(str(fleet.data_dir / "rayfleet.db"))
    with db:
        db.execute("UPDATE objects SET body = json_set(body, '$.spec.fromTheFuture', 'TEAM-A-SECRET-BODY') WHERE kind=? AND name=?",
                   (kind, name))
    db.close()


def test_a_quarantined_record_of_team_a_answers_team_b_as_a_missing_one(api, fleet, world, team_a, team_b, admin):
    _break(fleet, "TrainJob", A_JOB)
    _break(fleet, "Service", A_SVC)
    for path in ("/api/v1/jobs/{}", "/api/v1/jobs/{}/logs", "/api/v1/jobs/{}/events", "/api/jobs/{}", "/api/jobs/{}/logs"):
        foreign, missing = (api.get(path.format(n), headers=team_b) for n in (A_JOB, "no-such-job"))
        assert foreign.status_code == 404 and foreign.text == missing.text.replace("no-such-job", A_JOB), path
        assert "quarantined" not in foreign.text and "TEAM-A-SECRET-BODY" not in foreign.text
    assert call(api, WS, f"/api/jobs/{A_JOB}/logs/tail", None, team_b) == (4404, f"Job {A_JOB} does not exist")
    for method in ("GET", "DELETE"):
        foreign, missing = (api.request(method, f"/api/v1/services/{n}", headers=team_b) for n in (A_SVC, "no-such-svc"))
        assert foreign.status_code == 404 and foreign.text == missing.text.replace("no-such-svc", A_SVC)
    # its own team is told it is quarantined; the admin lists it
    assert api.get(f"/api/v1/jobs/{A_JOB}", headers=team_a).status_code == 409
    assert api.get(f"/api/v1/services/{A_SVC}", headers=team_a).status_code == 409
    assert {q["name"] for q in api.get("/api/v1/quarantine", headers=admin).json()} == {A_JOB, A_SVC}
    assert api.get("/api/v1/quarantine", headers=team_b).status_code == 403


def test_a_team_token_mints_lists_and_revokes_no_token(api, fleet, world, team_a, team_b, admin):
    before = api.get("/api/v1/tokens", headers=admin).json()
    for body in ({"team": "team-a"}, {"team": "team-b"}, {"admin": True}):
        r = api.post("/api/v1/tokens", json=body, headers=team_b)
        assert r.status_code == 403 and "rf_" not in r.text
    a_id = world[7]
    r = api.delete(f"/api/v1/tokens/{a_id}", headers=team_b)
    assert r.status_code == 403 and r.text == api.delete("/api/v1/tokens/" + "0" * TOKEN_ID_LEN, headers=team_b).text
    assert api.get("/api/v1/tokens", headers=team_b).status_code == 403
    assert api.get("/api/v1/tokens", headers=admin).json() == before
    assert api.get(f"/api/v1/jobs/{A_JOB}", headers=team_a).status_code == 200


def test_metrics_refuse_a_team_token_and_no_token(api, world, team_b):
    for headers, code in (({}, 401), (team_b, 403)):
        r = api.get("/metrics", headers=headers)
        assert r.status_code == code and leaked(r.text, "", world) == [] and "team-a" not in r.text


# ------------------------------------------------------------------ preemption across teams


def test_a_job_preempted_by_another_teams_job_is_not_told_its_name(tmp_path):
    """Team B borrows the cohort's CPU, team A reclaims it: B's job is preempted, and its status,
    interruptions and events (both APIs) say so without naming A's job; a preemptor of B's own
    queue is still named."""
    from fastapi.testclient import TestClient

    from rayfleet.api import TrainJob
    from rayfleet.backends.sim import from_config
    from rayfleet.config import load_config
    from rayfleet.server.auth import Principal
    from rayfleet.server.main import assemble
    from rayfleet.server.tokens import ensure_tokens

    cfg = load_config([Path(__file__).resolve().parents[2] / "cluster_configs" / "local.yaml"])
    now = [NOW]
    sim = from_config(cfg, clock=lambda: now[0])
    for name in ("b-borrower", "a-reclaimer", "b-low", "b-high"):
        sim.script_run(name, runtime=10_000)
    sim.up()
    fleet = assemble(cfg, sim, tmp_path, clock=lambda: now[0])

    def submit(name: str, team: str, cpu: int, priority: str = "experiment") -> None:
        job = TrainJob.model_validate({"metadata": {"name": name}, "spec": {"entrypoint": "x", "queue": team, "priorityClass": priority,
                                       "gang": {"workers": 1, "resourcesPerWorker": {"cpu": cpu, "memory": "1Gi"}}}})
        fleet.submit_job(job, Principal(team, False))
        for _ in range(3):
            now[0] += 5
            fleet.controller.run_once(now[0])

    try:
        creds = ensure_tokens(fleet.store, cfg)
        team_b = {"Authorization": f"Bearer {creds['teams']['team-b']}"}
        submit("b-borrower", "team-b", 8)  # team-b's quota is 4: it borrows team-a's (and team-c's)
        assert fleet.store.get("TrainJob", "b-borrower").doc.status.state.value == "RUNNING"
        submit("a-reclaimer", "team-a", 2)
        status = fleet.store.get("TrainJob", "b-borrower").doc.status
        assert status.interruptions and status.interruptions[-1].reason == "preempted"
        assert "another queue" in status.interruptions[-1].message
        with TestClient(create_app(fleet, start_controller=False)) as api:
            seen = [api.get(url, headers=team_b).text for url in (
                "/api/v1/jobs/b-borrower", "/api/v1/jobs/b-borrower/events", "/api/jobs/b-borrower", "/api/jobs/", "/api/v1/jobs",
                "/api/v1/queues/team-b")]
        assert "Requeued" in seen[1] and all("a-reclaimer" not in text for text in seen), seen
        # within team B's own queue the preemptor is named, as before
        submit("b-low", "team-b", 4)
        assert fleet.store.get("TrainJob", "b-low").doc.status.state.value == "RUNNING"
        submit("b-high", "team-b", 4, "production")
        low = fleet.store.get("TrainJob", "b-low").doc.status
        assert low.interruptions and "preempted to admit 'b-high' of queue 'team-b'" in low.interruptions[-1].message
    finally:
        fleet.close()
