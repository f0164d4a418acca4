"""Rule parameters: `params:` defaults referred to as params.NAME in CEL, and overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rules.loader import RulePackError, load_rules, substitute_params
from streams.settings import BUILTIN_PACKS

PACK = """\
- id: quiet
  when: days_since_last_login >= params.days && double(logins_7d) < params.ratio * 2.0
  params: {days: 14, ratio: 0.5}
  severity: low
  summary: quiet
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(text)
    return path


def test_params_are_replaced_by_their_literal_before_compiling(tmp_path: Path) -> None:
    rule = load_rules([write(tmp_path, PACK)], default_scoring=False).rules[0]
    assert str(rule.when.source) == ("days_since_last_login >= 14 && double(logins_7d) < 0.5 * 2.0")
    # the deadline analysis sees the literal: the rule wakes exactly at 14 days
    assert rule.thresholds["days_since_last_login"] == frozenset({14})


def test_an_override_replaces_the_default_and_keeps_the_type(tmp_path: Path) -> None:
    rules = load_rules(
        [write(tmp_path, PACK)], default_scoring=False, params={"quiet": {"days": 21.0, "ratio": 1}}
    )
    rule = rules.rules[0]
    assert rule.rule.params == {"days": 21, "ratio": 1.0}
    assert str(rule.when.source).startswith("days_since_last_login >= 21 &&")
    assert rule.thresholds["days_since_last_login"] == frozenset({21})


def test_the_builtin_rules_compile_to_the_same_cel_as_before_params() -> None:
    by_id = {r.id: r for r in load_rules([BUILTIN_PACKS]).rules}
    assert str(by_id["inactivity"].when.source) == "days_since_last_login >= 14"
    assert str(by_id["order-rhythm-broken"].when.source) == (
        "days_since_last_order >= 30 && double(days_since_last_order) > 3.0 * order_gap_median_days"
    )


@pytest.mark.parametrize(
    ("text", "params", "message"),
    [
        (PACK.replace("params.ratio", "params.rate"), None, "unknown parameter(s) rate"),
        (PACK.replace("ratio: 0.5", "ratio: 0.5, spare: 1"), None, "spare declared but not used"),
        (PACK, {"quiet": {"weeks": 2}}, "no parameter 'weeks'"),
        (PACK, {"quiet": {"days": 14.5}}, "is not of the default's type"),
        (PACK, {"loud": {"days": 3}}, "no such rule"),
        (PACK.replace("{days: 14,", "{'bad name': 14,"), None, "params"),
    ],
)
def test_bad_params_are_problems(
    tmp_path: Path, text: str, params: dict[str, dict[str, float]] | None, message: str
) -> None:
    with pytest.raises(RulePackError) as info:
        load_rules([write(tmp_path, text)], default_scoring=False, params=params)
    assert any(message in str(p) for p in info.value.problems), info.value.problems


def test_substitute_quotes_strings_and_reports_unknown_names() -> None:
    out, unknown = substitute_params("tier == params.t && x > params.n", {"t": "key"})
    assert out == 'tier == "key" && x > params.n' and unknown == ["n"]


def test_rules_check_shows_params_and_reports_an_undeclared_one(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "agents", "rules", "check", str(write(tmp_path, PACK))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert "params: days=14, ratio=0.5" in good.stdout
    bad = write(tmp_path, PACK.replace("params.days", "params.dayz"))
    done = subprocess.run(
        [sys.executable, "-m", "agents", "rules", "check", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert f"{bad}:2: rule quiet: when: unknown parameter(s) dayz" in done.stderr
