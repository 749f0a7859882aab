"""Ray Serve for rayfleet Services: multi-host leader-worker replicas, autoscaling under quota.

* :mod:`.placement` — a replica's placement group: one bundle per host, pinned to the admitted pool;
* :mod:`.group` — the leader-worker runtime inside a replica (:class:`~.group.LeaderWorkerGroup`,
  :class:`~.group.GroupMember`);
* :mod:`.app` — the Serve application builder that turns a Service's app into groups;
* :mod:`.policy` — the autoscaling policy (Serve's own, plus the uncapped "wanted" count);
* :mod:`.deployer` — deploy/status/delete on a running cluster (Serve REST API + GCS KV);
* :mod:`.scaler` — the per-cycle cap of Serve's replicas to the quota grant, with the reason.

The Serve tests and benchmark run on the product's own local backend
(:class:`rayfleet.backends.local.LocalBackend`), not on a cluster launcher of their own.

Nothing here is imported eagerly: ``import rayfleet.serve`` does not import Ray.
"""
