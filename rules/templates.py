"""Safe summary templates: ``{{ name }}`` is replaced by a value, nothing is executed.

Values come from upstream systems (an account's name, a contact's): what replaces a
placeholder carries no markup and no control characters, so an alert summary or a task
title is safe to show in a chat message, a CRM or a web page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_SPACES = re.compile(r"[\t\n\r\v\f]")
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
"""C0 and C1 controls, zero-width and direction marks, line and paragraph separators, and
bidirectional overrides and isolates (which can make a summary read differently)."""


def placeholders(template: str) -> set[str]:
    """Names a template refers to."""
    return set(PLACEHOLDER.findall(template))


def shown(value: Any) -> str:
    """A value as a placeholder shows it: floats with two decimals; whitespace controls as a
    space, other invisible or control characters as U+FFFD; ``&``, ``<``, ``>`` escaped."""
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    text = _CONTROLS.sub("\ufffd", _SPACES.sub(" ", text))
    return html.escape(text, quote=False)


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill ``{{ name }}`` placeholders with :func:`shown` values; unknown names stay visible."""

    def one(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        return match.group(0) if value is None else shown(value)

    return PLACEHOLDER.sub(one, template)
