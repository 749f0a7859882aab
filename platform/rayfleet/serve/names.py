"""Names shared by the controller side (deployer) and the cluster side (builder, policy); no Ray import."""

from __future__ import annotations

#: Name of a Service's ingress deployment, the one whose replicas are leader-worker groups.
GROUP_DEPLOYMENT = "rayfleet-group"
#: Serve application builder of every Service.
BUILDER_IMPORT_PATH = "rayfleet.serve.app:build_service_app"
#: Autoscaling policy of every Service's group deployment.
POLICY_IMPORT_PATH = "rayfleet.serve.policy:QuotaAwarePolicy"
#: GCS internal-KV namespace of the policy's records.
KV_NAMESPACE = "rayfleet"


def kv_key(app_name: str, deployment_name: str = GROUP_DEPLOYMENT) -> str:
    """KV key of the autoscaling record of one deployment."""
    return f"serve/{app_name}/{deployment_name}"
