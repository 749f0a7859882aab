"""The CRDs vendored in the package: they load and validate with no CRD folder anywhere, their
provenance matches their bytes, ``make crds`` (``crd_vendor``) regenerates them, and
``$RAYFLEET_CRD_DIR`` still overrides them."""

from __future__ import annotations

import hashlib
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from kuberay_helpers import GKE_EXAMPLE
from typer.testing import CliRunner

from rayfleet.backends.kuberay import crd_schema, crd_vendor

VENDORED = Path(crd_vendor.__file__).resolve().parent / "crds"

# Files opened while a test runs under _opened(): an audit hook sees every open() of the process,
# whoever calls it, so a read of a CRD folder outside the package cannot hide.
_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], str | Path):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)


@contextmanager
def _opened():
    global _OPENED
    _OPENED = seen = []
    try:
        yield seen
    finally:
        _OPENED = None


@pytest.fixture
def no_crd_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("RAYFLEET_CRD_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    crd_schema.clear_caches()
    yield tmp_path
    crd_schema.clear_caches()


def _provenance() -> dict:
    return json.loads((VENDORED / crd_vendor.PROVENANCE).read_text())


def test_provenance_lists_every_vendored_file_with_its_hashes_and_upstream():
    entries = {e["file"]: e for e in _provenance()["files"]}
    files = {p.name for p in VENDORED.glob("*.json")} - {crd_vendor.PROVENANCE}
    assert set(entries) == files
    assert {(e["group"], e["kind"]) for e in entries.values()} == set(crd_schema.KNOWN_CRDS)
    for name, e in entries.items():
        assert hashlib.sha256((VENDORED / name).read_bytes()).hexdigest() == e["sha256"], name
        assert len(e["sourceSha256"]) == 64 and e["source"].endswith(".yaml")
        assert e["project"] in ("ray-project/kuberay", "kubernetes-sigs/kueue")
        assert e["controllerGen"].startswith("v")


def test_every_known_kind_loads_from_the_package_without_a_crd_folder(no_crd_dir):
    assert crd_schema.crd_dir() is None
    with _opened() as seen:
        for (group, kind), (plural, version) in crd_vendor.VENDORED.items():
            info = crd_schema.crd_info(group, kind)
            assert info["names"]["plural"] == plural
            assert [v["name"] for v in info["versions"]] == [version]
            assert crd_schema.schema_for(f"{group}/{version}", kind)["additionalProperties"] is False
    assert not [p for p in seen if p.endswith(".yaml")], seen


def test_export_in_another_directory_validates_against_the_vendored_copies(no_crd_dir):
    from rayfleet.cli import app

    out = no_crd_dir / "out"
    with _opened() as seen:
        result = CliRunner().invoke(app, ["export", "--target", "gke", "--config", str(GKE_EXAMPLE), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert any("WorkloadPriorityClass" in p.read_text() for p in out.rglob("*.yaml"))
    crds_read = {Path(p).name for p in seen if "crds" in Path(p).parts}
    assert crds_read and all(n.endswith(".json") for n in crds_read), crds_read
    assert all(Path(p).resolve().parent == VENDORED for p in seen if "crds" in Path(p).parts)


def _upstream_folder(tmp_path: Path, kinds: set[str] | None = None) -> Path:
    """Upstream-shaped CRD files made from the vendored ones, with descriptions and an old version
    added back, and a SOURCES.md table. Written as JSON, which is YAML (and quick to write)."""
    src = tmp_path / "upstream"
    src.mkdir()
    rows = []
    for (group, kind), (plural, _version) in crd_vendor.VENDORED.items():
        if kinds is not None and kind not in kinds:
            continue
        doc = json.loads((VENDORED / f"{group}_{plural}.json").read_text())
        v = doc["spec"]["versions"][0]
        v["schema"]["openAPIV3Schema"]["description"] = f"{kind} is a thing."
        old = json.loads(json.dumps(v))
        old.update(name="v0old", storage=False)
        doc["spec"]["versions"].append(old)
        (src / f"{group}_{plural}.yaml").write_text(json.dumps(doc))
        rows.append(f"| {group}_{plural}.yaml | example/{group} | crd/{plural}.yaml | abc123 (v9.9.9) | def | 000 |")
    (src / "SOURCES.md").write_text("| File | Repository | Path | Snapshot commit | Last changed | Blob |\n| --- |\n" + "\n".join(rows) + "\n")
    return src


def test_vendoring_an_upstream_folder_reproduces_the_vendored_copies(tmp_path):
    src = _upstream_folder(tmp_path)
    dest = tmp_path / "vendored"
    entries = crd_vendor.vendor(src, dest)
    for e in entries:
        assert (dest / e["file"]).read_bytes() == (VENDORED / e["file"]).read_bytes(), e["file"]
        assert e["versionsDropped"] == ["v0old"]
        assert e["sourceSha256"] == hashlib.sha256((src / e["source"]).read_bytes()).hexdigest()
        assert e["repository"] == f"example/{e['group']}" and e["snapshotCommit"] == "abc123 (v9.9.9)"
    assert json.loads((dest / crd_vendor.PROVENANCE).read_text())["files"] == entries


def test_a_property_named_description_survives_compaction():
    schema = {"description": "drop", "properties": {"description": {"type": "string", "description": "drop"}}}
    assert crd_vendor.strip_descriptions(schema) == {"properties": {"description": {"type": "string"}}}


def test_vendor_cli_names_a_missing_file_and_exits_2(tmp_path, capsys):
    assert crd_vendor.main([str(tmp_path / "nowhere")]) == 2
    assert crd_vendor.main([str(tmp_path), "--dest", str(tmp_path / "d")]) == 2
    assert "ray.io_rayclusters.yaml" in capsys.readouterr().err


def test_rayfleet_crd_dir_overrides_the_vendored_copies(tmp_path, monkeypatch):
    src = _upstream_folder(tmp_path, {"WorkloadPriorityClass"})
    path = src / "kueue.x-k8s.io_workloadpriorityclasses.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["value"]["maximum"] = 10
    path.write_text(yaml.safe_dump(doc))
    wpc = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "WorkloadPriorityClass", "metadata": {"name": "p"}, "value": 100}
    crd_schema.clear_caches()
    try:
        assert crd_schema.schema_errors(wpc) == []
        monkeypatch.setenv("RAYFLEET_CRD_DIR", str(src))
        crd_schema.clear_caches()
        assert any(e.startswith("value:") for e in crd_schema.schema_errors(wpc))
    finally:
        monkeypatch.delenv("RAYFLEET_CRD_DIR")
        crd_schema.clear_caches()
