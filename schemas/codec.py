"""Bytes <-> models for Kafka values: input decoding (plain JSON and CloudEvents), encoding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from schemas.inputs import EVENT_KINDS, InputEvent

Headers = Mapping[str, bytes] | Sequence[tuple[str, bytes]]
"""Kafka record headers, as a mapping or as (key, value) pairs."""

MAX_REPORTED_ERRORS = 5

# CloudEvents attribute -> input field, for structured mode (JSON keys) and binary mode (headers).
_STRUCTURED_ATTRIBUTES = (("id", "event_id"), ("subject", "customer_id"), ("time", "occurred_at"))
_BINARY_ATTRIBUTES = (
    ("ce_id", "event_id"),
    ("ce_subject", "customer_id"),
    ("ce_time", "occurred_at"),
)
_SPECVERSION = "1.0"
_SPECVERSION_HEADER = ("ce_specversion", _SPECVERSION.encode())
_CONTENT_TYPE_HEADER = ("content-type", b"application/json")


class DecodeError(ValueError):
    """An input value that cannot become an event; `reason` is a short machine code.

    Reasons: "not_json", "not_object", "missing_field", "schema", "cloudevent".
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def decode_json(raw: bytes) -> Any:
    """The JSON value in `raw`; DecodeError("not_json") when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("not_json", str(exc)) from None


def _header_text(value: bytes | str | None, name: str) -> str | None:
    """A header value as text (None when absent); DecodeError for non-UTF-8 bytes."""
    if value is None or isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("cloudevent", f"{name}: header is not UTF-8") from None


def _ce_headers(headers: Headers | None) -> dict[str, bytes] | None:
    """The `ce_*` headers (lower-cased names) when they mark CloudEvents binary mode, else None."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    found = {name.lower(): value for name, value in items if name[:3].lower() == "ce_"}
    return found if "ce_specversion" in found else None


def _check_specversion(value: Any, name: str) -> None:
    """Reject CloudEvents versions other than 1.0."""
    if value != _SPECVERSION:
        raise DecodeError("cloudevent", f"{name}: unsupported CloudEvents version {value!r}")


def _from_binary(data: Any, ce: dict[str, bytes]) -> dict[str, Any]:
    """Event fields from a binary-mode CloudEvent: `ce_*` headers plus the value as data."""
    _check_specversion(_header_text(ce["ce_specversion"], "ce_specversion"), "ce_specversion")
    if not isinstance(data, dict):
        raise DecodeError("not_object", f"CloudEvents data is a JSON {type(data).__name__}")
    attributes: dict[str, Any] = {}
    for header, field in _BINARY_ATTRIBUTES:
        text = _header_text(ce.get(header), header)
        if text is None:
            raise DecodeError("missing_field", f"{header}: CloudEvents header required ({field})")
        attributes[field] = text
    return {**data, **attributes}  # the CloudEvents attributes win over data fields


def _from_structured(envelope: dict[str, Any]) -> dict[str, Any]:
    """Event fields from a structured-mode CloudEvent (a JSON envelope with `data`)."""
    _check_specversion(envelope["specversion"], "specversion")
    if "data_base64" in envelope:
        raise DecodeError("cloudevent", "data_base64: binary data is not supported, use data")
    data = envelope.get("data", {})
    if not isinstance(data, dict):
        raise DecodeError("cloudevent", f"data: must be a JSON object, not {type(data).__name__}")
    attributes: dict[str, Any] = {}
    for attribute, field in _STRUCTURED_ATTRIBUTES:
        if envelope.get(attribute) is None:
            raise DecodeError(
                "missing_field", f"{attribute}: CloudEvents attribute required ({field})"
            )
        attributes[field] = envelope[attribute]
    return {**data, **attributes}  # the CloudEvents attributes win over data fields


def _describe(exc: ValidationError) -> DecodeError:
    """A DecodeError summarising a pydantic validation failure."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    reason = "missing_field" if all(e["type"] == "missing" for e in errors) else "schema"
    parts = [
        f"{'.'.join(str(part) for part in e['loc']) or '<value>'}: {e['msg']}"
        for e in errors[:MAX_REPORTED_ERRORS]
    ]
    if len(errors) > MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_REPORTED_ERRORS} more")
    return DecodeError(reason, "; ".join(parts))


def decode_input(kind: str, raw: bytes | None, headers: Headers | None = None) -> InputEvent:
    """The input event of `kind` in a Kafka value: plain JSON or a CloudEvent (either mode).

    Raises DecodeError when the value is not a valid event; KeyError for an unknown `kind`.
    """
    model = EVENT_KINDS[kind]
    if not raw:
        raise DecodeError("not_json", "empty value")
    value = decode_json(raw)
    ce = _ce_headers(headers)
    if ce is not None:
        value = _from_binary(value, ce)
    elif not isinstance(value, dict):
        raise DecodeError("not_object", f"value is a JSON {type(value).__name__}")
    elif "specversion" in value:
        value = _from_structured(value)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _describe(exc) from None


def encode(model: BaseModel) -> bytes:
    """The JSON bytes of a model (datetimes RFC 3339, decimals as strings, nulls included)."""
    return model.__pydantic_serializer__.to_json(model)  # one pass in pydantic-core


def _json_default(value: Any) -> Any:
    """JSON form of values orjson does not know: decimals as strings, models as objects."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def encode_dict(d: Mapping[Any, Any]) -> bytes:
    """The JSON bytes of a mapping (non-string keys such as ints become strings)."""
    return orjson.dumps(
        d if isinstance(d, dict) else dict(d),
        default=_json_default,
        option=orjson.OPT_NON_STR_KEYS,
    )


def cloudevent_headers(
    *,
    ce_type: str,
    ce_source: str,
    ce_id: str,
    ce_subject: str,
    ce_time: datetime | None = None,
) -> list[tuple[str, bytes]]:
    """Kafka headers carrying CloudEvents metadata for a JSON value (binary-mode compatible)."""
    headers = [
        _SPECVERSION_HEADER,
        ("ce_type", ce_type.encode()),
        ("ce_source", ce_source.encode()),
        ("ce_id", ce_id.encode()),
        ("ce_subject", ce_subject.encode()),
    ]
    if ce_time is not None:
        if ce_time.tzinfo is None or ce_time.utcoffset() is None:
            raise ValueError("ce_time must be timezone-aware")
        headers.append(("ce_time", ce_time.isoformat().encode()))
    headers.append(_CONTENT_TYPE_HEADER)
    return headers
