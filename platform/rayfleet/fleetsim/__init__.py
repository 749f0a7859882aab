"""``rayfleet simulate fleet``: the real control service (store, quota, controller, service manager)
over the simulated backend on simulated time, driven by a scenario of capacity and submissions
(``docs/capacity.md``)."""

from __future__ import annotations

from .driver import simulate_fleet, simulate_policies
from .policies import POLICIES, apply_policy
from .scenario import FleetScenario, JobStream, ServiceEntry, load_fleet_scenario, parse_fleet_scenario

__all__ = ["POLICIES", "FleetScenario", "JobStream", "ServiceEntry", "load_fleet_scenario", "parse_fleet_scenario", "apply_policy", "simulate_fleet", "simulate_policies"]
