"""Rule text is data: hostile rule packs execute nothing, and the loader says why it refuses.

Conditions are CEL (no Python, no functions beyond CEL's and ours), packs are parsed with a
safe YAML loader, templates only replace ``{{ feature }}`` placeholders.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rules.engine import Engine, EngineConfig
from rules.loader import RulePackError, load_rules
from streams.state import CustomerState
from tests.factories import account, ticket
from tests.source_scan import lines_matching


def _pack(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    return path


REFUSED = {
    "python in a condition": (
        "- id: a\n  when: \"__import__('os').system('touch {canary}') == 0\"\n"
        "  severity: low\n  summary: x\n",
        "Undefined variable or function: '__import__'",
    ),
    "attribute access": (
        '- id: a\n  when: "open_tickets.__class__ == 1"\n  severity: low\n  summary: x\n',
        "CEL type error",
    ),
    "a file-reading function": (
        "- id: a\n  when: \"size(read_file('/etc/passwd')) > 0\"\n  severity: low\n  summary: x\n",
        "Undefined variable or function: 'read_file'",
    ),
    "a YAML python tag": (
        '- id: a\n  when: !!python/object/apply:os.system ["touch {canary}"]\n'
        "  severity: low\n  summary: x\n",
        "could not determine a constructor for the tag",
    ),
    "placeholders that are not features": (
        '- id: a\n  when: open_tickets > 0\n  severity: low\n  summary: "{{{{ __class__ }}}}"\n',
        "unknown placeholder(s) __class__",
    ),
    "an include key": (
        "- id: a\n  when: open_tickets > 0\n  severity: low\n  summary: x\n"
        "  include: /etc/passwd\n",
        "include: Extra inputs are not permitted",
    ),
    "a path as the rule id": (
        "- id: ../../etc/passwd\n  when: open_tickets > 0\n  severity: low\n  summary: x\n",
        "id: String should match pattern",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hostile_pack_is_refused_with_the_reason_and_nothing_runs(
    case: str, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    text, reason = REFUSED[case]
    path = _pack(tmp_path, text.format(canary=canary))
    with pytest.raises(RulePackError) as caught:
        load_rules([path], default_scoring=False)
    assert reason in str(caught.value)
    assert f"{path}:" in str(caught.value)  # where: the file and line
    assert not canary.exists()


def test_template_syntax_of_other_engines_is_shown_as_text_not_run(tmp_path: Path) -> None:
    summary = "{% include '/etc/passwd' %} {{ name.__class__ }} {0.__class__} %s ${HOME}"
    pack = (
        "- id: shown\n  when: open_tickets > 0\n  severity: low\n"
        f'  summary: "{summary}"\n'
        f'  task:\n    assignee: owner\n    due: 48h\n    title: "{summary}"\n'
    )
    engine = Engine(
        load_rules([_pack(tmp_path, pack)], default_scoring=False),
        EngineConfig(),
        wall_clock=lambda: 0.0,
    )
    state = CustomerState("cust-1")
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    engine.apply(state, account(start))
    result = engine.apply(state, ticket(start, "t-1"))
    texts = [getattr(o, "summary", None) or getattr(o, "title", "") for o in result.outputs]
    assert texts and all(t == summary for t in texts), texts


def test_no_python_evaluation_anywhere_in_the_packages() -> None:
    calls = re.compile(r"\b(eval|exec|compile)\s*\(|yaml\.load\s*\(|__import__\s*\(")
    found = lines_matching(calls, unless=lambda line: "cel.compile" in line or "re.compile" in line)
    assert found == []
