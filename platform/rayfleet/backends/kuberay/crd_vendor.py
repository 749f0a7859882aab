"""The vendored CRD copies under ``crds/``: what they hold, and how ``make crds`` regenerates them.

rayfleet validates every object it writes against the upstream CRD of its kind. The package carries
its own copy of those CRDs, so a clone validates and exports without any folder beside it. A vendored
file is the upstream CRD reduced to what validation and the test API server read:

- only the kinds rayfleet emits (:data:`VENDORED`), and of each only the version rayfleet writes
  (KubeRay ``v1``, Kueue ``v1beta2``: the storage versions);
- ``metadata`` keeps the name and annotations; ``spec`` its group, names, scope and that version;
- ``description`` keys are dropped from the schema (they are most of the bytes, and
  :func:`crd_schema.prepare_schema` drops them anyway); a *property* named ``description`` stays;
- written as compact JSON (``<group>_<plural>.json``).

``PROVENANCE.json`` records, per file: the upstream file name and its sha256, the vendored file's
sha256, the upstream project, the ``controller-gen.kubebuilder.io/version`` annotation, the version
kept and the versions dropped, and, when the source folder has a ``SOURCES.md`` table (repository,
path, snapshot commit per file), what it lists.

Regenerate: ``make crds CRD_SRC=<folder of upstream CRD files>`` (``python -m rayfleet.backends.kuberay.crd_vendor SRC``);
nothing reads such a folder at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

# (group, kind) -> (plural, the version rayfleet writes). The kinds of every object rayfleet emits
# that has an upstream CRD; the others carry their schema in crd_schema.py.
VENDORED: dict[tuple[str, str], tuple[str, str]] = {
    ("ray.io", "RayCluster"): ("rayclusters", "v1"),
    ("ray.io", "RayJob"): ("rayjobs", "v1"),
    ("ray.io", "RayService"): ("rayservices", "v1"),
    ("kueue.x-k8s.io", "ClusterQueue"): ("clusterqueues", "v1beta2"),
    ("kueue.x-k8s.io", "LocalQueue"): ("localqueues", "v1beta2"),
    ("kueue.x-k8s.io", "ResourceFlavor"): ("resourceflavors", "v1beta2"),
    ("kueue.x-k8s.io", "WorkloadPriorityClass"): ("workloadpriorityclasses", "v1beta2"),
    ("kueue.x-k8s.io", "Cohort"): ("cohorts", "v1beta2"),
    ("kueue.x-k8s.io", "AdmissionCheck"): ("admissionchecks", "v1beta2"),
    ("kueue.x-k8s.io", "ProvisioningRequestConfig"): ("provisioningrequestconfigs", "v1beta2"),
}

PROJECTS = {"ray.io": "ray-project/kuberay", "kueue.x-k8s.io": "kubernetes-sigs/kueue"}
CONTROLLER_GEN = "controller-gen.kubebuilder.io/version"
VENDOR_DIR = Path(__file__).resolve().parent / "crds"
PROVENANCE = "PROVENANCE.json"


def file_name(group: str, plural: str, suffix: str) -> str:
    return f"{group}_{plural}{suffix}"


def strip_descriptions(node: Any) -> Any:
    """The schema without ``description`` keys; keys of a ``properties`` map are field names and stay."""
    if isinstance(node, list):
        return [strip_descriptions(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "description":
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: strip_descriptions(sub) for name, sub in value.items()}
        else:
            out[key] = strip_descriptions(value)
    return out


def compact(crd: dict[str, Any], version: str, source: str) -> dict[str, Any]:
    """One upstream CRD reduced to ``version`` (see the module docstring). Raises ValueError."""
    spec = crd.get("spec") or {}
    kept = [v for v in spec.get("versions") or [] if v.get("name") == version]
    if not kept:
        have = [v.get("name") for v in spec.get("versions") or []]
        raise ValueError(f"{source}: no version {version} (has {have})")
    meta = crd.get("metadata") or {}
    return {
        "apiVersion": crd.get("apiVersion"),
        "kind": crd.get("kind"),
        "metadata": {"name": meta.get("name"), "annotations": meta.get("annotations") or {}},
        "spec": {
            "group": spec["group"],
            "names": spec["names"],
            "scope": spec["scope"],
            "versions": [strip_descriptions(v) for v in kept],
        },
    }


def dumps(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


_ROW = re.compile(r"^\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|")


def sources_table(src: Path) -> dict[str, dict[str, str]]:
    """file name -> repository, path and snapshot commit, from the folder's SOURCES.md if it has one."""
    path = src / "SOURCES.md"
    if not path.is_file():
        return {}
    rows: dict[str, dict[str, str]] = {}
    describe: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = _ROW.match(line)
        if not m or not m.group(1).split()[0].endswith(".yaml"):
            continue
        name = m.group(1).split()[0]
        commit = m.group(4)
        sha = commit.split()[0]
        if "(" in commit:
            describe[sha] = commit
        rows[name] = {"repository": m.group(2), "path": m.group(3), "snapshotCommit": describe.get(sha, commit)}
    return rows


def vendor(src: Path, dest: Path = VENDOR_DIR) -> list[dict[str, Any]]:
    """Regenerate ``dest`` from the upstream CRD folder ``src``; returns the provenance entries."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    table = sources_table(src)
    entries: list[dict[str, Any]] = []
    outputs: dict[str, bytes] = {}
    for (group, kind), (plural, version) in VENDORED.items():
        source = src / file_name(group, plural, ".yaml")
        if not source.is_file():
            raise FileNotFoundError(f"{source}: the upstream CRD of {kind}.{group} is missing from {src}")
        raw = source.read_bytes()
        crd = yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader
        if (crd.get("spec") or {}).get("names", {}).get("kind") != kind:
            raise ValueError(f"{source}: is not the CRD of {kind}")
        doc = compact(crd, version, str(source))
        data = dumps(doc)
        name = file_name(group, plural, ".json")
        outputs[name] = data
        entry: dict[str, Any] = {
            "file": name,
            "group": group,
            "kind": kind,
            "version": version,
            "versionsDropped": [v["name"] for v in crd["spec"]["versions"] if v["name"] != version],
            "project": PROJECTS.get(group, ""),
            "controllerGen": (crd.get("metadata") or {}).get("annotations", {}).get(CONTROLLER_GEN, ""),
            "source": source.name,
            "sourceSha256": hashlib.sha256(raw).hexdigest(),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        entry.update(table.get(source.name, {}))
        entries.append(entry)
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.json"):
        if old.name not in outputs and old.name != PROVENANCE:
            old.unlink()
    for name, data in outputs.items():
        (dest / name).write_bytes(data)
    (dest / PROVENANCE).write_text(json.dumps({"generatedBy": "make crds", "files": entries}, indent=2) + "\n")
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate rayfleet's vendored CRD copies from upstream CRD files.")
    parser.add_argument("src", type=Path, help="folder of upstream CRD YAML files (<group>_<plural>.yaml)")
    parser.add_argument("--dest", type=Path, default=VENDOR_DIR, help="vendored folder (default: the package's crds/)")
    args = parser.parse_args(argv)
    if not args.src.is_dir():
        print(f"crds: {args.src} is not a folder", file=sys.stderr)
        return 2
    try:
        entries = vendor(args.src, args.dest)
    except (OSError, ValueError, KeyError) as e:
        print(f"crds: {e}", file=sys.stderr)
        return 2
    for entry in entries:
        print(f"{entry['file']}: {entry['kind']} {entry['version']} from {entry['source']} "
              f"({entry['project']}, sha256 {entry['sourceSha256'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
