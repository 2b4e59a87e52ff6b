"""Shared building blocks of the wire models (spec §1.4, §1.6, §3).

Owns the two base classes (`WireRequest`: unknown fields ignored and JSON `null` treated
as absent; `WireResponse`: field names exactly as on the wire), the datetime types
(`WireDatetime` parses RFC 3339 input, `UtcDatetime` writes `...Z` output), the
constrained scalar types every request model uses, the error envelope, and
`format_validation_error`, which turns a pydantic `ValidationError` into the
`(message, param)` pair the API layer puts into the envelope.

Invariants: every datetime that leaves a validator here is aware UTC; no string accepted
by a request type contains NUL or a lone surrogate; request validators raise
`PydanticCustomError`s whose messages read well after `"<param>: "`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

__all__ = [
    "MAX_GPUS",
    "ErrorBody",
    "ErrorEnvelope",
    "FreeText",
    "GpuCount",
    "Identifier",
    "ImageRef",
    "Label",
    "NodeGpuCount",
    "ResourceName",
    "Script",
    "Toggle",
    "UtcDatetime",
    "Version",
    "WireDatetime",
    "WireRequest",
    "WireResponse",
    "field_error",
    "format_utc",
    "format_validation_error",
    "parse_wire_datetime",
]

MAX_GPUS = 65_536
"""Upper bound for any GPU count in a request; keeps values far inside a 64-bit column."""


class WireRequest(BaseModel):
    """Base of every request body and request sub-object.

    Unknown fields are ignored (2.x clients send `auto_scaled`, `torchpass`, ...) and an
    explicit JSON `null` is dropped before validation, so it behaves exactly like an
    absent key: optional fields stay `None` and out of `model_fields_set`, required
    fields are reported as missing. Attribute access (`from_attributes`) is allowed so
    that shared sub-objects (`Toggle`, `AddOnConfig`, ...) also build from rows.
    """

    model_config = ConfigDict(extra="ignore", from_attributes=True)

    @model_validator(mode="before")
    @classmethod
    def drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class WireResponse(BaseModel):
    """Base of every response body; buildable from ORM rows or dataclasses by attribute."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)


def field_error(param: str, message: str) -> PydanticCustomError:
    """A cross-field error from a model validator, naming the field it is about.

    `param` is relative to the model raising it; `format_validation_error` appends it to
    the error location. `message` must not contain braces or user input.
    """
    return PydanticCustomError("invalid_combination", message, {"param": param})


# --- datetimes ---------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?",
    re.ASCII,
)
_DATETIME_HINT = "must be an RFC 3339 date-time such as 2025-01-01T00:00:00Z"


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_wire_datetime(value: Any) -> datetime:
    """Parse RFC 3339 (`Z`, an offset, or none meaning UTC) into an aware UTC datetime.

    `datetime` objects are accepted too (naive ones are taken as UTC). Dates without a
    time, epoch numbers and free text are rejected. Fractions beyond microseconds are
    truncated.
    """
    if isinstance(value, datetime):
        try:
            return _to_utc(value)
        except OverflowError as exc:
            raise PydanticCustomError("datetime_value", "is out of range") from exc
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", _DATETIME_HINT)
    match = _RFC3339.fullmatch(value) if len(value) <= 40 else None
    if match is None:
        raise PydanticCustomError("datetime_format", _DATETIME_HINT)
    year, month, day, hour, minute, second, frac, _zulu, sign, off_h, off_m = match.groups()
    micros = int((frac or "")[:6].ljust(6, "0"))
    try:
        tz = UTC
        if sign is not None:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError("UTC offset out of range")
            delta = timedelta(hours=int(off_h), minutes=int(off_m))
            tz = timezone(delta if sign == "+" else -delta)
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz
        )
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise PydanticCustomError(
            "datetime_value", "is not a valid date-time: {reason}", {"reason": str(exc)}
        ) from exc


def format_utc(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`: `2026-01-01T00:00:00Z`, or `...00.250000Z`."""
    naive = _to_utc(value).replace(tzinfo=None)
    timespec = "microseconds" if naive.microsecond else "seconds"
    return naive.isoformat(timespec=timespec) + "Z"


_SERIALIZE_UTC = PlainSerializer(format_utc, return_type=str)

LATEST_REQUEST_DATETIME = datetime(3000, 1, 1, tzinfo=UTC)


def _check_horizon(value: datetime) -> datetime:
    if value >= LATEST_REQUEST_DATETIME:
        raise PydanticCustomError("datetime_range", "must be earlier than the year 3000")
    return value


WireDatetime = Annotated[
    datetime,
    BeforeValidator(parse_wire_datetime),
    AfterValidator(_check_horizon),
    _SERIALIZE_UTC,
]
"""Request datetime: RFC 3339 in, aware UTC out (serializes like `UtcDatetime`).

Values from the year 3000 on are refused, so that date arithmetic on them (a reservation's
start plus its duration) can never overflow `datetime`.
"""

UtcDatetime = Annotated[datetime, BeforeValidator(parse_wire_datetime), _SERIALIZE_UTC]
"""Response datetime: any datetime in (naive means UTC), `...Z` string out."""


# --- strings -----------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)
_LAYOUT = frozenset("\t\n\r")


def _check_encodable(value: str) -> None:
    if "\x00" in value:
        raise PydanticCustomError("string_nul", "must not contain NUL characters")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise PydanticCustomError("string_unicode", "must be valid Unicode text")


def _is_control(ch: str) -> bool:
    return ch < " " or "\x7f" <= ch <= "\x9f"


def _check_script(value: str) -> str:
    _check_encodable(value)
    return value


def _check_text(value: str) -> str:
    _check_encodable(value)
    if any(_is_control(ch) and ch not in _LAYOUT for ch in value):
        raise PydanticCustomError("string_control", "must not contain control characters")
    return value


def _check_label(value: str) -> str:
    _check_encodable(value)
    if any(_is_control(ch) for ch in value):
        raise PydanticCustomError("string_control", "must not contain control characters")
    if not value.strip():
        raise PydanticCustomError("string_blank", "must not be blank")
    return value


def _check_token(value: str) -> str:
    _check_encodable(value)
    if any(_is_control(ch) or ch.isspace() for ch in value):
        raise PydanticCustomError(
            "string_token", "must not contain whitespace or control characters"
        )
    return value


def _check_name(value: str) -> str:
    _check_encodable(value)
    if _NAME.fullmatch(value) is None:
        raise PydanticCustomError(
            "resource_name",
            "must start with a letter or digit and contain only letters, digits, '-', '_' and '.'",
        )
    return value


ResourceName = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=63), AfterValidator(_check_name)
]
"""Cluster and volume names: DNS-label-ish, 1..63 chars (used in kubeconfig contexts)."""

Label = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=63), AfterValidator(_check_label)
]
"""A short single-line human label (add-on names): no control characters, not blank."""

Identifier = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=128), AfterValidator(_check_token)
]
"""Ids and region names: 1..128 chars without whitespace or control characters."""

ImageRef = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=512), AfterValidator(_check_token)
]
"""Container image references (`slurm_image`): 1..512 chars, no whitespace."""

Version = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=32), AfterValidator(_check_token)
]
"""Version strings (`12.8`, `570`, `v24.6.2`): 1..32 chars, no whitespace."""

Script = Annotated[StrictStr, StringConstraints(max_length=65_536), AfterValidator(_check_script)]
"""Scripts and PEM blobs: up to 64 KiB of text, anything but NUL."""

FreeText = Annotated[StrictStr, StringConstraints(max_length=1024), AfterValidator(_check_text)]
"""Reasons and comments: up to 1024 chars; tabs and newlines allowed, other controls not."""


# --- integers and small objects ----------------------------------------------------------


def _check_multiple_of_8(value: int) -> int:
    if value % 8:
        raise PydanticCustomError("multiple_of_8", "must be a multiple of 8")
    return value


GpuCount = Annotated[StrictInt, Field(ge=0, le=MAX_GPUS), AfterValidator(_check_multiple_of_8)]
"""A non-negative GPU count that fills whole 8-GPU nodes."""

NodeGpuCount = Annotated[StrictInt, Field(ge=8, le=MAX_GPUS), AfterValidator(_check_multiple_of_8)]
"""A GPU count of at least one whole 8-GPU node (`num_gpus`)."""


class Toggle(WireRequest):
    """`{"enabled": bool?}`, the shape of every on/off sub-object on the wire."""

    enabled: StrictBool | None = None


# --- errors ------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(BaseModel):
    """`{"error": {"message", "type", "param", "code"}}`; the CLI renders `message`."""

    error: ErrorBody

    @classmethod
    def of(
        cls, message: str, error_type: str, *, param: str | None = None, code: str | None = None
    ) -> ErrorEnvelope:
        return cls(error=ErrorBody(message=message, type=error_type, param=param, code=code))


_FIXED_MESSAGES = {
    "missing": "is required",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be a boolean",
    "bool_parsing": "must be a boolean",
    "string_type": "must be a string",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be an array",
    "json_invalid": "request body is not valid JSON",
}
_TEMPLATES = {
    "enum": "must be one of {expected}",
    "literal_error": "must be {expected}",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "multiple_of": "must be a multiple of {multiple_of}",
    "string_too_long": "must be at most {max_length} characters",
    "string_too_short": "must be at least {min_length} characters",
    "too_long": "must have at most {max_length} items",
    "too_short": "must have at least {min_length} items",
}


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _FIXED_MESSAGES:
        return _FIXED_MESSAGES[kind]
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind in _TEMPLATES:
        try:
            return _TEMPLATES[kind].format(**ctx)
        except (KeyError, IndexError):
            pass
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith("Input should "):
        message = "must " + message.removeprefix("Input should ")
    return message


def format_validation_error(exc: ValidationError) -> tuple[str, str | None]:
    """The first error of `exc` as `(message, param)` for the error envelope.

    `param` is the dotted path of the offending field (`cluster_config.load_balancer`,
    `add_ons.0.name`), or `None` when the error is about the body as a whole; `message`
    reads `"<param>: <what is wrong>"` and carries no pydantic URLs or input echoes.
    """
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid request", None
    first = errors[0]
    parts = [str(part) for part in first["loc"]]
    extra = (first.get("ctx") or {}).get("param")
    if isinstance(extra, str) and extra:
        parts.append(extra)
    param = ".".join(parts) or None
    text = _describe(first)
    if param is None:
        if first["type"] in {"model_type", "dict_type", "model_attributes_type"}:
            return "request body must be a JSON object", None
        return text, None
    return f"{param}: {text}", param
