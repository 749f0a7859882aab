"""CRD openAPIV3Schemas prepared for jsonschema: strict where the schema does not preserve unknown
fields, Go regexes and int32 bounds honoured, plus the CEL/operator rules jsonschema cannot run."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from rayfleet.backends.kuberay import crd_schema


def _raycluster(**spec_extra) -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "rc", "namespace": "ns"},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray"}]}}},
            **spec_extra,
        },
    }


def test_prepare_adds_additional_properties_false_except_where_unknown_fields_are_preserved():
    raw = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "integer", "format": "int32"}}},
            "blob": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"k": {"type": "string"}}},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "when": {"type": "string", "nullable": True},
        },
    }
    schema = crd_schema.prepare_schema(raw)
    v = jsonschema.Draft202012Validator(schema)
    base = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "x"}}
    assert not list(v.iter_errors({**base, "spec": {"a": 1}, "blob": {"k": "v", "anything": 1}, "map": {"z": "y"}, "when": None}))
    assert list(v.iter_errors({**base, "spec": {"a": 1, "typo": 2}}))            # unknown field in spec
    assert list(v.iter_errors({**base, "spec": {"a": 2**31}}))                   # int32 overflow
    assert list(v.iter_errors({**base, "extra": 1}))                             # unknown top-level field
    assert list(v.iter_errors({**base, "metadata": {"name": "x", "labels": {"k": "v" * 64}}}))  # label value > 63


def test_real_raycluster_schema_rejects_unknown_fields_and_accepts_a_valid_object():
    assert crd_schema.validate(_raycluster()) == []
    bad = _raycluster(workerGroupSpecz=[])
    errors = crd_schema.validate(bad)
    assert any("workerGroupSpecz" in e for e in errors)
    deep = _raycluster()
    deep["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicee"] = "Always"
    assert any("imagePullPolicee" in e and "containers[0]" in e for e in crd_schema.validate(deep))


def test_namespace_scope_is_checked():
    obj = _raycluster()
    del obj["metadata"]["namespace"]
    assert any("namespaced" in e for e in crd_schema.validate(obj))
    wpc = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "WorkloadPriorityClass", "metadata": {"name": "p", "namespace": "x"}, "value": 1}
    assert any("cluster-scoped" in e for e in crd_schema.validate(wpc))


def test_go_inline_flag_patterns_are_translated():
    check = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "AdmissionCheck",
        "metadata": {"name": "dws"},
        "spec": {"controllerName": "kueue.x-k8s.io/provisioning-request",
                 "parameters": {"apiGroup": "kueue.x-k8s.io", "kind": "ProvisioningRequestConfig", "name": "dws"}},
    }
    assert crd_schema.validate(check) == []  # (?i) pattern: mixed-case kind accepted
    bad = copy.deepcopy(check)
    bad["spec"]["parameters"]["kind"] = "9-not-a-kind"
    assert any("parameters.kind" in e for e in crd_schema.validate(bad))


def test_kuberay_operator_rules():
    rc = _raycluster(workerGroupSpecs=[{
        "groupName": "g", "minReplicas": 2, "maxReplicas": 1,
        "rayStartParams": {"labels": "a=b", "num-gpus": "1"}, "resources": {"GPU": "1"}, "labels": {"bad key!": "v"},
        "template": {"spec": {"containers": [{"name": "w"}]}},
    }])
    errors = crd_schema.validate(rc)
    assert any("'labels' is rejected by KubeRay" in e for e in errors)
    assert any("both rayStartParams and the resources field" in e for e in errors)
    assert any("invalid label key" in e for e in errors)
    assert any("minReplicas 2 > maxReplicas 1" in e for e in errors)
    job = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j", "namespace": "ns"},
           "spec": {"suspend": True, "shutdownAfterJobFinishes": False, "clusterSelector": {"ray.io/cluster": "c"}}}
    errors = crd_schema.validate(job)
    assert any("shutdownAfterJobFinishes=false cannot be suspended" in e for e in errors)
    assert any("clusterSelector mode does not support suspend" in e for e in errors)
    long = copy.deepcopy(job)
    long["metadata"]["name"] = "j" * 48
    assert any("at most 47" in e for e in crd_schema.validate(long))


def test_clusterqueue_cel_rules():
    cq = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ClusterQueue",
        "metadata": {"name": "q"},
        "spec": {
            "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [
                {"name": "f", "resources": [{"name": "cpu", "nominalQuota": 1, "borrowingLimit": 1}]}]}],
            "preemption": {"reclaimWithinCohort": "Never", "borrowWithinCohort": {"policy": "LowerPriority"}},
        },
    }
    errors = crd_schema.validate(cq)
    assert any("borrowingLimit must be nil when cohort is empty" in e for e in errors)
    assert any("same number of resources as the coveredResources" in e for e in errors)
    assert any("reclaimWithinCohort=Never and borrowWithinCohort" in e for e in errors)


def test_embedded_schemas_for_kinds_without_a_shared_crd():
    pr = {"apiVersion": "autoscaling.x-k8s.io/v1", "kind": "ProvisioningRequest", "metadata": {"name": "p", "namespace": "n"},
          "spec": {"provisioningClassName": "queued-provisioning.gke.io", "parameters": {"maxRunDurationSeconds": 3600},
                   "podSets": [{"count": 0, "podTemplateRef": {"name": "t"}}]}}
    errors = crd_schema.validate(pr)
    assert any("parameters.maxRunDurationSeconds" in e for e in errors)  # parameters are strings
    assert any("podSets[0].count" in e for e in errors)                  # minimum 1
    cc = {"apiVersion": "cloud.google.com/v1", "kind": "ComputeClass", "metadata": {"name": "c"},
          "spec": {"priorities": [{"reservations": {"affinity": "Sometimes"}}], "whenUnsatisfiable": "DoNotScaleUp"}}
    assert any("affinity" in e for e in crd_schema.validate(cc))
    with pytest.raises(crd_schema.ManifestInvalid):
        crd_schema.check({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t", "namespace": "n"},
                          "template": {"spec": {"containers": [{"name": "c", "bogus": 1}]}}})


def test_names_and_labels_must_match_whole_a_trailing_newline_is_refused():
    from rayfleet.backends.kuberay.crd_schema import semantic_errors

    assert not any("DNS-1035" in e for e in semantic_errors({"kind": "RayJob", "metadata": {"name": "rf-job"}, "spec": {}}))
    assert any("DNS-1035" in e for e in semantic_errors({"kind": "RayJob", "metadata": {"name": "rf-job\n"}, "spec": {}}))
    group = {"labels": {"team\n": "a", "pool": "l4\n"}, "template": {"spec": {"containers": [{"name": "ray"}]}}}
    errors = semantic_errors({"kind": "RayCluster", "metadata": {"name": "rc"}, "spec": {"headGroupSpec": group}})
    assert any("invalid label key" in e for e in errors) and any("invalid label value" in e for e in errors)
