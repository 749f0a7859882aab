"""``rayfleet export --target gke --self``: the control service's own manifests are valid Kubernetes
objects (the official client's models), its RBAC lets through every request the KubeRay backend
makes (measured on the fake API server), the platform config it carries loads in-cluster, and the
CLI refuses what it cannot export; the bootstrap admin token the Deployment passes is registered."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml
from kuberay_fleet import start, submit_all, wait_done
from kuberay_helpers import GKE_EXAMPLE, rbac_denied, until
from typer.testing import CliRunner

from rayfleet.backends.kuberay import self_manifests
from rayfleet.backends.kuberay.core_models import model_errors
from rayfleet.backends.kuberay.export import build_export
from rayfleet.backends.kuberay.self_manifests import (
    ADMIN_SECRET,
    STORE_SECRET,
    ControlService,
    control_service_objects,
)
from rayfleet.cli import app
from rayfleet.config import load_config
from rayfleet.errors import SpecError

CONTROL = ControlService(image="us-docker.pkg.dev/p/r/rayfleet:0.1.0", replicas=2)


def _by_kind(objects: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for o in objects:
        out.setdefault(o["kind"], []).append(o)
    return out


def test_the_control_service_objects_are_valid_kubernetes_objects():
    cfg = load_config([GKE_EXAMPLE])
    result = build_export(cfg, CONTROL)   # raises if any object breaks its kind's schema
    kinds = _by_kind(result.objects())
    deployment = kinds["Deployment"][0]
    assert deployment["spec"]["replicas"] == 2 and deployment["metadata"]["namespace"] == "rayfleet"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == CONTROL.image and container["command"][:2] == ["rayfleet", "serve"]
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") for e in container["env"]}
    assert env["RAYFLEET_STORE"] == STORE_SECRET and env["RAYFLEET_ADMIN_TOKEN"] == ADMIN_SECRET
    assert {s["metadata"]["name"] for s in kinds["Secret"]} == {ADMIN_SECRET}   # no URL given: the store Secret is made by hand
    assert {"Service", "PodDisruptionBudget", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} <= set(kinds)
    # the check can fail: an unknown field, a missing required one, a wrong type, a namespace on a cluster-scoped kind
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    del broken["spec"]["selector"]
    broken["spec"]["replicas"] = "2"
    errors = model_errors(broken)
    assert "spec.template.spec.containers[0].imagePullPolcy: Extra inputs are not permitted" in errors
    assert "spec.selector: Field required" in errors and any(e.startswith("spec.replicas:") for e in errors)
    role = copy.deepcopy(kinds["ClusterRole"][0])
    role["metadata"]["namespace"] = "rayfleet"
    assert model_errors(role) == ["metadata.namespace: ClusterRole is cluster-scoped; it takes no namespace"]


def test_a_given_store_url_goes_in_its_secret():
    objects = control_service_objects(load_config([GKE_EXAMPLE]), ControlService(image="img", store_url="postgresql://u:p@db/rf"))
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    assert secrets[STORE_SECRET]["stringData"] == {"url": "postgresql://u:p@db/rf"}
    assert len(secrets[ADMIN_SECRET]["stringData"]["token"]) >= 32


def test_the_platform_config_it_carries_loads_and_uses_the_pod_s_service_account(tmp_path):
    source = tmp_path / "laptop.yaml"
    source.write_text(GKE_EXAMPLE.read_text().replace("  kuberay:\n", "  kuberay:\n    kubeconfig: /home/me/.kube/config\n", 1))
    cfg = load_config([source])
    assert cfg.cluster.spec.kuberay.kubeconfig == "/home/me/.kube/config"
    configmap = next(o for o in control_service_objects(cfg, CONTROL) if o["kind"] == "ConfigMap")
    (tmp_path / "platform.yaml").write_text(configmap["data"]["platform.yaml"])
    in_pod = load_config([tmp_path / "platform.yaml"])
    assert in_pod.cluster.spec.kuberay.in_cluster and in_pod.cluster.spec.kuberay.kubeconfig is None
    assert set(in_pod.pools) == set(cfg.pools) and set(in_pod.queues) == set(cfg.queues)
    assert in_pod.queues["training"].spec == cfg.queues["training"].spec
    assert {n: p.spec for n, p in in_pod.pools.items()} == {n: p.spec for n, p in cfg.pools.items()}


def test_the_rbac_lets_through_every_request_the_kuberay_backend_makes(tmp_path):
    run = start(tmp_path, jobs=30, cpu_hosts=16, t4_hosts=4, queues=2, runtime=(0.05, 0.15))
    try:
        submit_all(run)
        assert wait_done(run, 60) == 30
        # every ended run's logs saved (the dashboard through the service proxy), then released
        assert until(lambda: not run.api.all("RayJob", "rayfleet") and not [
            c for c in run.api.all("ConfigMap", "rayfleet") if c["metadata"]["name"].endswith("-notice")], timeout=10.0)
        requests = {k for k, n in run.api.counts.items() if n and k[1] != "discovery"}
    finally:
        run.close()
    assert rbac_denied(control_service_objects(run.fleet.config, CONTROL), requests) == []
    assert {("create", "rayjobs"), ("watch", "rayjobs"), ("list", "nodes")} <= requests   # (what was measured is real work)
    assert ("get", "services/proxy") in requests and ("delete", "rayjobs") in requests and ("delete", "configmaps") in requests


def test_the_cli_writes_the_files_and_refuses_what_it_cannot_export(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["export", "--target", "gke", "--config", str(GKE_EXAMPLE), "-o", str(tmp_path / "out"),
                             "--self", "--image", "img:1", "--replicas", "3"], env={"RAYFLEET_STORE": ""})
    assert ok.exit_code == 0, ok.output
    assert "3 Role" not in ok.output and "1 Role, 1 RoleBinding, 1 ClusterRole, 1 ClusterRoleBinding" in ok.output
    out = tmp_path / "out"
    deployment = next(d for d in yaml.safe_load_all((out / "44-rayfleet-control.yaml").read_text()) if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert oct((out / "42-rayfleet-secrets.yaml").stat().st_mode & 0o777) == "0o600"   # it holds the admin token
    readme = (out / "README.md").read_text()
    assert f"create secret generic {STORE_SECRET}" in readme and "The control service (`--self`)" in readme
    for args, field in ((["--self"], "--image"), (["--self", "--image", "img", "--replicas", "0"], "--replicas"),
                        (["--self", "--image", "img", "--store-url", "mysql://x@y/z"], "--store-url"), (["--image", "img"], "--image")):
        r = runner.invoke(app, ["export", "--config", str(GKE_EXAMPLE), "-o", str(tmp_path / "bad"), *args], env={"RAYFLEET_STORE": ""})
        assert r.exit_code == 2 and field in r.output, (args, r.output)


def test_the_bootstrap_admin_token_is_registered_and_nothing_is_minted(tmp_path, monkeypatch):
    from rayfleet.server.main import build_fleet

    config = Path(__file__).resolve().parents[1] / "server" / "sim_platform.yaml"
    token = "A" * 40
    monkeypatch.setenv("RAYFLEET_ADMIN_TOKEN", token)
    fleet = build_fleet([config], tmp_path / "data", backend_kind="sim", credentials_out=tmp_path / "creds.json")
    try:
        got = fleet.store.check_token(token)
        assert got is not None and got.admin
        assert fleet.store.token_count() == 1 and not (tmp_path / "creds.json").exists()   # no team token minted, none written
    finally:
        fleet.close()
    monkeypatch.setenv("RAYFLEET_ADMIN_TOKEN", "short")
    with pytest.raises(SpecError) as e:
        build_fleet([config], tmp_path / "data2", backend_kind="sim")
    assert e.value.problems[0].field == "RAYFLEET_ADMIN_TOKEN" and not (tmp_path / "data2").exists()
    assert os.environ["RAYFLEET_ADMIN_TOKEN"] == "short"


def test_with_several_clusters_only_the_service_s_own_uses_the_pod_s_service_account(tmp_path):
    text = GKE_EXAMPLE.read_text()
    second = ("---\napiVersion: rayfleet.io/v1alpha1\nkind: Cluster\nmetadata: {name: europe}\nspec:\n  backend: kuberay\n"
              "  kuberay: {kubeconfig: /etc/rayfleet/europe.kubeconfig}\n")
    (tmp_path / "two.yaml").write_text(text + second)
    cfg = load_config([tmp_path / "two.yaml"])
    assert len(cfg.clusters) == 2
    configmap = next(o for o in control_service_objects(cfg, CONTROL) if o["kind"] == "ConfigMap")
    (tmp_path / "platform.yaml").write_text(configmap["data"]["platform.yaml"])
    in_pod = load_config([tmp_path / "platform.yaml"])
    home, europe = in_pod.clusters[cfg.cluster.name], in_pod.clusters["europe"]
    assert home.spec.kuberay.in_cluster and not europe.spec.kuberay.in_cluster
    assert europe.spec.kuberay.kubeconfig == "/etc/rayfleet/europe.kubeconfig"
    readme = "\n".join(self_manifests.readme_section(cfg, CONTROL))
    assert "`europe`" in readme and "kubeconfig" in readme
