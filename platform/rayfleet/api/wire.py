"""The wire forms of the submitted kinds: what a client sends (metadata and spec) and what the
REST API answers (the stored document with its metadata.resourceVersion and team).

The REST routes take and return these models, so the OpenAPI page shows them; the Python client
parses its answers into them.
"""

from __future__ import annotations

from typing import Any, Literal, overload

from pydantic import Field, model_serializer, model_validator

from .base import API_VERSION, Model, SubmittedMeta, WorkloadMeta
from .job import TrainJob, TrainJobSpec
from .service import Service, ServiceSpec

STATUS_IS_SERVERS = "status: status is set by rayfleet; submit metadata and spec only"


def _submitted_body(data: Any) -> Any:
    """A submitted body is a JSON object without ``status`` (the field is named in the error)."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    if "status" in data:
        raise ValueError(STATUS_IS_SERVERS)
    return data


class TrainJobSubmit(Model):
    """A TrainJob as a client submits it: metadata (name = client-chosen id) and spec; status is rayfleet's."""

    api_version: Literal["rayfleet.io/v1alpha1"] = Field(default=API_VERSION, description="Always rayfleet.io/v1alpha1.")
    kind: Literal["TrainJob"] = "TrainJob"
    metadata: WorkloadMeta = Field(description="Id and labels.")
    spec: TrainJobSpec = Field(description="What to run and with what.")

    _body = model_validator(mode="before")(_submitted_body)

    def document(self) -> TrainJob:
        """The TrainJob, checked to decode again from its own JSON (see Document.accept)."""
        return TrainJob.accept({"apiVersion": self.api_version, "kind": self.kind, "metadata": self.metadata, "spec": self.spec})


class ServiceSubmit(Model):
    """A Service as a client deploys it: metadata and spec; status is rayfleet's."""

    api_version: Literal["rayfleet.io/v1alpha1"] = Field(default=API_VERSION, description="Always rayfleet.io/v1alpha1.")
    kind: Literal["Service"] = "Service"
    metadata: SubmittedMeta = Field(description="Name and labels.")
    spec: ServiceSpec = Field(description="The application and its replicas.")

    _body = model_validator(mode="before")(_submitted_body)

    def document(self) -> Service:
        """The Service, checked to decode again from its own JSON (see Document.accept)."""
        return Service.accept({"apiVersion": self.api_version, "kind": self.kind, "metadata": self.metadata, "spec": self.spec})


class StoredWorkloadMeta(WorkloadMeta):
    """Metadata of a stored TrainJob: id, labels, uid, resourceVersion and team."""

    resource_version: int = Field(description="Version of the stored record; it changes on every write.")
    team: str | None = Field(default=None, description="Team that owns the object (the team of its queue).")


class StoredServiceMeta(SubmittedMeta):
    """Metadata of a stored Service: name, labels, uid, resourceVersion and team."""

    resource_version: int = Field(description="Version of the stored record; it changes on every write.")
    team: str | None = Field(default=None, description="Team that owns the object (the team of its queue).")


def _kind_first(body: Any) -> Any:
    """The wire form starts apiVersion, kind (as Document.to_dict writes it)."""
    if isinstance(body, dict):
        head = {k: body.pop(k) for k in ("apiVersion", "api_version", "kind") if k in body}
        return {**head, **body}
    return body


# A wrap serializer that keeps the model's own JSON schema: pydantic takes the schema from the
# function's return annotation, and a lambda has none.
_ordered = model_serializer(mode="wrap")(lambda self, handler: _kind_first(handler(self)))


class TrainJobRecord(TrainJob):
    """A TrainJob as the API answers it: the stored document plus metadata.resourceVersion and team."""

    metadata: StoredWorkloadMeta = Field(description="Id, labels, uid, resourceVersion and team.")

    _order = _ordered


class ServiceRecord(Service):
    """A Service as the API answers it: the stored document plus metadata.resourceVersion and team."""

    metadata: StoredServiceMeta = Field(description="Name, labels, uid, resourceVersion and team.")

    _order = _ordered


@overload
def record_of(doc: TrainJob, resource_version: int, team: str | None) -> TrainJobRecord: ...


@overload
def record_of(doc: Service, resource_version: int, team: str | None) -> ServiceRecord: ...


def record_of(doc: TrainJob | Service, resource_version: int, team: str | None) -> TrainJobRecord | ServiceRecord:
    """The wire record of a stored document."""
    meta = {**doc.metadata.model_dump(), "resource_version": resource_version, "team": team}
    if isinstance(doc, TrainJob):
        return TrainJobRecord(api_version=doc.api_version, kind=doc.kind, metadata=StoredWorkloadMeta(**meta), spec=doc.spec, status=doc.status)
    return ServiceRecord(api_version=doc.api_version, kind=doc.kind, metadata=StoredServiceMeta(**meta), spec=doc.spec, status=doc.status)
