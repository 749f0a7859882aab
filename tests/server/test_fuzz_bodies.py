"""A bounded fuzz of every POST/PUT of both APIs with hand-made hostile bodies (issue #11).

schemathesis (test_schemathesis.py) follows the OpenAPI schemas, and the Ray Jobs API routes take
raw JSON the schema does not describe; here hypothesis builds bodies from a valid one with one part
replaced: non-finite constants (``Infinity``, ``NaN``), huge numbers (``1e308``, ``1e999``, 400-digit
literals and strings), odd names (unicode, NUL, newline, very long), wrong types, deep nesting and
bodies over the cap. Every answer is below 500 and, when it is an error, names a field or a limit.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rayfleet.api import limits


class Raw:
    """A JSON token written as is (``Infinity``, ``1e999``, a 400-digit literal)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:30]!r})"


def dumps(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


odd_numbers = st.one_of(
    st.sampled_from([Raw("Infinity"), Raw("-Infinity"), Raw("NaN"), Raw("1e999"), Raw("-1e999"), 1e308, -1e308, 5e-324, -0.0,
                     2**63, -(2**63), 2**64 + 1]),
    st.integers(1, 400).map(lambda n: Raw("9" * n)),
    st.integers(1, 400).map(lambda n: "9" * n),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
)
odd_strings = st.one_of(
    st.sampled_from(["", " ", "a\n", "a\r\n", "a\x00b", "\u00e9t\u00e9", "\U0001f680", "../etc/passwd", "a" * 64, "a" * 129,
                     "x" * 70_000, "-a", "a-", "A", "1e999", "Infinity", "16Gi\n", "500m ", "0x10", "1_000"]),
    st.text(max_size=30),
)
odd_values = st.one_of(odd_numbers, odd_numbers, odd_numbers, odd_strings, odd_strings,  # repeated: drawn more often
                       st.sampled_from([None, True, [], {}, [[[[[[1]]]]]], Raw("[" * 200 + "]" * 200), Raw("{}" * 2)]))


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


V1_JOB = {"metadata": {"name": "fz", "labels": {"team": "a"}, "annotations": {"x": "y"}},
          "spec": {"entrypoint": "python train.py", "queue": "team-a", "maxRunDuration": "1h",
                   "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 1, "memory": "1Gi"}},
                   "failurePolicy": {"maxRestarts": 1}, "runtimeEnv": {"env_vars": {"A": "1"}}, "labels": {"exp": "e"}}}
V1_SERVICE = {"metadata": {"name": "fz"},
              "spec": {"importPath": "serve_apps.echo:app", "queue": "team-a", "args": {"n": 1}, "routePrefix": "/fz",
                       "replicaGroup": {"hostsPerReplica": 1, "resourcesPerHost": {"cpu": "500m"}},
                       "autoscaling": {"minReplicas": 1, "maxReplicas": 2, "targetOngoingRequests": 2,
                                       "upscaleDelay": "30s", "downscaleDelay": 600}}}
RAY_JOB = {"entrypoint": "python x.py", "submission_id": "raysubmit_fz", "runtime_env": {"env_vars": {"A": "1"}},
           "metadata": {"queue": "team-a", "workers": "1", "maxRestarts": "0"}, "entrypoint_num_cpus": 1,
           "entrypoint_num_gpus": 0, "entrypoint_memory": 1000, "entrypoint_resources": {"TPU": 0}}

# Every POST/PUT of both APIs, with the body it starts from.
ENDPOINTS = [
    ("POST", "/api/v1/jobs", V1_JOB),
    ("POST", "/api/v1/services", V1_SERVICE),
    ("POST", "/api/v1/jobs/fz/stop", {}),
    ("POST", "/api/jobs/", RAY_JOB),
    ("POST", "/api/jobs/raysubmit_fz/stop", {}),
    ("PUT", "/api/packages/gcs/_ray_pkg_fz.zip", None),
]


@st.composite
def requests(draw):
    method, path, base = draw(st.sampled_from(ENDPOINTS))
    shape = draw(st.sampled_from(["one-part", "one-part", "one-part", "key", "raw", "oversized"]))
    if shape == "oversized":
        body = '{"entrypoint": "' + "x" * (limits.JSON_BODY_MAX_BYTES + 1) + '"}'
    elif base is None or shape == "raw":
        body = dumps(draw(odd_values))
    elif shape == "key":  # an odd key added somewhere
        paths = [p for p in _paths(base) if not p or isinstance(_get(base, p), dict)]
        where = draw(st.sampled_from(paths))
        key = draw(odd_strings)
        body = dumps(_replace(base, where, {**_get(base, where), key: draw(odd_values)}))
    else:  # mostly a leaf (where the numbers and names are), sometimes a whole object
        paths = _paths(base)
        leaves = [p for p in paths if not isinstance(_get(base, p), dict | list)] or paths
        body = dumps(_replace(base, draw(st.sampled_from(leaves) | st.sampled_from(paths)), draw(odd_values)))
    return method, path, body


def _get(value: Any, path: tuple) -> Any:
    for p in path:
        value = value[p]
    return value


def test_hostile_bodies_never_get_a_server_error(api, team_a):
    seen: dict[str, set[int]] = {}

    @settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(req=requests())
    def send(req):
        method, path, body = req
        r = api.request(method, path, content=body.encode("utf-8", "surrogatepass"), headers={**team_a, "Content-Type": "application/json"})
        seen.setdefault(path, set()).add(r.status_code)
        assert r.status_code < 500, f"{method} {path} {body[:300]!r}: {r.status_code} {r.text[:300]}"
        if r.status_code >= 400:
            if r.headers.get("content-type", "").startswith("application/json"):
                doc = r.json()
                assert doc.get("field") or doc.get("problems") or doc.get("detail"), r.text[:300]
            else:
                assert r.text.strip(), f"{method} {path}: {r.status_code} with an empty body"
        if r.status_code == 413:
            assert str(limits.JSON_BODY_MAX_BYTES) in r.text

    send()
    assert set(seen) == {p for _, p, _ in ENDPOINTS}
    codes = set().union(*seen.values())
    assert 413 in codes and 422 in codes and any(c < 300 for c in codes), seen
