"""Serve applications users deploy as rayfleet Services (small, real, runnable on CPU).

* ``serve_apps.pipeline_mlp:app`` (builder ``build_app``): a torch MLP split across the hosts of a
  multi-host replica, leader -> workers -> leader.
* ``serve_apps.classifier:app`` (builder ``build_app``): a single-host torch classifier.
"""
