"""The churnguard wire contract.

This package defines, as pydantic models, every message churnguard reads from Kafka (login,
order, ticket, contact, account and task-update events, as plain JSON or CloudEvents) and every
message it writes (alerts, tasks, customer-health snapshots, dead letters), together with the
codec that turns Kafka bytes into models and back and an exporter that writes the same contract
as JSON Schema files for consumers in other languages. It has no Kafka dependency.
"""

from schemas.codec import (
    DecodeError,
    cloudevent_headers,
    decode_input,
    decode_json,
    encode,
    encode_dict,
)
from schemas.export import export_json_schemas
from schemas.inputs import (
    EVENT_KINDS,
    AccountEvent,
    ContactEvent,
    InputEvent,
    LoginEvent,
    OrderEvent,
    TaskUpdateEvent,
    TicketEvent,
)
from schemas.outputs import (
    AlertEvent,
    CustomerHealth,
    DeadLetter,
    Severity,
    TaskEvent,
    make_dead_letter,
)

__all__ = [
    "EVENT_KINDS",
    "AccountEvent",
    "AlertEvent",
    "ContactEvent",
    "CustomerHealth",
    "DeadLetter",
    "DecodeError",
    "InputEvent",
    "LoginEvent",
    "OrderEvent",
    "Severity",
    "TaskEvent",
    "TaskUpdateEvent",
    "TicketEvent",
    "cloudevent_headers",
    "decode_input",
    "decode_json",
    "encode",
    "encode_dict",
    "export_json_schemas",
    "make_dead_letter",
]
