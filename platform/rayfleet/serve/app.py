"""Build the Ray Serve application of a Service.

A Service names its application by import path (``serve_apps.pipeline_mlp:app``, or a builder
``module:build_app`` that takes ``spec.args``). rayfleet deploys it through Serve's declarative API
with :func:`build_service_app` as the application's import path: Serve runs that builder inside the
cluster, it imports the user's application and turns its ingress deployment into the Service's
leader-worker group:

* renamed to :data:`GROUP_DEPLOYMENT`, so the Serve config can address it by name (the per-cycle
  ``max_replicas`` cap is a deployment override there, a lightweight update that restarts nothing);
* ``placement_group_bundles`` (one per host), ``placement_group_strategy`` and
  ``placement_group_bundle_label_selector`` from :class:`~rayfleet.serve.placement.GroupPlacement`:
  Serve creates one placement group per replica and schedules the replica (the leader) in bundle 0;
* ``ray_actor_options`` resources = bundle 0 (the leader holds host 0's accelerators), keeping the
  user's other actor options (runtime_env, ...).

:func:`with_group` does the same for an ``Application`` object, for ``serve.run``.
"""

from __future__ import annotations

import inspect
from typing import Any

from ray.serve.deployment import Application, Deployment

from .names import GROUP_DEPLOYMENT
from .placement import GroupPlacement

__all__ = ["GROUP_DEPLOYMENT", "build_service_app", "with_group"]

_PLACEMENT_ACTOR_KEYS = ("num_cpus", "num_gpus", "resources", "memory", "accelerator_type", "label_selector")


def _import(path: str) -> Any:
    from ray._common.utils import import_attr

    return import_attr(path)


def _call_builder(target: Any, args: dict[str, Any]) -> Application:
    if isinstance(target, Application):
        if args:
            raise ValueError("spec.args: arguments go to an application builder function, not to a built application")
        return target
    if isinstance(target, Deployment):
        return target.bind(**args)
    if callable(target):
        params = list(inspect.signature(target).parameters.values())
        if len(params) != 1:
            raise TypeError("spec.importPath: an application builder takes exactly one parameter (the args dict)")
        ann = params[0].annotation
        if inspect.isclass(ann) and hasattr(ann, "model_validate"):
            args = ann.model_validate(args)
        app = target(args)
        if not isinstance(app, Application):
            raise TypeError(f"spec.importPath: the builder returned {type(app).__name__}, not a Serve Application")
        return app
    raise TypeError(f"spec.importPath: {type(target).__name__} is neither a Serve application nor a builder")


def with_group(
    app: Application,
    placement: GroupPlacement,
    *,
    name: str = GROUP_DEPLOYMENT,
    options: dict[str, Any] | None = None,
) -> Application:
    """``app`` with its ingress deployment made a leader-worker group placed by ``placement``.

    ``options``: further ``Deployment.options()`` (health check, graceful shutdown, autoscaling...).
    """
    ingress: Deployment = app._bound_deployment
    actor_opts = {k: v for k, v in (ingress.ray_actor_options or {}).items() if k not in _PLACEMENT_ACTOR_KEYS}
    actor_opts.update(placement.actor_resources)
    new = ingress.options(
        name=name,
        ray_actor_options=actor_opts,
        **placement.deployment_options(),
        **(options or {}),
    )
    return Application(new)


def build_service_app(args: dict[str, Any]) -> Application:
    """Serve application builder for a Service (import path ``rayfleet.serve.app:build_service_app``).

    ``args``: ``importPath`` and ``args`` of the Service, ``placement`` (a GroupPlacement dict) and
    ``deploymentName``.
    """
    app = _call_builder(_import(args["importPath"]), dict(args.get("args") or {}))
    placement = GroupPlacement.from_dict(args["placement"])
    return with_group(app, placement, name=args.get("deploymentName", GROUP_DEPLOYMENT))
