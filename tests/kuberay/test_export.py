"""``rayfleet export --target gke``: every object validates against the matching CRD's
openAPIV3Schema (the package's vendored copy; unknown fields rejected), one kind per file, a README."""

from __future__ import annotations

import copy
import functools

import jsonschema
import pytest
import typer
import yaml
from kuberay_helpers import GKE_EXAMPLE
from typer.testing import CliRunner

from rayfleet.backends.kuberay import crd_schema
from rayfleet.backends.kuberay.export import build_export, write_export
from rayfleet.cli.export_cmd import export


@pytest.fixture(scope="module")
def exported(gke_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("gke")
    result = write_export(gke_cfg, out, sources=[str(GKE_EXAMPLE)])
    return out, result


@functools.lru_cache
def _crd_validator(api_version: str, kind: str):
    """jsonschema straight from the CRD file (no rayfleet validation code beyond preparation)."""
    group, version = crd_schema.split_api_version(api_version)
    raw = crd_schema.raw_crd_schema(group, version, kind)
    return jsonschema.Draft202012Validator(crd_schema.prepare_schema(raw))


def _load(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_exported_object_validates_against_its_crd(exported):
    out, result = exported
    files = sorted(p for p in out.rglob("*.yaml"))
    assert len(files) == len(result.files)
    kinds_from_crds = set()
    for path in files:
        for obj in _load(path):
            assert crd_schema.validate(obj) == [], f"{path.name}: {obj['kind']}/{obj['metadata']['name']}"
            key = (crd_schema.split_api_version(obj["apiVersion"])[0], obj["kind"])
            if key in crd_schema.KNOWN_CRDS:
                kinds_from_crds.add(obj["kind"])
                errors = list(_crd_validator(obj["apiVersion"], obj["kind"]).iter_errors(obj))
                assert errors == [], errors[:3]
    assert kinds_from_crds == {"RayCluster", "RayJob", "ClusterQueue", "LocalQueue", "ResourceFlavor", "WorkloadPriorityClass",
                               "Cohort", "AdmissionCheck", "ProvisioningRequestConfig"}


def test_unknown_fields_are_rejected_in_every_exported_kind(exported):
    out, _ = exported
    seen = set()
    for path in sorted(out.rglob("*.yaml")):
        obj = _load(path)[0]
        seen.add(obj["kind"])
        bad = copy.deepcopy(obj)
        target = bad.get("spec", bad)
        target["notAField"] = 1
        assert any("notAField" in e for e in crd_schema.validate(bad)), obj["kind"]
    assert {"RayCluster", "RayJob", "ComputeClass", "ProvisioningRequest", "PodTemplate", "Namespace"} <= seen


def test_one_kind_per_file_in_apply_order_with_a_readme(exported):
    out, result = exported
    for rel, objs in result.files.items():
        kinds = {o["kind"] for o in _load(out / rel)}
        assert len(kinds) == 1 and len(_load(out / rel)) == len(objs)
    top = sorted(p.name for p in out.glob("*.yaml"))
    assert top[0] == "00-namespaces.yaml" and top[-1] == "30-rayclusters.yaml"
    assert top.index("22-resourceflavors.yaml") < top.index("25-clusterqueues.yaml") < top.index("26-localqueues.yaml")
    readme = (out / "README.md").read_text()
    for rel in result.files:
        assert f"`{rel}`" in readme
    assert "kubectl apply -f ." in readme


def test_all_pool_types_are_covered(exported):
    out, _ = exported
    jobs = _load(out / "examples" / "rayjobs.yaml")
    pools = {j["metadata"]["labels"]["rayfleet.io/pool"] for j in jobs}
    assert pools == {"cpu", "t4", "l4-reserved", "l4-flex", "l4-spot", "a100-reserved", "h100-flex", "tpu-v5e-4x4", "tpu-v6e-2x4", "tpu-v5p-2x2x2"}
    kueue_jobs = [j for j in jobs if j["spec"]["suspend"]]
    assert all(j["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] for j in kueue_jobs)
    assert len(_load(out / "examples" / "provisioningrequests.yaml")) == 1


def test_multiline_strings_stay_readable(exported):
    out, _ = exported
    text = (out / "examples" / "rayjobs.yaml").read_text()
    assert "runtimeEnvYAML: |" in text


def test_cli_writes_the_export(tmp_path):
    app = typer.Typer()
    app.command()(export)
    result = CliRunner().invoke(app, ["--target", "gke", "--config", str(GKE_EXAMPLE), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "30-rayclusters.yaml").exists()
    assert "object(s)" in result.output


def test_cli_config_errors_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pool\nmetadata: {name: p}\nspec: {machineType: n2, maxReplicas: 0}\n")
    app = typer.Typer()
    app.command()(export)
    result = CliRunner().invoke(app, ["--config", str(bad), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "maxReplicas" in result.output
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["--target", "eks", "--config", str(GKE_EXAMPLE), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2


def test_export_is_deterministic(gke_cfg):
    a = build_export(gke_cfg)
    b = build_export(gke_cfg)
    assert a.files == b.files
