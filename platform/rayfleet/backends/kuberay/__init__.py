"""KubeRay backend for GKE.

- :mod:`.manifests`: RayCluster / RayJob / RayService objects (``ray.io/v1``) with GKE node selection
  (GPU, TPU, spot, reservations, compute classes, DWS flex-start) plus PodTemplate + ProvisioningRequest
  pairs for queued flex-start.
- :mod:`.compute_class`: GKE ``ComputeClass`` objects (``cloud.google.com/v1``).
- :mod:`.kueue`: Kueue ``v1beta2`` export (ResourceFlavor, ClusterQueue, LocalQueue, Cohort,
  WorkloadPriorityClass, and the DWS AdmissionCheck / ProvisioningRequestConfig).
- :mod:`.export`: ``rayfleet export --target gke``: one YAML file per kind, ready for ``kubectl apply -f``.
- :mod:`.crd_schema`: the CRD openAPIV3Schemas (vendored copies under ``crds/``, :mod:`.crd_vendor`) prepared for jsonschema.
- :mod:`.client`: :class:`~.client.KubeRayBackend`, the Backend protocol on a real cluster.

Only :mod:`.client` imports the ``kubernetes`` package; everything else is pure data.
"""

from __future__ import annotations
