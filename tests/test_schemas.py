"""Unit tests for the wire contract: input decoding, output encoding, dead letters, schemas."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas import (
    EVENT_KINDS,
    AccountEvent,
    AlertEvent,
    ContactEvent,
    CustomerHealth,
    DeadLetter,
    DecodeError,
    InputEvent,
    LoginEvent,
    OrderEvent,
    TaskEvent,
    TaskUpdateEvent,
    TicketEvent,
    cloudevent_headers,
    decode_input,
    decode_json,
    encode,
    encode_dict,
    export_json_schemas,
    make_dead_letter,
)

T0 = "2024-03-01T09:30:00+01:00"
T0_DT = datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=1)))
NOW = datetime(2024, 3, 2, 12, 0, tzinfo=UTC)

COMMON: dict[str, Any] = {"event_id": "evt-1", "customer_id": "cust-42", "occurred_at": T0}

VALID: dict[str, dict[str, Any]] = {
    "login": {"user_id": "u-1", "contact_id": "c-1", "channel": "web"},
    "order": {"order_id": "o-1", "amount": "1999.90", "currency": "EUR", "status": "paid"},
    "ticket": {
        "ticket_id": "t-1",
        "kind": "complaint",
        "severity": "high",
        "status": "opened",
        "csat": 2,
        "nps": 3,
    },
    "contact": {
        "contact_id": "c-9",
        "name": "Ada",
        "role": "CTO",
        "is_key_contact": True,
        "change": "departed",
    },
    "account": {
        "name": "Acme",
        "owner": "am-7",
        "csm": "csm-3",
        "segment": "enterprise",
        "industry": "retail",
        "region": "EMEA",
        "renewal_at": "2025-01-01T00:00:00Z",
        "tier_override": "strategic",
    },
    "task_update": {
        "task_id": "task-1",
        "status": "acknowledged",
        "by": "csm-3",
        "snooze_until": "2024-03-05T00:00:00Z",
    },
}

EXPECTED_CLASS: dict[str, type[InputEvent]] = {
    "login": LoginEvent,
    "order": OrderEvent,
    "ticket": TicketEvent,
    "contact": ContactEvent,
    "account": AccountEvent,
    "task_update": TaskUpdateEvent,
}


def plain(kind: str, /, **changes: Any) -> dict[str, Any]:
    """A valid plain event of `kind` as a dict, with `changes` applied (None removes a key)."""
    event = {**COMMON, **VALID[kind], **changes}
    return {key: value for key, value in event.items() if value is not None}


def raw_of(value: Any) -> bytes:
    """JSON bytes of `value`."""
    return orjson.dumps(value)


def reason_of(kind: str, raw: bytes | None, headers: Any = None) -> str:
    """The DecodeError reason for decoding `raw`; fails the test if it decodes."""
    with pytest.raises(DecodeError) as caught:
        decode_input(kind, raw, headers)
    return caught.value.reason


# --- inputs -------------------------------------------------------------------------------


def test_event_kinds_map_every_kind_to_its_class() -> None:
    assert EVENT_KINDS == EXPECTED_CLASS
    for name, cls in EVENT_KINDS.items():
        assert cls.event_kind == name


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_kind_decodes_a_valid_plain_event(kind: str) -> None:
    event = decode_input(kind, raw_of(plain(kind)))
    assert type(event) is EXPECTED_CLASS[kind]
    assert event.event_id == "evt-1"
    assert event.customer_id == "cust-42"
    assert event.occurred_at == T0_DT
    assert event.occurred_at.utcoffset() == timedelta(hours=1)
    dumped = event.model_dump(mode="json")
    for field, value in VALID[kind].items():
        if field in ("renewal_at", "snooze_until"):
            assert getattr(event, field) == datetime.fromisoformat(value)
        elif field == "amount":
            assert isinstance(event, OrderEvent)
            assert event.amount == Decimal(value)
        else:
            assert dumped[field] == value


def test_optional_fields_default_to_none() -> None:
    login = decode_input("login", raw_of(plain("login", contact_id=None)))
    assert isinstance(login, LoginEvent)
    assert login.contact_id is None
    ticket = decode_input("ticket", raw_of(plain("ticket", csat=None, nps=None)))
    assert isinstance(ticket, TicketEvent)
    assert (ticket.csat, ticket.nps) == (None, None)


def test_unknown_extra_fields_are_kept_and_re_encoded() -> None:
    raw = raw_of(plain("login", source_system="salesforce", meta={"a": [1, 2]}))
    event = decode_input("login", raw)
    assert event.model_extra == {"source_system": "salesforce", "meta": {"a": [1, 2]}}
    assert orjson.loads(encode(event))["meta"] == {"a": [1, 2]}


def test_order_amount_accepts_json_numbers_and_numeric_strings() -> None:
    as_number = decode_input("order", raw_of(plain("order", amount=12.5)))
    as_string = decode_input("order", raw_of(plain("order", amount="12.50")))
    assert isinstance(as_number, OrderEvent)
    assert isinstance(as_string, OrderEvent)
    assert as_number.amount == Decimal("12.5")
    assert as_string.amount == Decimal("12.50")
    zero = decode_input("order", raw_of(plain("order", amount=0)))
    assert isinstance(zero, OrderEvent)
    assert zero.amount == 0


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "-0.01", -1, "abc"])
def test_order_amount_rejects_non_finite_negative_and_non_numeric(amount: Any) -> None:
    assert reason_of("order", raw_of(plain("order", amount=amount))) == "schema"


@pytest.mark.parametrize("currency", ["usd", "US", "USDX", "USD\n", "€UR"])
def test_bad_currency_is_rejected_as_schema(currency: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_input("order", raw_of(plain("order", currency=currency)))
    assert caught.value.reason == "schema"
    assert "currency" in caught.value.message


def test_negative_amount_is_rejected_as_schema_naming_the_field() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_input("order", raw_of(plain("order", amount="-5")))
    assert caught.value.reason == "schema"
    assert caught.value.message.startswith("amount:")


@pytest.mark.parametrize("stamp", ["2024-03-01T09:30:00", "2024-03-01", "2024-03-01 09:30"])
def test_naive_timestamp_is_rejected(stamp: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_input("login", raw_of(plain("login", occurred_at=stamp)))
    assert caught.value.reason == "schema"
    assert "occurred_at" in caught.value.message


@pytest.mark.parametrize("stamp", [1709281800, 1709281800.5, "1709281800", True])
def test_epoch_numbers_are_not_accepted_as_rfc3339(stamp: Any) -> None:
    assert reason_of("login", raw_of(plain("login", occurred_at=stamp))) == "schema"


@pytest.mark.parametrize(
    "stamp", ["1989-12-31T23:59:59Z", "2101-01-01T00:00:00Z", "0001-01-01T00:00:00Z"]
)
def test_absurd_year_is_rejected(stamp: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_input("login", raw_of(plain("login", occurred_at=stamp)))
    assert caught.value.reason == "schema"
    assert "occurred_at out of range" in caught.value.message


@pytest.mark.parametrize("stamp", ["1990-01-01T00:00:00Z", "2100-12-31T23:59:59Z"])
def test_years_at_the_range_limits_are_accepted(stamp: str) -> None:
    event = decode_input("login", raw_of(plain("login", occurred_at=stamp)))
    assert event.occurred_at == datetime.fromisoformat(stamp)


@pytest.mark.parametrize("customer_id", [" cust", "cust ", "\tcust", "cust\n", "", "x" * 257])
def test_padded_empty_or_long_customer_id_is_rejected(customer_id: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_input("login", raw_of(plain("login", customer_id=customer_id)))
    assert caught.value.reason == "schema"
    assert "customer_id" in caught.value.message


def test_customer_id_with_inner_spaces_and_max_length_is_accepted() -> None:
    assert decode_input("login", raw_of(plain("login", customer_id="a b"))).customer_id == "a b"
    long_id = "x" * 256
    assert decode_input("login", raw_of(plain("login", customer_id=long_id))).customer_id == long_id


@pytest.mark.parametrize(("field", "value"), [("csat", 0), ("csat", 6), ("nps", 11), ("nps", -1)])
def test_ticket_scores_out_of_range_are_rejected(field: str, value: int) -> None:
    assert reason_of("ticket", raw_of(plain("ticket", **{field: value}))) == "schema"


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("login", "channel", "fax"),
        ("ticket", "kind", "rant"),
        ("ticket", "severity", "urgent"),
        ("contact", "change", "fired"),
        ("task_update", "status", "open"),
        ("order", "status", "shipped"),
    ],
)
def test_values_outside_enumerations_are_rejected(kind: str, field: str, value: str) -> None:
    assert reason_of(kind, raw_of(plain(kind, **{field: value}))) == "schema"


def test_missing_customer_id_is_missing_field() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_input("login", raw_of(plain("login", customer_id=None)))
    assert caught.value.reason == "missing_field"
    assert str(caught.value) == "missing_field: customer_id: Field required"


def test_missing_and_invalid_fields_together_are_schema() -> None:
    raw = raw_of(plain("login", customer_id=None, channel="fax"))
    assert reason_of("login", raw) == "schema"


def test_error_message_lists_at_most_five_errors() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_input("ticket", b"{}")
    error = caught.value
    assert error.reason == "missing_field"
    # event_id, customer_id, occurred_at, ticket_id, kind, severity, status are all missing.
    assert error.message.count("Field required") == 5
    assert error.message.endswith("and 2 more")


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"{", b"\xff\xfe", b"NaN"])
def test_non_json_is_not_json(raw: bytes | None) -> None:
    assert reason_of("login", raw) == "not_json"


@pytest.mark.parametrize("raw", [b"[]", b'[{"a": 1}]', b'"text"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_not_object(raw: bytes) -> None:
    assert reason_of("login", raw) == "not_object"


def test_unknown_kind_is_a_programming_error_not_a_decode_error() -> None:
    with pytest.raises(KeyError):
        decode_input("invoice", raw_of(plain("login")))


def test_decode_error_is_readable_picklable_and_a_value_error() -> None:
    error = DecodeError("schema", "amount: too small")
    assert isinstance(error, ValueError)
    assert str(error) == "schema: amount: too small"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.message, str(copy)) == (error.reason, error.message, str(error))


def test_models_reject_naive_datetimes_when_built_in_python() -> None:
    with pytest.raises(ValidationError):
        LoginEvent(
            event_id="e",
            customer_id="c",
            occurred_at=datetime(2024, 1, 1),  # naive
            user_id="u",
            channel="web",
        )


# --- CloudEvents --------------------------------------------------------------------------


def _data(kind: str) -> dict[str, Any]:
    """The event fields of a valid `kind` event without the three common ones."""
    return dict(VALID[kind])


@pytest.mark.parametrize("kind", sorted(VALID))
def test_structured_cloudevent_decodes_like_the_plain_form(kind: str) -> None:
    envelope = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/crm",
        "type": f"crm.{kind}",
        "subject": "cust-42",
        "time": T0,
        "datacontenttype": "application/json",
        "data": _data(kind),
    }
    assert decode_input(kind, raw_of(envelope)) == decode_input(kind, raw_of(plain(kind)))


@pytest.mark.parametrize("kind", sorted(VALID))
def test_binary_cloudevent_decodes_like_the_plain_form(kind: str) -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"evt-1"),
        ("ce_source", b"/crm"),
        ("ce_type", f"crm.{kind}".encode()),
        ("ce_subject", b"cust-42"),
        ("ce_time", T0.encode()),
        ("content-type", b"application/json"),
    ]
    expected = decode_input(kind, raw_of(plain(kind)))
    assert decode_input(kind, raw_of(_data(kind)), headers) == expected
    assert decode_input(kind, raw_of(_data(kind)), dict(headers)) == expected


def test_headers_made_by_cloudevent_headers_decode_in_binary_mode() -> None:
    headers = cloudevent_headers(
        ce_type="crm.login", ce_source="/crm", ce_id="evt-1", ce_subject="cust-42", ce_time=T0_DT
    )
    event = decode_input("login", raw_of(_data("login")), headers)
    assert event == decode_input("login", raw_of(plain("login")))


def test_cloudevent_attributes_win_over_data_fields() -> None:
    data = {**_data("login"), "event_id": "other", "customer_id": "other", "occurred_at": T0}
    envelope = {
        "specversion": "1.0",
        "id": "evt-ce",
        "subject": "cust-ce",
        "time": "2024-05-05T05:05:05Z",
        "data": data,
    }
    event = decode_input("login", raw_of(envelope))
    assert (event.event_id, event.customer_id) == ("evt-ce", "cust-ce")
    assert event.occurred_at == datetime(2024, 5, 5, 5, 5, 5, tzinfo=UTC)


@pytest.mark.parametrize("attribute", ["id", "subject", "time"])
def test_structured_cloudevent_missing_attribute_is_missing_field(attribute: str) -> None:
    envelope = {"specversion": "1.0", "id": "e", "subject": "c", "time": T0, "data": _data("login")}
    del envelope[attribute]
    with pytest.raises(DecodeError) as caught:
        decode_input("login", raw_of(envelope))
    assert caught.value.reason == "missing_field"
    assert caught.value.message.startswith(f"{attribute}:")


@pytest.mark.parametrize("header", ["ce_id", "ce_subject", "ce_time"])
def test_binary_cloudevent_missing_header_is_missing_field(header: str) -> None:
    headers = {"ce_specversion": b"1.0", "ce_id": b"e", "ce_subject": b"c", "ce_time": T0.encode()}
    del headers[header]
    with pytest.raises(DecodeError) as caught:
        decode_input("login", raw_of(_data("login")), headers)
    assert caught.value.reason == "missing_field"
    assert caught.value.message.startswith(f"{header}:")


@pytest.mark.parametrize(
    "envelope",
    [
        {"specversion": "0.3", "id": "e", "subject": "c", "time": T0, "data": {}},
        {"specversion": "1.0", "id": "e", "subject": "c", "time": T0, "data": [1]},
        {"specversion": "1.0", "id": "e", "subject": "c", "time": T0, "data_base64": "e30="},
    ],
)
def test_unsupported_structured_cloudevents_are_rejected(envelope: dict[str, Any]) -> None:
    assert reason_of("login", raw_of(envelope)) == "cloudevent"


def test_binary_cloudevent_with_non_utf8_header_is_rejected() -> None:
    headers = {"ce_specversion": b"1.0", "ce_id": b"\xff", "ce_subject": b"c", "ce_time": b"x"}
    assert reason_of("login", raw_of(_data("login")), headers) == "cloudevent"


def test_binary_cloudevent_with_array_value_is_not_object() -> None:
    headers = {"ce_specversion": b"1.0", "ce_id": b"e", "ce_subject": b"c", "ce_time": b"x"}
    assert reason_of("login", b"[1, 2]", headers) == "not_object"


def test_unrelated_headers_leave_plain_decoding_alone() -> None:
    headers = [("traceparent", b"00-abc"), ("content-type", b"application/json")]
    event = decode_input("login", raw_of(plain("login")), headers)
    assert event == decode_input("login", raw_of(plain("login")))


def test_cloudevent_headers_lists_the_metadata() -> None:
    headers = cloudevent_headers(
        ce_type="churnguard.alert.firing",
        ce_source="churnguard",
        ce_id="a-1",
        ce_subject="cust-42",
        ce_time=NOW,
    )
    assert dict(headers) == {
        "ce_specversion": b"1.0",
        "ce_type": b"churnguard.alert.firing",
        "ce_source": b"churnguard",
        "ce_id": b"a-1",
        "ce_subject": b"cust-42",
        "ce_time": b"2024-03-02T12:00:00+00:00",
        "content-type": b"application/json",
    }
    no_time = cloudevent_headers(ce_type="t", ce_source="s", ce_id="i", ce_subject="c")
    assert "ce_time" not in dict(no_time)
    with pytest.raises(ValueError):
        cloudevent_headers(
            ce_type="t", ce_source="s", ce_id="i", ce_subject="c", ce_time=datetime(2024, 1, 1)
        )


# --- outputs and encoding -----------------------------------------------------------------


def _outputs() -> list[BaseModel]:
    """One populated instance of every output model."""
    return [
        AlertEvent(
            alert_id="a-1",
            customer_id="cust-42",
            rule_id="key-contact-departed",
            severity="high",
            status="resolved",
            summary="Acme: key contact Ada left",
            evidence={"key_contacts_departed_30d": 1, "revenue": "12.50", "nested": {"x": [1]}},
            labels={"team": "customer-success"},
            tier="strategic",
            fired_at=T0_DT,
            resolved_at=NOW,
            emitted_at=NOW,
        ),
        TaskEvent(
            task_id="task-1",
            alert_id="a-1",
            customer_id="cust-42",
            rule_id="key-contact-departed",
            assignee="am-7",
            assignee_role="owner",
            cc=["sales_director"],
            title="Call Acme",
            playbook="relationship-rescue",
            priority="urgent",
            due_at=NOW + timedelta(hours=24),
            status="escalated",
            created_at=NOW,
        ),
        CustomerHealth(
            customer_id="cust-42",
            name=None,
            tier="key",
            features={"days_since_login": 12, "rfm": {"r": 3}},
            open_alerts=["a-1"],
            as_of=NOW,
        ),
        make_dead_letter(
            source_topic="crm.orders",
            partition=3,
            offset=1234,
            key=b"cust-42",
            raw=b"{oops",
            reason="not_json",
            error="not_json: unexpected character",
            rejected_at=NOW,
        ),
    ]


@pytest.mark.parametrize("model", _outputs(), ids=lambda m: type(m).__name__)
def test_output_models_round_trip_through_json(model: BaseModel) -> None:
    raw = encode(model)
    assert type(model).model_validate(decode_json(raw)) == model
    assert type(model).model_validate_json(raw) == model


def test_encode_writes_rfc3339_datetimes_and_nulls() -> None:
    alert = _outputs()[0]
    assert isinstance(alert, AlertEvent)
    value = orjson.loads(encode(alert.model_copy(update={"resolved_at": None, "tier": None})))
    assert value["fired_at"] == "2024-03-01T09:30:00+01:00"
    assert value["emitted_at"] == "2024-03-02T12:00:00Z"
    assert value["resolved_at"] is None
    assert value["tier"] is None


def test_encode_round_trips_an_order_with_its_exact_decimal() -> None:
    order = decode_input("order", raw_of(plain("order", amount="0.10")))
    encoded = orjson.loads(encode(order))
    assert encoded["amount"] == "0.10"
    assert decode_input("order", encode(order)) == order


def test_output_models_reject_unknown_fields_and_defaults_are_independent() -> None:
    fields: dict[str, Any] = {
        "alert_id": "a",
        "customer_id": "c",
        "rule_id": "r",
        "severity": "info",
        "status": "firing",
        "summary": "s",
        "evidence": {},
        "fired_at": NOW,
        "emitted_at": NOW,
    }
    with pytest.raises(ValidationError):
        AlertEvent.model_validate({**fields, "unexpected": 1})
    with pytest.raises(ValidationError):
        AlertEvent(**{**fields, "severity": "severe"})
    first, second = AlertEvent(**fields), AlertEvent(**fields)
    first.labels["team"] = "x"
    assert second.labels == {}


def test_encode_dict_handles_non_string_keys_decimals_and_datetimes() -> None:
    raw = encode_dict({1: "one", "amount": Decimal("1.10"), "at": NOW})
    assert orjson.loads(raw) == {"1": "one", "amount": "1.10", "at": "2024-03-02T12:00:00+00:00"}
    with pytest.raises(TypeError):
        encode_dict({"x": object()})


def test_decode_json_parses_and_rejects_garbage_with_not_json() -> None:
    assert decode_json(b'{"a": [1, null]}') == {"a": [1, None]}
    with pytest.raises(DecodeError) as caught:
        decode_json(b"{bad")
    assert caught.value.reason == "not_json"


# --- dead letters -------------------------------------------------------------------------


def _dead_letter(raw: bytes | None, max_raw_bytes: int = 16384, **changes: Any) -> DeadLetter:
    """A dead letter for `raw` from crm.orders."""
    fields: dict[str, Any] = {
        "source_topic": "crm.orders",
        "partition": 0,
        "offset": 7,
        "key": b"cust-42",
        "raw": raw,
        "reason": "schema",
        "error": "schema: amount: too small",
        "rejected_at": NOW,
        "max_raw_bytes": max_raw_bytes,
    }
    return make_dead_letter(**{**fields, **changes})


def test_dead_letter_keeps_small_values_whole() -> None:
    letter = _dead_letter(b'{"amount": -1}')
    assert letter.raw_value == '{"amount": -1}'
    assert letter.raw_value_size == 14
    assert letter.key == "cust-42"
    assert (letter.source_topic, letter.partition, letter.offset) == ("crm.orders", 0, 7)


def test_dead_letter_value_exactly_at_the_bound_is_not_cut() -> None:
    letter = _dead_letter(b"a" * 100, max_raw_bytes=100)
    assert letter.raw_value == "a" * 100


def test_dead_letter_truncates_large_values_within_the_bound() -> None:
    raw = b"x" * 100_000
    letter = _dead_letter(raw)
    size = len(letter.raw_value.encode("utf-8"))
    assert size <= 16384
    assert size > 16384 - 64  # the bound is used, not wasted
    kept = letter.raw_value.split("…[truncated ")[0]
    assert letter.raw_value.endswith(f"…[truncated {len(raw) - len(kept)} bytes]")
    assert raw.startswith(kept.encode())
    assert letter.raw_value_size == 100_000


def test_dead_letter_truncation_respects_a_custom_bound() -> None:
    letter = _dead_letter(b"y" * 1000, max_raw_bytes=200)
    assert len(letter.raw_value.encode("utf-8")) <= 200
    assert "…[truncated " in letter.raw_value
    assert letter.raw_value_size == 1000


def test_dead_letter_cuts_multibyte_text_on_a_character_boundary() -> None:
    raw = "é€😀".encode() * 2000
    letter = _dead_letter(raw, max_raw_bytes=1000)
    assert len(letter.raw_value.encode("utf-8")) <= 1000
    kept = letter.raw_value.split("…[truncated ")[0]
    assert "\ufffd" not in kept
    assert raw.startswith(kept.encode("utf-8"))
    assert letter.raw_value.endswith(f"[truncated {len(raw) - len(kept.encode())} bytes]")


def test_dead_letter_handles_non_utf8_bytes() -> None:
    letter = _dead_letter(b"\xff\xfeab\xc3", key=b"\xffkey")
    assert letter.raw_value == "\ufffd\ufffdab\ufffd"
    assert letter.key == "\ufffdkey"
    assert letter.raw_value_size == 5
    assert DeadLetter.model_validate_json(encode(letter)) == letter


def test_dead_letter_with_invalid_bytes_that_expand_stays_within_the_bound() -> None:
    raw = b"\xff" * 5000  # each byte becomes a 3-byte replacement character
    letter = _dead_letter(raw, max_raw_bytes=1000)
    assert len(letter.raw_value.encode("utf-8")) <= 1000
    kept = letter.raw_value.split("…[truncated ")[0]
    assert letter.raw_value.endswith(f"[truncated {len(raw) - len(kept)} bytes]")
    assert letter.raw_value_size == 5000


def test_dead_letter_for_null_key_and_value() -> None:
    letter = _dead_letter(None, key=None)
    assert (letter.key, letter.raw_value, letter.raw_value_size) == (None, "", 0)


def test_dead_letter_bounds_the_error_text() -> None:
    letter = _dead_letter(b"{}", error="e" * 10_000)
    assert len(letter.error) == 2000
    assert letter.error.endswith("…")


def test_dead_letter_refuses_a_bound_too_small_for_the_suffix() -> None:
    with pytest.raises(ValueError):
        _dead_letter(b"x" * 100, max_raw_bytes=10)


# --- JSON Schema export -------------------------------------------------------------------

EXPECTED_SCHEMA_FILES = {
    "input.login.schema.json",
    "input.order.schema.json",
    "input.ticket.schema.json",
    "input.contact.schema.json",
    "input.account.schema.json",
    "input.task-update.schema.json",
    "output.alert.schema.json",
    "output.task.schema.json",
    "output.customer-health.schema.json",
    "output.deadletter.schema.json",
}


def test_export_json_schemas_writes_every_model(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "schemas"
    paths = export_json_schemas(target)
    assert {path.name for path in paths} == EXPECTED_SCHEMA_FILES
    assert {path.name for path in target.iterdir()} == EXPECTED_SCHEMA_FILES
    ids = set()
    for path in paths:
        text = path.read_text(encoding="utf-8")
        schema = json.loads(text)
        assert "properties" in schema
        assert schema["title"]
        ids.add(schema["$id"])
        assert text == json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert len(ids) == len(paths)


def test_exported_schemas_describe_the_contract(tmp_path: Path) -> None:
    export_json_schemas(tmp_path)

    def load(name: str) -> dict[str, Any]:
        return dict(json.loads((tmp_path / f"{name}.schema.json").read_text(encoding="utf-8")))

    order = load("input.order")
    assert order["additionalProperties"] is True
    assert {"event_id", "customer_id", "occurred_at", "amount"} <= set(order["required"])
    assert order["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"
    assert load("input.ticket")["properties"]["kind"]["enum"][0] == "complaint"
    alert = load("output.alert")
    assert alert["additionalProperties"] is False
    assert "resolved_at" in alert["required"]  # always emitted, possibly null
    assert alert["properties"]["severity"]["enum"] == ["info", "low", "medium", "high", "critical"]


# --- properties ---------------------------------------------------------------------------

identifiers = st.text(min_size=1, max_size=256).filter(lambda s: s == s.strip() and s != "")


@given(event_id=identifiers, customer_id=identifiers, user_id=st.text(max_size=50))
def test_login_events_survive_json_round_trip(
    event_id: str, customer_id: str, user_id: str
) -> None:
    value = {
        "event_id": event_id,
        "customer_id": customer_id,
        "occurred_at": T0,
        "user_id": user_id,
        "channel": "mobile",
    }
    event = decode_input("login", orjson.dumps(value))
    assert isinstance(event, LoginEvent)
    assert (event.event_id, event.customer_id, event.user_id) == (event_id, customer_id, user_id)
    assert event.occurred_at == T0_DT
    assert decode_input("login", encode(event)) == event
