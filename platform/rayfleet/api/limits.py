"""Every size and number bound of rayfleet's input, in one place.

The api models, the config loader and the HTTP layer all read these; docs/limits.md lists them.
A value past a bound is a 4xx (or CLI exit 2) naming the field, never a 5xx.
"""

from __future__ import annotations

KIB = 2**10
MIB = 2**20
GIB = 2**30
TIB = 2**40
DAY = 86400.0

# ---------------------------------------------------------------- HTTP bodies and responses

#: Largest request body of the JSON APIs (/api/v1 and Ray's /api/jobs/).
JSON_BODY_MAX_BYTES = 1 * MIB
#: Largest package upload (PUT /api/packages/{protocol}/{name}: a zipped working_dir or py_modules).
PACKAGE_BODY_MAX_BYTES = 100 * MIB
#: Longest number literal in a JSON body (characters); longer ones are refused before decoding.
JSON_NUMBER_MAX_CHARS = 100
#: Deepest nesting of objects and arrays in a JSON body.
JSON_DEPTH_MAX = 64
#: Most bytes of log text one response carries (GET /api/v1/jobs/{name}/logs pages; Ray's
#: GET /api/jobs/{id}/logs returns the tail).
LOG_PAGE_MAX_BYTES = 1 * MIB
#: Most items of one list page (jobs, services, events).
LIST_PAGE_MAX_ITEMS = 500
#: Most bytes of encoded items one list page carries; a page stops early and its ``next`` cursor
#: continues where it stopped.
LIST_PAGE_MAX_BYTES = 8 * MIB
#: Largest paging cursor (SQLite's largest integer).
CURSOR_MAX = 2**63 - 1

# ---------------------------------------------------------------- strings and free-form objects

#: A job's entrypoint (shell command).
ENTRYPOINT_MAX_BYTES = 64 * KIB
#: Free-form objects (runtime_env, service args, train app config), as encoded JSON.
OBJECT_MAX_BYTES = 256 * KIB
#: Labels and annotations: most entries, longest key, longest value, whole map as JSON.
LABELS_MAX_ENTRIES = 64
LABEL_KEY_MAX_CHARS = 253
LABEL_VALUE_MAX_CHARS = 1024
ANNOTATIONS_MAX_BYTES = 256 * KIB
#: Other free-text fields (messages, paths, descriptions, machine types, ...).
TEXT_MAX_CHARS = 4096

# ---------------------------------------------------------------- quantities (canonical units)

#: Any quantity (quota amounts included): cpu in millicores, memory in bytes, accelerators in devices.
QUANTITY_MAX = {"cpu": 10**9, "memory": 2**60, "nvidia.com/gpu": 10**6, "google.com/tpu": 10**6}
#: What one worker or host may ask for or offer.
PER_HOST_MAX = {"cpu": 1024 * 1000, "memory": 64 * TIB, "nvidia.com/gpu": 16, "google.com/tpu": 16}

# ---------------------------------------------------------------- counts and durations

#: Workers of one training gang.
WORKERS_MAX = 4096
#: Replicas of one service (minReplicas, maxReplicas).
SERVICE_REPLICAS_MAX = 1000
#: Hosts of one service replica.
HOSTS_PER_REPLICA_MAX = 64
#: Hosts (or slices) of one pool.
POOL_REPLICAS_MAX = 10000
#: Hosts of one TPU slice.
HOSTS_PER_SLICE_MAX = 4096
#: Serve's targetOngoingRequests per replica.
TARGET_ONGOING_REQUESTS_MAX = 100000.0
#: Restarts of a failed job; checkpoints kept.
RESTARTS_MAX = 1000
CHECKPOINTS_KEPT_MAX = 1000
#: Any duration (seconds).
DURATION_MAX_S = 90 * DAY
#: Prices (USD per host hour), budgets (USD per month) and fair-sharing weights.
PRICE_MAX = 1e6
BUDGET_MAX = 1e12
WEIGHT_MAX = 1e6
