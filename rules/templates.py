"""Safe summary templates: ``{{ name }}`` is replaced by a value, nothing is executed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def placeholders(template: str) -> set[str]:
    """Names a template refers to."""
    return set(PLACEHOLDER.findall(template))


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill ``{{ name }}`` placeholders; floats get two decimals, unknown names stay visible."""

    def one(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return match.group(0)
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    return PLACEHOLDER.sub(one, template)
