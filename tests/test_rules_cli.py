"""`churnguard rules check|list|test` as a user runs them: a real subprocess, real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rules

PACKS = Path(rules.__file__).resolve().parent / "packs"
RULE_TESTS = Path(rules.__file__).resolve().parent / "tests"

GOOD = """\
- id: good
  when: open_tickets > 0
  severity: low
  summary: "{{ name }} has open tickets"
"""


def churnguard(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_passes_on_the_builtin_packs() -> None:
    done = churnguard("rules", "check", PACKS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 11 rules in 2 file(s)")
    assert "tiers strategic, key, growth, normal" in done.stdout
    assert "inactivity" in done.stdout


def test_check_reports_every_broken_rule_with_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        GOOD
        + "- id: typed\n  when: name > 3\n  severity: low\n  summary: s\n"
        + "- id: slow\n  when: open_tickets > 0\n  severity: low\n  summary: s\n  for: soon\n"
        + "- id: ghost\n  when: open_tickets > 0\n  severity: low\n  summary: s\n"
        + "  inhibits: [nobody]\n",
        encoding="utf-8",
    )
    done = churnguard("rules", "check", broken)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert f"{broken}:6: rule typed: when: CEL type error: No such overload" in lines[0]
    assert lines[1].startswith(f"{broken}:13: rule slow: for: Value error, bad duration 'soon'")
    assert lines[2] == f"{broken}:18: rule ghost: inhibits: unknown rule 'nobody'"
    assert lines[-1] == "3 problem(s); nothing would be loaded"


def test_check_on_a_yaml_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: x\n  when: [unclosed\n", encoding="utf-8")
    done = churnguard("rules", "check", bad)
    assert done.returncode == 1
    assert done.stderr.startswith(f"{bad}:")
    assert "YAML error" in done.stderr


def test_list_prints_the_feature_catalogue() -> None:
    done = churnguard("rules", "list")
    assert done.returncode == 0
    rows = {line.split()[0]: line.split()[1:3] for line in done.stdout.splitlines() if line}
    assert rows["days_since_last_login"] == ["int", "t"]
    assert rows["complaints_90d_weekly_baseline"][0] == "double"
    assert rows["name"][0] == "string"


def test_test_passes_on_the_shipped_rule_tests() -> None:
    files = sorted(RULE_TESTS.glob("*.yaml"))
    assert files
    done = churnguard("rules", "test", *files)
    assert done.returncode == 0, done.stdout + done.stderr


def test_test_fails_with_a_readable_diff(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(GOOD, encoding="utf-8")
    case = tmp_path / "wrong_test.yaml"
    case.write_text(
        f"rule_files: [{pack}]\n"
        "start: 2026-01-05T09:00:00Z\n"
        "tests:\n"
        "  - name: an open ticket fires\n"
        "    input:\n"
        "      acme:\n"
        "        - tickets: opened at 1h id t1\n"
        "    eval_at:\n"
        "      - at: 2h\n"
        "        firing: []\n",
        encoding="utf-8",
    )
    done = churnguard("rules", "test", case)
    assert done.returncode == 1
    assert "an open ticket fires" in done.stdout
    assert "unexpected:" in done.stdout
    assert "good acme low" in done.stdout
