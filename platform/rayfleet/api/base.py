"""Shared building blocks of the resource model: the strict base model, object metadata,
resource quantities and durations.

Documents look like Kubernetes objects: ``apiVersion``, ``kind``, ``metadata`` (name, labels),
``spec`` (what the user wants) and ``status`` (what rayfleet observed). Field names are camelCase
on the wire (the ecosystem's convention: nominalQuota, borrowingLimit); snake_case is accepted too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

API_VERSION: Final = "rayfleet.io/v1alpha1"

# Kubernetes resource names rayfleet understands, in canonical integer units:
# cpu in millicores, memory in bytes, accelerators as counts.
CPU = "cpu"
MEMORY = "memory"
GPU = "nvidia.com/gpu"
TPU = "google.com/tpu"
RESOURCE_NAMES = (CPU, MEMORY, GPU, TPU)
ACCELERATOR_RESOURCES = (GPU, TPU)


class Model(BaseModel):
    """Strict base: unknown fields are rejected, camelCase aliases, snake_case accepted."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        validate_assignment=True,
        use_enum_values=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase, no unset optional noise."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _check_name(value: Any) -> Any:
    if isinstance(value, str) and (len(value) > 63 or not _NAME_RE.match(value)):
        raise ValueError(
            "must be a DNS-1123 label: at most 63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return value


Name = Annotated[str, BeforeValidator(_check_name), Field(description="A DNS-1123 label.")]


class ObjectMeta(Model):
    name: Name = Field(description="Unique name of the object within its kind.")
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form labels (team, cost centre, ...).")
    annotations: dict[str, str] = Field(default_factory=dict, description="Free-form annotations.")


_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _check_job_id(value: Any) -> Any:
    if isinstance(value, str) and not _JOB_ID_RE.match(value):
        raise ValueError("must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return value


class WorkloadMeta(ObjectMeta):
    """Metadata of submitted workloads: the name is the client-chosen id (Ray submission ids such as
    ``raysubmit_Xe7cvjyGJCyuCvm2`` are valid)."""

    name: Annotated[str, BeforeValidator(_check_job_id)] = Field(description="Client-chosen id; resubmitting the same id is idempotent.")


class Document(Model):
    """A stored kind: apiVersion/kind/metadata/spec/status."""

    KIND: ClassVar[str] = ""
    api_version: Literal["rayfleet.io/v1alpha1"] = Field(
        default=API_VERSION, description="Always rayfleet.io/v1alpha1."
    )
    metadata: ObjectMeta = Field(description="Name and labels.")

    @property
    def name(self) -> str:
        return self.metadata.name

    def ref(self) -> str:
        return f"{self.KIND}/{self.metadata.name}"

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        return {"apiVersion": body.pop("apiVersion"), "kind": body.pop("kind", self.KIND), **body}


# ---------------------------------------------------------------- quantities

_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DEC = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_QTY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?\s*$")


def parse_quantity(resource: str, value: Any) -> int:
    """A Kubernetes quantity in the canonical integer unit of ``resource``.

    cpu -> millicores ("500m" -> 500, 2 -> 2000); memory -> bytes ("16Gi");
    accelerators -> whole counts. Raises ValueError with the reason.
    """
    if resource not in RESOURCE_NAMES:
        raise ValueError(f"unknown resource {resource!r}; expected one of {', '.join(RESOURCE_NAMES)}")
    if isinstance(value, bool):
        raise ValueError(f"expected a number or quantity string for {resource}, got a boolean")
    if isinstance(value, int | float):
        number, suffix = float(value), None
        if number < 0:
            raise ValueError(f"{resource} must not be negative, got {value}")
    elif isinstance(value, str):
        m = _QTY_RE.match(value)
        if not m:
            if value.strip().startswith("-"):
                raise ValueError(f"{resource} must not be negative, got {value!r}")
            raise ValueError(f"{value!r} is not a quantity of {resource} (e.g. 2, 500m, 16Gi)")
        number, suffix = float(m.group(1)), m.group(2)
    else:
        raise ValueError(f"expected a number or quantity string for {resource}, got {type(value).__name__}")
    if resource == CPU:
        if suffix == "m":
            return round(number)
        if suffix is not None:
            raise ValueError(f"unit {suffix!r} does not apply to cpu (use cores or 'm')")
        return round(number * 1000)
    if resource == MEMORY:
        if suffix == "m":
            raise ValueError("unit 'm' does not apply to memory (use Ki, Mi, Gi, ...)")
        mult = _BIN.get(suffix or "", _DEC.get(suffix or "", 1))
        return round(number * mult)
    # accelerators: whole devices
    if suffix is not None or number != int(number):
        raise ValueError(f"{resource} must be a whole number of devices, got {value!r}")
    return int(number)


def format_quantity(resource: str, amount: int) -> str | int:
    """Canonical integer back to a readable quantity."""
    if resource == CPU:
        return amount // 1000 if amount % 1000 == 0 else f"{amount}m"
    if resource == MEMORY:
        for suffix in ("Ti", "Gi", "Mi", "Ki"):
            if amount and amount % _BIN[suffix] == 0:
                return f"{amount // _BIN[suffix]}{suffix}"
        return amount
    return amount


def _parse_resources(value: Any) -> Any:
    if not isinstance(value, dict):
        return value  # let pydantic report the type error
    out: dict[str, int] = {}
    for key, qty in value.items():
        out[key] = parse_quantity(key, qty)
    return out


def _dump_resources(value: dict[str, int]) -> dict[str, Any]:
    return {k: format_quantity(k, v) for k, v in value.items()}


Resources = Annotated[
    dict[str, int],
    BeforeValidator(_parse_resources),
    PlainSerializer(_dump_resources, when_used="json"),
    Field(description="Resources by Kubernetes name (cpu, memory, nvidia.com/gpu, google.com/tpu) as quantities."),
]


def _parse_quantity_any(resource: str) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if value is None:
            return None
        return parse_quantity(resource, value)

    return parse


CpuQuantity = Annotated[int, BeforeValidator(_parse_quantity_any(CPU)), PlainSerializer(lambda v: format_quantity(CPU, v), when_used="json")]
MemoryQuantity = Annotated[int, BeforeValidator(_parse_quantity_any(MEMORY)), PlainSerializer(lambda v: format_quantity(MEMORY, v), when_used="json")]


# ---------------------------------------------------------------- durations

_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DUR_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Go-style duration string ("90s", "10m", "1h30m", "7d")."""
    if isinstance(value, bool):
        raise ValueError("expected seconds or a duration like '10m', got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos, seconds = 0, 0.0
        for m in _DUR_RE.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _DUR_UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"{value!r} is not a duration (e.g. 90s, 10m, 1h30m, 7d)")
    else:
        raise ValueError(f"expected seconds or a duration like '10m', got {type(value).__name__}")
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return seconds


def _duration_validator(value: Any) -> Any:
    return None if value is None else parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration_validator), Field(description="Seconds, or a duration string such as 10m or 1h30m.")]
