"""CRD schemas, prepared for jsonschema, and the admission rules a schema cannot express.

The upstream CRDs (KubeRay v1, Kueue v1beta2) are the source of truth. The package carries a copy of
the ones rayfleet uses under ``crds/`` (see :mod:`.crd_vendor`: provenance, ``make crds``);
``$RAYFLEET_CRD_DIR`` points validation at a folder of upstream CRD YAML files instead. A
CRD's ``openAPIV3Schema`` is turned into a strict JSON schema:

- every object schema that lists ``properties`` and neither preserves unknown fields
  (``x-kubernetes-preserve-unknown-fields``) nor declares ``additionalProperties`` gets
  ``additionalProperties: false`` (the API server would silently prune such fields; rayfleet treats
  them as bugs),
- ``nullable: true`` becomes a ``null`` alternative, ``format: int32`` / ``int64`` become range checks,
- the root ``metadata`` (``type: object`` in every CRD, validated by the API server itself) becomes a
  strict ObjectMeta: DNS names, qualified label keys, label values of at most 63 characters.

Kinds without an upstream CRD file carry a schema here: ``ProvisioningRequest``
(``autoscaling.x-k8s.io/v1``, transcribed from kubernetes/autoscaler's generated CRD), GKE's
``ComputeClass`` (``cloud.google.com/v1``: GKE publishes no CRD file, so this is the subset of the
documented fields that rayfleet emits, strict), and the core kinds rayfleet writes (``PodTemplate``,
whose ``template`` reuses KubeRay's PodTemplateSpec schema, ``Namespace``, ``ConfigMap``).

:func:`semantic_errors` adds the CEL rules (``x-kubernetes-validations``) and KubeRay webhook/operator
checks that a JSON schema cannot carry, for the kinds rayfleet generates. Runtime code validates with
:func:`validate` before it creates anything.
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .crd_vendor import VENDORED

# (group, kind) -> plural, for the upstream CRDs rayfleet uses (vendored under crds/).
KNOWN_CRDS: dict[tuple[str, str], str] = {key: plural for key, (plural, _) in VENDORED.items()}

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_LABEL_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME = re.compile(r"^(" + _DNS_SUBDOMAIN[1:-1] + r"/)?" + _LABEL_NAME + r"$")
_LABEL_VALUE = re.compile(r"^(" + _LABEL_NAME + r")?$")


class SchemaNotFound(LookupError):
    """No schema is known for an apiVersion/kind."""


def crd_dir() -> Path | None:
    """``$RAYFLEET_CRD_DIR`` (a folder of upstream CRD YAML files), else None: the vendored copies."""
    env = os.environ.get("RAYFLEET_CRD_DIR")
    return Path(env) if env else None


@lru_cache(maxsize=32)
def _load_yaml(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(f, Loader=loader)  # noqa: S506 - a safe loader


@lru_cache(maxsize=32)
def _load_vendored(name: str) -> dict[str, Any]:
    data = resources.files(__package__).joinpath("crds", name).read_bytes()
    return json.loads(data)


def load_crd(group: str, kind: str, directory: Path | None = None) -> dict[str, Any]:
    """The CRD of ``kind``: from ``directory`` or ``$RAYFLEET_CRD_DIR`` (upstream YAML) if given,
    else the copy vendored in the package (cached: the KubeRay CRDs are large)."""
    plural = KNOWN_CRDS.get((group, kind))
    if plural is None:
        raise SchemaNotFound(f"no CRD file known for {kind}.{group}")
    folder = directory or crd_dir()
    if folder is not None:
        return _load_yaml(str(folder / f"{group}_{plural}.yaml"))
    return _load_vendored(f"{group}_{plural}.json")


def clear_caches() -> None:
    """Forget loaded CRDs and built validators (after ``$RAYFLEET_CRD_DIR`` changes)."""
    for fn in (_load_yaml, _load_vendored, _schema, _validator):
        fn.cache_clear()


def crd_info(group: str, kind: str, directory: Path | None = None) -> dict[str, Any]:
    """names/scope/versions of a CRD: what a (fake) API server needs to serve it."""
    crd = load_crd(group, kind, directory)
    spec = crd["spec"]
    return {
        "group": spec["group"],
        "names": spec["names"],
        "scope": spec["scope"],
        "versions": [
            {"name": v["name"], "served": v.get("served", False), "storage": v.get("storage", False),
             "subresources": v.get("subresources") or {}}
            for v in spec["versions"]
        ],
    }


def raw_crd_schema(group: str, version: str, kind: str, directory: Path | None = None) -> dict[str, Any]:
    """The openAPIV3Schema of ``kind`` at ``version``, as stored in the CRD."""
    crd = load_crd(group, kind, directory)
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            if not v.get("served", False):
                raise SchemaNotFound(f"{kind}.{group}/{version} is not served by the CRD")
            return v["schema"]["openAPIV3Schema"]
    raise SchemaNotFound(f"{kind}.{group} has no version {version}")


# ---------------------------------------------------------------- preparation


def _object_meta() -> dict[str, Any]:
    labels = {
        "type": "object",
        "propertyNames": {"pattern": _QUALIFIED_NAME.pattern, "maxLength": 316},
        "additionalProperties": {"type": "string", "maxLength": 63, "pattern": _LABEL_VALUE.pattern},
    }
    props: dict[str, Any] = {
        "name": {"type": "string", "maxLength": 253, "pattern": _DNS_SUBDOMAIN},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": _DNS_LABEL},
        "labels": labels,
        "annotations": {
            "type": "object",
            "propertyNames": {"pattern": _QUALIFIED_NAME.pattern, "maxLength": 316},
            "additionalProperties": {"type": "string"},
        },
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        # Server-set fields: present on objects read back from an API server.
        "resourceVersion": {"type": "string"},
        "uid": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array"},
        "selfLink": {"type": "string"},
    }
    return {"type": "object", "properties": props, "additionalProperties": False}


_INLINE_FLAGS = re.compile(r"^\^\(\?([aiLmsux]+)\)")


def _python_pattern(pattern: str) -> str:
    """Go (RE2) accepts inline flags after ``^`` (``^(?i)...``); Python wants them first."""
    m = _INLINE_FLAGS.match(pattern)
    return f"(?{m.group(1)})^{pattern[m.end():]}" if m else pattern


def _prepare(node: Any) -> Any:
    if isinstance(node, list):
        return [_prepare(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("description", "default", "example"):
            continue
        if key == "properties":
            out[key] = {k: _prepare(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _prepare(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [_prepare(v) for v in value]
        elif key == "pattern" and isinstance(value, str):
            out[key] = _python_pattern(value)
        else:
            out[key] = value
    if out.pop("nullable", False) and "type" in out:
        t = out["type"]
        out["type"] = [*t, "null"] if isinstance(t, list) else [t, "null"]
    fmt = out.get("format")
    if fmt in ("int32", "int64"):
        lo, hi = INT32 if fmt == "int32" else INT64
        out["minimum"] = max(out.get("minimum", lo), lo)
        out["maximum"] = min(out.get("maximum", hi), hi)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def prepare_schema(openapi_schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD openAPIV3Schema made strict for jsonschema (see the module docstring)."""
    schema = _prepare(copy.deepcopy(openapi_schema))
    props = schema.setdefault("properties", {})
    props["metadata"] = _object_meta()
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    schema["additionalProperties"] = False
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return schema


# ---------------------------------------------------------------- schemas without an upstream CRD file

def _str(**kw: Any) -> dict[str, Any]:
    return {"type": "string", **kw}


def _int(lo: int | None = None, hi: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer"}
    if lo is not None:
        out["minimum"] = lo
    if hi is not None:
        out["maximum"] = hi
    return out


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


# kubernetes/autoscaler cluster-autoscaler/apis/config/crd/autoscaling.x-k8s.io_provisioningrequests.yaml, v1.
_PROVREQ_V1 = _obj(
    {
        "apiVersion": _str(),
        "kind": _str(),
        "metadata": {"type": "object"},
        "spec": _obj(
            {
                "parameters": {
                    "type": "object",
                    "maxProperties": 100,
                    "additionalProperties": _str(maxLength=255),
                },
                "podSets": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 32,
                    "items": _obj(
                        {
                            "count": _int(1, INT32[1]),
                            "podTemplateRef": _obj({"name": _str(maxLength=253, pattern=_DNS_SUBDOMAIN)}, ["name"]),
                        },
                        ["count", "podTemplateRef"],
                    ),
                },
                "provisioningClassName": _str(maxLength=253, pattern=_DNS_SUBDOMAIN),
            },
            ["podSets", "provisioningClassName"],
        ),
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
    ["spec"],
)

# GKE ComputeClass (cloud.google.com/v1): the documented fields rayfleet emits. GKE ships no CRD
# file, so this subset is strict on purpose: a field outside it is a rayfleet bug.
_CC_GPU = _obj({"type": _str(minLength=1), "count": _int(1, 16), "driverVersion": _str(enum=["default", "latest"])}, ["type", "count"])
_CC_TPU = _obj({"type": _str(minLength=1), "count": _int(1, 16), "topology": _str(pattern=r"^\d+x\d+(x\d+)?$")}, ["type", "count", "topology"])
_CC_RESERVATIONS = _obj(
    {
        "affinity": _str(enum=["Specific", "AnyBestEffort", "None"]),
        "specific": {
            "type": "array",
            "minItems": 1,
            "items": _obj(
                {"name": _str(minLength=1), "project": _str(minLength=1), "reservationBlock": _obj({"name": _str(minLength=1)}, ["name"])},
                ["name"],
            ),
        },
    },
    ["affinity"],
)
_CC_PRIORITY = _obj(
    {
        "machineFamily": _str(),
        "machineType": _str(),
        "minCores": _int(1),
        "minMemoryGb": _int(1),
        "spot": {"type": "boolean"},
        "gpu": _CC_GPU,
        "tpu": _CC_TPU,
        "reservations": _CC_RESERVATIONS,
        "flexStart": _obj({"enabled": {"type": "boolean"}, "nodeRecycling": _obj({"leadTimeSeconds": _int(0)}, ["leadTimeSeconds"])}, ["enabled"]),
        "maxRunDurationSeconds": _int(1),
        "location": _obj({"zones": {"type": "array", "minItems": 1, "items": _str(minLength=1)}}),
        "nodepools": {"type": "array", "minItems": 1, "items": _str(minLength=1)},
    }
)
_COMPUTECLASS_V1 = _obj(
    {
        "apiVersion": _str(),
        "kind": _str(),
        "metadata": {"type": "object"},
        "spec": _obj(
            {
                "description": _str(),
                "priorities": {"type": "array", "minItems": 1, "items": _CC_PRIORITY},
                "priorityDefaults": _CC_PRIORITY,
                "nodePoolAutoCreation": _obj({"enabled": {"type": "boolean"}}),
                "activeMigration": _obj({"optimizeRulePriority": {"type": "boolean"}}),
                "autoscalingPolicy": _obj(
                    {"consolidationDelayMinutes": _int(0), "consolidationThreshold": _int(0, 100), "gpuConsolidationThreshold": _int(0, 100)}
                ),
                "whenUnsatisfiable": _str(enum=["DoNotScaleUp", "ScaleUpAnyway"]),
            },
            ["priorities"],
        ),
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
    ["spec"],
)


def _pod_template_spec_schema() -> dict[str, Any]:
    """KubeRay's PodTemplateSpec schema (the worker template), reused for core PodTemplate objects."""
    rc = raw_crd_schema("ray.io", "v1", "RayCluster")
    return rc["properties"]["spec"]["properties"]["workerGroupSpecs"]["items"]["properties"]["template"]


def _core_schema(kind: str) -> dict[str, Any]:
    if kind == "PodTemplate":
        return _obj({"apiVersion": _str(), "kind": _str(), "metadata": {"type": "object"}, "template": _pod_template_spec_schema()})
    if kind == "Namespace":
        return _obj({"apiVersion": _str(), "kind": _str(), "metadata": {"type": "object"}})
    if kind == "ConfigMap":
        return _obj(
            {
                "apiVersion": _str(),
                "kind": _str(),
                "metadata": {"type": "object"},
                "data": {"type": "object", "additionalProperties": _str()},
                "binaryData": {"type": "object", "additionalProperties": _str(contentEncoding="base64")},
                "immutable": {"type": "boolean"},
            }
        )
    raise SchemaNotFound(f"no schema for core kind {kind}")


# (apiVersion, kind) -> (schema factory, namespaced)
_EMBEDDED: dict[tuple[str, str], tuple[Any, bool]] = {
    ("autoscaling.x-k8s.io/v1", "ProvisioningRequest"): (lambda: _PROVREQ_V1, True),
    ("cloud.google.com/v1", "ComputeClass"): (lambda: _COMPUTECLASS_V1, False),
    ("v1", "PodTemplate"): (lambda: _core_schema("PodTemplate"), True),
    ("v1", "ConfigMap"): (lambda: _core_schema("ConfigMap"), True),
    ("v1", "Namespace"): (lambda: _core_schema("Namespace"), False),
}


def split_api_version(api_version: str) -> tuple[str, str]:
    """``ray.io/v1`` -> (``ray.io``, ``v1``); core ``v1`` -> (``""``, ``v1``)."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


@lru_cache(maxsize=64)
def _schema(api_version: str, kind: str) -> tuple[dict[str, Any], bool]:
    if (api_version, kind) in _EMBEDDED:
        factory, namespaced = _EMBEDDED[(api_version, kind)]
        return prepare_schema(factory()), namespaced
    group, version = split_api_version(api_version)
    info = crd_info(group, kind)
    namespaced = info["scope"] == "Namespaced"
    return prepare_schema(raw_crd_schema(group, version, kind)), namespaced


def schema_for(api_version: str, kind: str) -> dict[str, Any]:
    """The prepared (strict) JSON schema of a kind. Raises SchemaNotFound."""
    return _schema(api_version, kind)[0]


def is_namespaced(api_version: str, kind: str) -> bool:
    return _schema(api_version, kind)[1]


@lru_cache(maxsize=64)
def _validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = schema_for(api_version, kind)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def _path(error: jsonschema.ValidationError) -> str:
    out = ""
    for p in error.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(object)"


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """``path: message`` for every way ``obj`` breaks its kind's schema."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["(object): apiVersion and kind are required strings"]
    validator = _validator(api_version, kind)
    errors = sorted(validator.iter_errors(obj), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{_path(e)}: {e.message}" for e in errors]


# ---------------------------------------------------------------- rules a schema cannot carry


def _is_qualified_name(key: str) -> bool:
    return bool(_QUALIFIED_NAME.fullmatch(key)) and len(key.rsplit("/", 1)[-1]) <= 63


def _is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.fullmatch(value))


_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# KubeRay's name limits (utils.MaxRayClusterNameLength = 63 - len("-serve-svc"); RayJob and RayService
# names get a 6-character suffix when KubeRay names their RayCluster).
KUBERAY_NAME_LIMITS = {"RayCluster": 53, "RayJob": 47, "RayService": 47}


def _ray_cluster_spec_errors(spec: dict[str, Any], where: str) -> list[str]:
    """KubeRay's ValidateRayClusterSpec rules that rayfleet's manifests must respect."""
    out: list[str] = []
    groups = [("headGroupSpec", spec.get("headGroupSpec") or {})]
    groups += [(f"workerGroupSpecs[{i}]", g) for i, g in enumerate(spec.get("workerGroupSpecs") or [])]
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    for path, group in groups:
        params = group.get("rayStartParams") or {}
        if "labels" in params:
            out.append(f"{where}.{path}.rayStartParams: 'labels' is rejected by KubeRay; use the group's labels field")
        if group.get("resources") and any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")):
            out.append(f"{where}.{path}: resources are set in both rayStartParams and the resources field")
        for key, value in (group.get("labels") or {}).items():
            if not _is_qualified_name(key):
                out.append(f"{where}.{path}.labels: invalid label key {key!r}")
            if not _is_label_value(value):
                out.append(f"{where}.{path}.labels: invalid label value {value!r} for {key!r}")
        containers = (((group.get("template") or {}).get("spec") or {}).get("containers")) or []
        if not containers:
            out.append(f"{where}.{path}.template.spec.containers: at least one container is required")
        if path.startswith("worker"):
            lo, hi = group.get("minReplicas"), group.get("maxReplicas")
            if not autoscaling and (lo is None or hi is None):
                out.append(f"{where}.{path}: minReplicas and maxReplicas are required without autoscaling")
            if lo is not None and hi is not None and lo > hi:
                out.append(f"{where}.{path}: minReplicas {lo} > maxReplicas {hi}")
            replicas = group.get("replicas")
            if replicas is not None and lo is not None and hi is not None and not lo <= replicas <= hi:
                out.append(f"{where}.{path}: replicas {replicas} outside [{lo}, {hi}]")
    return out


def _cel_clusterqueue(spec: dict[str, Any]) -> list[str]:
    out = []
    if "cohortName" not in spec:
        for g, rg in enumerate(spec.get("resourceGroups") or []):
            for f, fl in enumerate(rg.get("flavors") or []):
                for r, res in enumerate(fl.get("resources") or []):
                    if "borrowingLimit" in res:
                        out.append(f"spec.resourceGroups[{g}].flavors[{f}].resources[{r}]: borrowingLimit must be nil when cohort is empty")
    ff = spec.get("flavorFungibility") or {}
    if "preference" in ff and not (ff.get("whenCanBorrow") == "TryNextFlavor" and ff.get("whenCanPreempt") == "TryNextFlavor"):
        out.append("spec.flavorFungibility: preference can only be set when both whenCanBorrow and whenCanPreempt are TryNextFlavor")
    pre = spec.get("preemption") or {}
    if pre.get("reclaimWithinCohort", "Never") == "Never" and (pre.get("borrowWithinCohort") or {}).get("policy", "Never") != "Never":
        out.append("spec.preemption: reclaimWithinCohort=Never and borrowWithinCohort.Policy!=Never")
    for g, rg in enumerate(spec.get("resourceGroups") or []):
        n = len(rg.get("coveredResources") or [])
        for f, fl in enumerate(rg.get("flavors") or []):
            if len(fl.get("resources") or []) != n:
                out.append(f"spec.resourceGroups[{g}].flavors[{f}]: flavors must have the same number of resources as the coveredResources")
            names = [r.get("name") for r in fl.get("resources") or []]
            if sorted(names) != sorted(rg.get("coveredResources") or []):
                out.append(f"spec.resourceGroups[{g}].flavors[{f}]: resources {names} differ from coveredResources")
    return out


def _cel_tolerations(tolerations: list[dict[str, Any]], where: str) -> list[str]:
    out = []
    for i, t in enumerate(tolerations):
        op = t.get("operator", "Equal")
        if "key" not in t and op != "Exists":
            out.append(f"{where}[{i}]: operator must be Exists when 'key' is empty")
        if "tolerationSeconds" in t and t.get("effect") != "NoExecute":
            out.append(f"{where}[{i}]: effect must be 'NoExecute' when 'tolerationSeconds' is set")
        if op not in ("Equal", "Exists"):
            out.append(f"{where}[{i}]: supported toleration operators: Equal, Exists")
        if op == "Exists" and "value" in t:
            out.append(f"{where}[{i}]: a value must be empty when 'operator' is 'Exists'")
        if "effect" in t and t["effect"] not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            out.append(f"{where}[{i}]: unsupported taint effect {t['effect']!r}")
    return out


def semantic_errors(obj: dict[str, Any]) -> list[str]:
    """CEL rules and operator checks beyond the schema, for the kinds rayfleet generates."""
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    out: list[str] = []
    name = meta.get("name", "")
    if kind in KUBERAY_NAME_LIMITS:
        limit = KUBERAY_NAME_LIMITS[kind]
        if len(name) > limit or not _DNS1035.fullmatch(name):
            out.append(f"metadata.name: {kind} name {name!r} must be a DNS-1035 label of at most {limit} characters")
    if kind == "RayCluster":
        out += _ray_cluster_spec_errors(spec, "spec")
    elif kind == "RayJob":
        if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
            out.append("spec.suspend: a RayJob with shutdownAfterJobFinishes=false cannot be suspended")
        selector = spec.get("clusterSelector") or {}
        if spec.get("suspend") and selector:
            out.append("spec.suspend: the clusterSelector mode does not support suspend")
        if not selector and "rayClusterSpec" not in spec:
            out.append("spec: one of rayClusterSpec or clusterSelector must be set")
        if selector and (spec.get("backoffLimit") or 0) > 0:
            out.append("spec.backoffLimit: incompatible with clusterSelector mode")
        if "rayClusterSpec" in spec:
            out += _ray_cluster_spec_errors(spec["rayClusterSpec"], "spec.rayClusterSpec")
    elif kind == "RayService":
        out += _ray_cluster_spec_errors(spec.get("rayClusterConfig") or {}, "spec.rayClusterConfig")
    elif kind == "ClusterQueue":
        out += _cel_clusterqueue(spec)
    elif kind == "ResourceFlavor":
        out += _cel_tolerations(spec.get("tolerations") or [], "spec.tolerations")
        for i, t in enumerate(spec.get("nodeTaints") or []):
            if t.get("effect") not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
                out.append(f"spec.nodeTaints[{i}]: unsupported taint effect {t.get('effect')!r}")
        if "topologyName" in spec and not spec.get("nodeLabels"):
            out.append("spec: at least one nodeLabel is required when topology is set")
    return out


def validate(obj: dict[str, Any]) -> list[str]:
    """Every problem with ``obj``: schema errors, then semantic errors. Empty means valid."""
    try:
        errors = schema_errors(obj)
        namespaced = is_namespaced(obj["apiVersion"], obj["kind"])
    except SchemaNotFound as e:
        return [f"(object): {e}"]
    ns = (obj.get("metadata") or {}).get("namespace")
    if namespaced and not ns:
        errors.append(f"metadata.namespace: {obj['kind']} is namespaced; a namespace is required")
    elif not namespaced and ns:
        errors.append(f"metadata.namespace: {obj['kind']} is cluster-scoped; it takes no namespace")
    return errors + semantic_errors(obj)


class ManifestInvalid(ValueError):
    """A generated object does not validate against its schema."""

    def __init__(self, obj: dict[str, Any], errors: list[str]):
        ref = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        super().__init__(f"{ref} is invalid:\n  " + "\n  ".join(errors))
        self.errors = errors
        self.ref = ref


def check(obj: dict[str, Any]) -> dict[str, Any]:
    """Return ``obj`` if it validates; raise ManifestInvalid otherwise."""
    errors = validate(obj)
    if errors:
        raise ManifestInvalid(obj, errors)
    return obj
