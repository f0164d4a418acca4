"""Lines of the project's own packages that match a pattern (for tests that forbid a form)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "streams", "rules", "agents")


def lines_matching(
    pattern: re.Pattern[str],
    packages: tuple[str, ...] = PACKAGES,
    unless: Callable[[str], bool] = lambda line: False,
) -> list[str]:
    """``path:line: text`` of every line of ``packages`` that matches (and not ``unless``)."""
    return [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and not unless(line)
    ]
