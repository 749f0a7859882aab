"""Shared building blocks of the resource model: the strict base model, object metadata,
resource quantities and durations.

Documents look like Kubernetes objects: ``apiVersion``, ``kind``, ``metadata`` (name, labels),
``spec`` (what the user wants) and ``status`` (what rayfleet observed). Field names are camelCase
on the wire (the ecosystem's convention: nominalQuota, borrowingLimit); snake_case is accepted too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, ClassVar, Final, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
)
from pydantic.alias_generators import to_camel

from . import limits

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
        allow_inf_nan=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase, no unset optional noise."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


_MUTABLE = (BaseModel, list, dict, set)
_M = TypeVar("_M")


def detached(value: _M) -> _M:
    """A copy of ``value`` (a model, or a list, dict or set of them) that shares nothing mutable
    with it: what ``model_copy(deep=True)`` gives (the same fields set, the same dump), at a
    fraction of its cost, for the controller's transitions, which copy a status on every change.
    Everything but models, lists, dicts and sets is taken to be immutable (str, numbers, enums,
    datetimes, tuples of those), as in every model of :mod:`rayfleet.api`."""
    if isinstance(value, BaseModel):
        new = value.__copy__()   # pydantic's shallow copy: fields, fields set, extra, private
        fields = new.__dict__
        for k, v in fields.items():
            if isinstance(v, _MUTABLE):
                fields[k] = detached(v)
        return new
    if isinstance(value, list):
        return [detached(v) if isinstance(v, _MUTABLE) else v for v in value]  # type: ignore[return-value]
    if isinstance(value, dict):
        return {k: detached(v) if isinstance(v, _MUTABLE) else v for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, set):
        return set(value)  # type: ignore[return-value]
    return value


#: The validation context of a document read back from the store (``model_validate_json(body,
#: context=STORED)``): it passed these checks when it was accepted, so the checks that only bound
#: what a client may send (sizes, name syntax) are not run again; its shape still is (an unknown or
#: missing field, a wrong type: the store quarantines the record).
STORED: Final = {"stored": True}


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context) and info.context.get("stored") is True  # type: ignore[union-attr]


_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _check_name(value: Any, info: ValidationInfo) -> Any:
    if _stored(info):
        return value
    if isinstance(value, str) and (len(value) > 63 or not _NAME_RE.fullmatch(value)):
        raise ValueError(
            "must be a DNS-1123 label: at most 63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return value


Name = Annotated[str, BeforeValidator(_check_name), Field(description="A DNS-1123 label.")]


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON; ValueError if it holds a non-finite number."""
    try:
        return len(json.dumps(value, allow_nan=False, separators=(",", ":"), default=str).encode())
    except ValueError:
        raise ValueError("numbers must be finite (no Infinity or NaN)") from None


def _check_object(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    if _stored(info):
        return value
    size = json_size(value)
    if size > limits.OBJECT_MAX_BYTES:
        raise ValueError(f"is {size} bytes as JSON; at most {limits.OBJECT_MAX_BYTES} bytes")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_check_object)]
"""A free-form object (runtime_env, args, config): finite numbers, at most OBJECT_MAX_BYTES as JSON."""


def _check_labels(value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    if _stored(info):
        return value
    if len(value) > limits.LABELS_MAX_ENTRIES:
        raise ValueError(f"has {len(value)} entries; at most {limits.LABELS_MAX_ENTRIES}")
    for k, v in value.items():
        if not k or len(k) > limits.LABEL_KEY_MAX_CHARS:
            raise ValueError(f"key {k[:40]!r}: 1 to {limits.LABEL_KEY_MAX_CHARS} characters")
        if len(v) > limits.LABEL_VALUE_MAX_CHARS:
            raise ValueError(f"value of {k[:40]!r}: at most {limits.LABEL_VALUE_MAX_CHARS} characters")
    return value


Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]
"""Labels: at most LABELS_MAX_ENTRIES entries, keys 1-253 characters, values at most 1024."""


def _check_annotations(value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    if _stored(info):
        return value
    size = json_size(value)
    if size > limits.ANNOTATIONS_MAX_BYTES:
        raise ValueError(f"are {size} bytes as JSON; at most {limits.ANNOTATIONS_MAX_BYTES} bytes")
    return value


Annotations = Annotated[dict[str, str], AfterValidator(_check_annotations)]

Text = Annotated[str, Field(max_length=limits.TEXT_MAX_CHARS)]
"""Free text of at most TEXT_MAX_CHARS characters."""


class ObjectMeta(Model):
    name: Name = Field(description="Unique name of the object within its kind.")
    labels: Labels = Field(default_factory=dict, description="Free-form labels (team, cost centre, ...): at most 64, keys up to 253 and values up to 1024 characters.")
    annotations: Annotations = Field(default_factory=dict, description="Free-form annotations: at most 256 KiB as JSON.")


_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _check_job_id(value: Any, info: ValidationInfo) -> Any:
    if _stored(info):
        return value
    if isinstance(value, str) and not _JOB_ID_RE.fullmatch(value):
        raise ValueError("must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return value


class SubmittedMeta(ObjectMeta):
    """Metadata of an object users submit (TrainJob, Service): the name plus the server-set uid."""

    uid: str | None = Field(
        default=None,
        description="Set by rayfleet when the object is accepted (like Kubernetes metadata.uid), never reused: run ids, "
                    "logs, events and the default checkpoint directory hang off it, so a new object with an old name "
                    "starts clean. A client may not set it (422).",
    )


class WorkloadMeta(SubmittedMeta):
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

    @classmethod
    def accept(cls, data: Any) -> Self:
        """Validate input, and check that the document decodes again from its own JSON (the form
        the store keeps), so an accepted document is always a readable record. Raises
        pydantic.ValidationError naming the field."""
        doc = cls.model_validate(data)
        cls.model_validate_json(doc.model_dump_json(by_alias=True))
        return doc

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        return {"apiVersion": body.pop("apiVersion"), "kind": body.pop("kind", self.KIND), **body}


# ---------------------------------------------------------------- quantities

_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DEC = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_QTY_RE = re.compile(r"\s*(\d{1,30}(?:\.\d{1,30})?)\s*(m|Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?\s*")


def _describe(resource: str, amount: int) -> str:
    return str(format_quantity(resource, amount))


def parse_quantity(resource: str, value: Any, *, maximum: int | None = None) -> int:
    """A Kubernetes quantity in the canonical integer unit of ``resource``.

    cpu -> millicores ("500m" -> 500, 2 -> 2000); memory -> bytes ("16Gi");
    accelerators -> whole counts. At most ``maximum`` (default: ``limits.QUANTITY_MAX``) in the
    canonical unit. Raises ValueError with the reason.
    """
    if resource not in RESOURCE_NAMES:
        raise ValueError(f"unknown resource {resource!r}; expected one of {', '.join(RESOURCE_NAMES)}")
    bound = limits.QUANTITY_MAX[resource] if maximum is None else maximum
    if isinstance(value, bool):
        raise ValueError(f"expected a number or quantity string for {resource}, got a boolean")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{resource} must be a finite number, got {value}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{resource} must not be negative, got {value}")
        if value > 10**30:
            raise ValueError(f"{resource} is at most {_describe(resource, bound)}")
        number, suffix = Decimal(value), None
    elif isinstance(value, str):
        m = _QTY_RE.fullmatch(value)
        if not m:
            if value.strip().startswith("-"):
                raise ValueError(f"{resource} must not be negative, got {value[:40]!r}")
            raise ValueError(f"{value[:40]!r} is not a quantity of {resource} (e.g. 2, 500m, 16Gi)")
        number, suffix = Decimal(m.group(1)), m.group(2)
    else:
        raise ValueError(f"expected a number or quantity string for {resource}, got {type(value).__name__}")
    if resource == CPU:
        if suffix not in (None, "m"):
            raise ValueError(f"unit {suffix!r} does not apply to cpu (use cores or 'm')")
        scaled = number if suffix == "m" else number * 1000
    elif resource == MEMORY:
        if suffix == "m":
            raise ValueError("unit 'm' does not apply to memory (use Ki, Mi, Gi, ...)")
        scaled = number * _BIN.get(suffix or "", _DEC.get(suffix or "", 1))
    else:  # accelerators: whole devices
        if suffix is not None or number != number.to_integral_value():
            raise ValueError(f"{resource} must be a whole number of devices, got {value!r}")
        scaled = number
    amount = int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN))
    if amount > bound:
        raise ValueError(f"{resource} is at most {_describe(resource, bound)}, got {value!r}")
    return amount


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
        if not isinstance(key, str) or key not in RESOURCE_NAMES:
            raise ValueError(f"unknown resource {str(key)[:60]!r}; expected one of {', '.join(RESOURCE_NAMES)}")
        out[key] = parse_quantity(key, qty, maximum=limits.PER_HOST_MAX[key])
    return out


def _dump_resources(value: dict[str, int]) -> dict[str, Any]:
    return {k: format_quantity(k, v) for k, v in value.items()}


Resources = Annotated[
    dict[str, int],
    BeforeValidator(_parse_resources),
    PlainSerializer(_dump_resources, when_used="json"),
    Field(description="Resources of one worker or host by Kubernetes name (cpu, memory, nvidia.com/gpu, google.com/tpu) as "
          "quantities; at most 1024 cpu, 64Ti memory and 16 accelerators."),
]


def _parse_quantity_any(resource: str) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if value is None:
            return None
        return parse_quantity(resource, value, maximum=limits.PER_HOST_MAX[resource])

    return parse


CpuQuantity = Annotated[int, BeforeValidator(_parse_quantity_any(CPU)), PlainSerializer(lambda v: format_quantity(CPU, v), when_used="json")]
MemoryQuantity = Annotated[int, BeforeValidator(_parse_quantity_any(MEMORY)), PlainSerializer(lambda v: format_quantity(MEMORY, v), when_used="json")]


# ---------------------------------------------------------------- durations

_DUR_RE = re.compile(r"(\d{1,30}(?:\.\d{1,30})?)(ms|s|m|h|d)")
_DUR_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Go-style duration string ("90s", "10m", "1h30m", "7d"); finite,
    not negative and at most ``limits.DURATION_MAX_S`` (90 days)."""
    if isinstance(value, bool):
        raise ValueError("expected seconds or a duration like '10m', got a boolean")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be a finite number of seconds, got {value}")
        seconds = float(value) if abs(value) <= 10**30 else (math.inf if value > 0 else -math.inf)
    elif isinstance(value, str):
        text = value.strip()
        pos, seconds = 0, 0.0
        for m in _DUR_RE.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _DUR_UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"{value[:40]!r} is not a duration (e.g. 90s, 10m, 1h30m, 7d)")
    else:
        raise ValueError(f"expected seconds or a duration like '10m', got {type(value).__name__}")
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    if seconds > limits.DURATION_MAX_S:
        raise ValueError(f"is at most {limits.DURATION_MAX_S / limits.DAY:.0f} days ({limits.DURATION_MAX_S:.0f}s), got {str(value)[:40]}")
    return seconds


def _duration_validator(value: Any) -> Any:
    return None if value is None else parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration_validator), Field(description="Seconds, or a duration string such as 10m or 1h30m; at most 90 days.")]
