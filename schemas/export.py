"""JSON Schema files for every input and output model, for consumers outside Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel

from schemas.inputs import EVENT_KINDS
from schemas.outputs import AlertEvent, CustomerHealth, DeadLetter, TaskEvent

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID_PREFIX = "urn:churnguard:schema:v1:"

OUTPUT_MODELS: dict[str, type[BaseModel]] = {
    "alert": AlertEvent,
    "task": TaskEvent,
    "customer-health": CustomerHealth,
    "deadletter": DeadLetter,
}
"""Output models by the name used in their schema file."""


def _schema_document(
    model: type[BaseModel],
    name: str,
    title: str,
    mode: Literal["validation", "serialization"],
) -> dict[str, Any]:
    """The JSON Schema of `model` with its dialect, `$id` and `title` set."""
    schema = model.model_json_schema(mode=mode)
    schema["$schema"] = SCHEMA_DIALECT
    schema["$id"] = f"{SCHEMA_ID_PREFIX}{name}"
    schema["title"] = title
    return schema


def _schema_documents() -> dict[str, dict[str, Any]]:
    """Every model's JSON Schema by its name, e.g. "input.login" or "output.alert"."""
    documents: dict[str, dict[str, Any]] = {}
    for kind, event_model in EVENT_KINDS.items():
        name = f"input.{kind.replace('_', '-')}"
        title = f"churnguard input event: {kind}"
        documents[name] = _schema_document(event_model, name, title, "validation")
    for short, model in OUTPUT_MODELS.items():
        name = f"output.{short}"
        title = f"churnguard output event: {short}"
        documents[name] = _schema_document(model, name, title, "serialization")
    return documents


def export_json_schemas(directory: Path) -> list[Path]:
    """Write `<name>.schema.json` for every input and output model into `directory`.

    Returns the written paths; the directory is created when missing.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, document in _schema_documents().items():
        path = directory / f"{name}.schema.json"
        text = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        path.write_bytes(text + b"\n")
        paths.append(path)
    return paths
