"""``rayfleet demo`` (``make demo``): the main scenario on the embedded default.

1. rayfleet comes up: a local Ray cluster (each simulated GKE host a Ray node) and the service.
2. Team A's training gang needs 16 H100s: 8 of its own quota and 8 borrowed from team B's idle quota.
3. Team B's production job arrives; B reclaims its quota: A is preempted and requeued.
4. B's job finishes; A is admitted again and resumes from its last checkpoint.
5. Team C's job arrives through Ray's own ``ray job submit``.
6. Team C serves a model over HTTP: one replica is a leader-worker group on 2 spot L4 hosts.
7. B's job finishes; A resumes from its checkpoint and finishes.
8. Capacity as GKE has it, on the fleet simulator (the same controller, store and quota code on the
   simulated backend, under simulated time): the L4 path of the talk, reservation full -> DWS
   flex-start waits too long -> resubmitted -> given up -> back to the reservation when it frees.
9. Everything shuts down; no Ray process is left.
Queue states are printed along the way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer
from rich.table import Table

from ..client import FleetClient
from .common import credentials, credentials_path, data_dir
from .output import console
from .up_cmd import down, up


def _queues(fleet: FleetClient, title: str) -> None:
    t = Table(title=title, title_justify="left")
    for col in ("queue", "usage", "borrowed", "lent", "admitted", "waiting"):
        t.add_column(col)

    def fmt(table: dict) -> str:
        return "; ".join(f"{fl}: " + ", ".join(f"{v} {r.split('/')[-1]}" for r, v in res.items() if r != "memory")
                         for fl, res in table.items()) or "-"

    for q in fleet.queues():
        st = q["status"]
        waiting = "; ".join(f"{w['workload']}: {w['reason']}" for w in st["waiting"]) or "-"
        t.add_row(q["metadata"]["name"], fmt(st["usage"]), fmt(st["borrowed"]), fmt(st["lent"]),
                  ", ".join(st["admittedWorkloads"]) or "-", waiting)
    console.print(t, width=max(console.width, 150))


def _wait(cond, what: str, timeout: float = 240.0, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo: timed out waiting for {what}")
        time.sleep(poll)


def _train(name: str, queue: str, workers: int, gpus: int, steps: int, priority: str | None = None) -> dict:
    spec: dict = {"queue": queue, "trainApp": {"module": "train_apps.ddp_synthetic",
                                               "config": {"steps": steps, "checkpoint_every": 5, "step_sleep_s": 0.3}},
                  "gang": {"workers": workers, "resourcesPerWorker": {"cpu": 4, "memory": "32Gi", "nvidia.com/gpu": gpus},
                           "accelerator": "nvidia-h100-80gb"},
                  "labels": {"team": queue}}
    if priority:
        spec["priorityClass"] = priority
    return {"metadata": {"name": name}, "spec": spec}


def _service(name: str) -> dict:
    """Team C's model: the pipelined MLP, one replica split across 2 hosts (leader -> worker -> leader)."""
    return {"metadata": {"name": name},
            "spec": {"importPath": "serve_apps.pipeline_mlp:app", "queue": "team-c", "routePrefix": f"/{name}",
                     "replicaGroup": {"hostsPerReplica": 2, "resourcesPerHost": {"cpu": 1, "nvidia.com/gpu": 1},
                                      "accelerator": "nvidia-l4"},
                     "autoscaling": {"minReplicas": 1, "maxReplicas": 1}}}


EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "capacity"


def _l4_path() -> bool:
    """``rayfleet simulate fleet`` on examples/capacity/snap-l4.yaml: the real controller on the
    simulated backend. True when the L4 job tried DWS and finished back on the reservation."""
    from ..config import load_config
    from ..fleetsim import load_fleet_scenario, simulate_fleet
    from .simulate_cmd import print_tables

    scenario = EXAMPLES / "snap-l4.yaml"
    console.print(f"$ rayfleet simulate fleet --config {EXAMPLES / 'fleet.yaml'} --scenario {scenario}")
    report = simulate_fleet(load_config([EXAMPLES / "fleet.yaml"]), load_fleet_scenario(scenario), file=str(scenario))
    print_tables(report)
    job = next(j for j in report["jobs"] if j["name"] == "snap-train")
    flavors = [a["flavor"] for a in job["flavors"]]
    console.print(f"snap-train: {job['state']} after {job['attempts']} attempts on " + " > ".join(flavors))
    return job["state"] == "SUCCEEDED" and "l4-dws" in flavors and flavors[-1] == "l4-res"


def demo(port: int = typer.Option(8265, "--port", help="Port of the control service.")) -> None:
    """Run the main scenario on the local backend: borrowing, reclaim, resume, `ray job submit`, a Serve endpoint."""
    started = time.monotonic()
    url = f"http://127.0.0.1:{port}"
    console.rule("1. rayfleet up (local Ray cluster: 7 simulated GKE hosts)")
    # the tokens minted at the first start go to the user's credentials file, where the CLI finds them
    up(config=None, host="127.0.0.1", port=port, timeout=600, allow_new_database=False, metrics_public=False,
       backend=None, store=None, credentials_out=credentials_path())
    creds = credentials()
    admin = FleetClient(url, token=creds["admin"])
    team_a = FleetClient(url, token=creds["teams"]["team-a"])
    team_b = FleetClient(url, token=creds["teams"]["team-b"])
    team_c = FleetClient(url, token=creds["teams"]["team-c"])
    suffix = time.strftime("%H%M%S")
    try:
        console.rule("2. team A's gang borrows team B's idle H100 quota")
        a = team_a.submit(_train(f"a-pretrain-{suffix}", "team-a", workers=2, gpus=8, steps=60))
        st = _wait(lambda: (s := a.status())["state"] == "RUNNING" and (s.get("lastCheckpointStep") or 0) >= 5 and s,
                   "team A's job to run and checkpoint")
        console.print(f"{a.name}: RUNNING on {st['pool']}, borrowing {st['borrowed']}, checkpoint at step {st['lastCheckpointStep']}")
        _queues(admin, "queues while team A borrows")

        console.rule("3. team B's production job reclaims its quota")
        b = team_b.submit(_train(f"b-prod-{suffix}", "team-b", workers=1, gpus=8, steps=10, priority="production"))
        st = _wait(lambda: (s := a.status())["interruptions"] and s, "team A's job to be preempted")
        i = st["interruptions"][0]
        console.print(f"{a.name}: preempted at attempt {i['attempt']} ({i['message']}); now {st['state']}, checkpoint at step {st['lastCheckpointStep']}")
        _wait(lambda: b.status()["state"] in ("RUNNING", "SUCCEEDED"), "team B's job to run")
        _queues(admin, "queues after the reclaim")

        console.rule("4. team C submits through Ray's own CLI")
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": creds["teams"]["team-c"]}
        env.pop("RAY_ADDRESS", None)
        ray = str(Path(sys.executable).with_name("ray"))
        out = subprocess.run([ray, "job", "submit", "--address", url, "--metadata-json", json.dumps({"queue": "team-c"}),
                              "--", "python", "-c", "print('hello from ray job submit, through rayfleet quota')"],
                             capture_output=True, text=True, env=env, timeout=300)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("hello from ray job submit")), None)
        console.print(f"ray job submit exited {out.returncode}; job output: {line!r}")
        if out.returncode != 0:
            console.print(out.stdout[-2000:] + out.stderr[-2000:])

        console.rule("5. team C serves a model: one replica = a leader and a worker on 2 spot L4 hosts")
        svc = team_c.deploy(_service(f"c-mlp-{suffix}"))
        svc_st = svc.wait_running(timeout=400)
        answer = httpx.post(svc_st["url"], json={"inputs": [[0.1] * 16]}, timeout=60)
        served = answer.status_code == 200 and len(set(answer.json().get("hosts", []))) == 2
        hosts = answer.json().get("hosts") if answer.status_code == 200 else answer.text[:200]
        console.print(f"{svc.name}: {svc_st['state']} at {svc_st['url']}; replicas wanted/granted/running "
                      f"{svc_st['replicasWanted']}/{svc_st['replicasGranted']}/{svc_st['replicasRunning']} on {svc_st['flavor']}")
        console.print(f"POST {svc_st['url']} -> HTTP {answer.status_code}, answered by the group on hosts {hosts}")
        svc.delete()

        console.rule("6. team B finishes; team A resumes from its checkpoint")
        b_final = b.wait(timeout=300)
        console.print(f"{b.name}: {b_final['state']}")
        a_final = a.wait(timeout=400)
        first = a_final["interruptions"][0]
        console.print(f"{a.name}: {a_final['state']} after {a_final['attempt']} attempts; attempt 2 resumed from step "
                      f"{first['resumedFromStep']} (recovered {first['recoveredAt']})")
        resumed = [ln for ln in a.logs().splitlines() if "resumed from step" in ln]
        if resumed:
            console.print(f"log: {resumed[0].strip()}")
        _queues(admin, "queues at the end")
        ok = (a_final["state"] == "SUCCEEDED" and b_final["state"] == "SUCCEEDED" and out.returncode == 0
              and (first["resumedFromStep"] or 0) > 0 and served)

        console.rule("7. capacity as GKE has it, on the fleet simulator: the L4 path (reservation -> DWS -> back)")
        ok = _l4_path() and ok
    finally:
        console.rule("8. rayfleet down")
        for c in (admin, team_a, team_b, team_c):
            c.close()
        down(config=None, timeout=60, backend=None)
    console.print(f"demo {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f}s (data: {data_dir()})")
    if not ok:
        raise typer.Exit(1)
