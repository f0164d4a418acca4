"""Options shared by the commands that read history files (``backtest``, ``replay``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from streams.history import Problems

DAY = 86400.0
SHOWN_BAD_LINES = 20
"""Bad lines listed one by one on stderr; the rest are counted."""

mapping_option = click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Column mapping (YAML) for the CSV files; default FILE.mapping.yaml beside each.",
)
strict_option = click.option(
    "--strict", is_flag=True, help="Stop at the first bad line instead of skipping it."
)


def parse_day(text: str, option: str) -> float:
    """Midnight UTC of a ``YYYY-MM-DD`` date, as epoch seconds (a usage error otherwise)."""
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise click.UsageError(f"{option} {text!r}: use a date YYYY-MM-DD") from None
    return day.timestamp()


def echo_bad_lines(problems: Problems) -> None:
    """List the first :data:`SHOWN_BAD_LINES` skipped lines on stderr and count the rest."""
    for bad in problems.lines[:SHOWN_BAD_LINES]:
        click.echo(f"skipped {bad}", err=True)
    if len(problems.lines) > SHOWN_BAD_LINES:
        more = len(problems.lines) - SHOWN_BAD_LINES
        click.echo(f"… and {more} more bad line(s)", err=True)
