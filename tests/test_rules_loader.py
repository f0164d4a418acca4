"""Tests of rule pack loading (rules.loader): every error kind with file, line and rule id."""

from __future__ import annotations

from pathlib import Path

import pytest

import rules
from rules import loader
from rules.loader import Problem, RulePackError, load_rules, pack_files, thresholds

CORE_PACK = Path(rules.__file__).resolve().parent / "packs" / "core.yaml"

GOOD = """\
- id: good
  when: open_tickets > 0
  severity: low
  summary: "{{ name }} has open tickets"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def only_problem(path: Path) -> Problem:
    with pytest.raises(RulePackError) as info:
        load_rules([path])
    problems = info.value.problems
    assert len(problems) == 1, problems
    [problem] = problems
    assert problem.file == str(path)
    assert str(problem) in str(info.value)
    return problem


# -- the built-in pack -------------------------------------------------------------------------
def test_builtin_pack_loads() -> None:
    ruleset = load_rules([CORE_PACK])
    ids = [r.id for r in ruleset.rules]
    assert sorted(ids) == sorted(
        [
            "customer-dormant",
            "inactivity",
            "activity-decline",
            "activity-drop",
            "complaint-spike",
            "low-csat",
            "nps-detractor",
            "key-contact-departed",
            "renewal-at-risk",
            "order-rhythm-broken",
            "tier-downgrade",
        ]
    )
    # evaluation order: inhibitors before the rules they inhibit, alert readers last
    assert ids.index("customer-dormant") < ids.index("inactivity") < ids.index("activity-drop")
    assert ids[-1] == "renewal-at-risk"
    assert ruleset.inhibited_by["inactivity"] == ("customer-dormant",)
    assert all(r.source == str(CORE_PACK) for r in ruleset.rules)
    assert {"days_since_last_login", "complaints_7d", "open_high_alerts"} <= ruleset.inputs
    by_id = {r.id: r for r in ruleset.rules}
    assert by_id["inactivity"].thresholds == {"days_since_last_login": frozenset({14})}
    assert "days_since_last_order" not in by_id["order-rhythm-broken"].thresholds
    assert by_id["order-rhythm-broken"].static_guard is not None
    assert not by_id["low-csat"].time_based
    inactivity = by_id["inactivity"].rule
    assert inactivity.cooldown == 7 * 86400
    assert inactivity.task is not None
    assert inactivity.task.due == 72 * 3600


def test_builtin_pack_directory_loads() -> None:
    assert pack_files([CORE_PACK.parent]) == [CORE_PACK, CORE_PACK.parent / "scoring.yaml"]
    assert len(load_rules([CORE_PACK.parent]).rules) == 11


def test_rules_mapping_form_loads(tmp_path: Path) -> None:
    body = "rules:\n" + "".join(f"  {line}\n" for line in GOOD.splitlines())
    ruleset = load_rules([write(tmp_path, "p.yaml", body)])
    assert [r.id for r in ruleset.rules] == ["good"]
    assert ruleset.inputs == {"open_tickets"}
    assert not ruleset.rules[0].time_based


# -- one test per error kind ------------------------------------------------------------------
def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        "# comment\n- id: r1\n  when: open_tickets > 0\n  severity: low: high\n  summary: s\n",
    )
    problem = only_problem(path)
    assert problem.line == 4
    assert problem.rule_id is None
    assert problem.message.startswith("YAML error")


def test_pack_not_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "map.yaml", "id: r1\nwhen: open_tickets > 0\nseverity: low\n")
    problem = only_problem(path)
    assert problem.line == 1
    assert problem.rule_id is None
    assert "list of rules" in problem.message


def test_pack_scalar_is_not_a_list(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "s.yaml", "just text\n"))
    assert (problem.line, problem.rule_id) == (1, None)


def test_missing_required_field(tmp_path: Path) -> None:
    text = GOOD + "\n- id: r2\n  when: open_tickets > 1\n  summary: s\n"
    problem = only_problem(write(tmp_path, "missing.yaml", text))
    assert problem.line == 6  # the rule's first line
    assert problem.rule_id == "r2"
    assert problem.message.startswith("severity:")
    assert "required" in problem.message.lower()


def test_unknown_field(tmp_path: Path) -> None:
    text = "- id: r1\n  when: open_tickets > 0\n  severity: low\n  colour: red\n  summary: s\n"
    problem = only_problem(write(tmp_path, "unknown.yaml", text))
    assert problem.line == 4
    assert problem.rule_id == "r1"
    assert problem.message.startswith("colour:")


def test_bad_duration(tmp_path: Path) -> None:
    text = GOOD + "- id: r2\n  when: open_tickets > 1\n  severity: low\n  cooldown: 5 days\n"
    text += "  summary: s\n"
    problem = only_problem(write(tmp_path, "duration.yaml", text))
    assert problem.line == 8
    assert problem.rule_id == "r2"
    assert problem.message.startswith("cooldown:")
    assert "5 days" in problem.message


def test_bad_for_duration_reports_the_for_line(tmp_path: Path) -> None:
    text = "- id: r1\n  when: open_tickets > 0\n  for: soon\n  severity: low\n  summary: s\n"
    problem = only_problem(write(tmp_path, "for.yaml", text))
    assert (problem.line, problem.rule_id) == (3, "r1")
    assert problem.message.startswith("for:")


def test_bad_task_due_reports_the_task_line(tmp_path: Path) -> None:
    text = GOOD.replace("- id: good", "- id: r1") + "  task:\n    assignee: csm\n    due: 1 day\n"
    problem = only_problem(write(tmp_path, "task.yaml", text))
    assert (problem.line, problem.rule_id) == (5, "r1")
    assert problem.message.startswith("task.due:")


def test_bad_severity(tmp_path: Path) -> None:
    text = "- id: r1\n  when: open_tickets > 0\n  severity: urgent\n  summary: s\n"
    problem = only_problem(write(tmp_path, "sev.yaml", text))
    assert problem.line == 3
    assert problem.rule_id == "r1"
    assert problem.message.startswith("severity:")


def test_bad_rule_id(tmp_path: Path) -> None:
    text = "- id: Bad Id\n  when: open_tickets > 0\n  severity: low\n  summary: s\n"
    problem = only_problem(write(tmp_path, "id.yaml", text))
    assert (problem.line, problem.rule_id) == (1, "Bad Id")
    assert problem.message.startswith("id:")


def test_cel_syntax_error_in_when(tmp_path: Path) -> None:
    text = GOOD + "- id: r2\n  severity: low\n  summary: s\n  when: open_tickets >\n"
    problem = only_problem(write(tmp_path, "cel.yaml", text))
    assert problem.line == 8
    assert problem.rule_id == "r2"
    assert problem.message.startswith("when: CEL syntax error")


def test_cel_syntax_error_in_resolve_when(tmp_path: Path) -> None:
    text = GOOD.replace("- id: good", "- id: r1") + "  resolve_when: (open_tickets\n"
    problem = only_problem(write(tmp_path, "cel2.yaml", text))
    assert (problem.line, problem.rule_id) == (5, "r1")
    assert problem.message.startswith("resolve_when: CEL syntax error")


def test_unknown_variable(tmp_path: Path) -> None:
    text = "- id: r1\n  severity: low\n  when: revenue > 3 && open_tickets > 0\n  summary: s\n"
    problem = only_problem(write(tmp_path, "var.yaml", text))
    assert problem.line == 3
    assert problem.rule_id == "r1"
    assert problem.message == "when: unknown variable(s) revenue"


def test_unknown_summary_placeholder(tmp_path: Path) -> None:
    text = (
        "- id: r1\n  when: open_tickets > 0\n  severity: low\n"
        '  summary: "{{ name }} owes {{ debt }} and {{ arrears }}"\n'
    )
    problem = only_problem(write(tmp_path, "ph.yaml", text))
    assert problem.line == 4
    assert problem.rule_id == "r1"
    assert problem.message == "summary: unknown placeholder(s) arrears, debt"


def test_unknown_task_title_placeholder(tmp_path: Path) -> None:
    text = (
        "- id: r1\n  when: open_tickets > 0\n  severity: low\n  summary: s\n"
        '  task:\n    assignee: csm\n    due: 1h\n    title: "Call {{ bogus }}"\n'
    )
    path = write(tmp_path, "title.yaml", text)
    with pytest.raises(RulePackError) as info:
        load_rules([path])
    [problem] = info.value.problems
    assert problem.file == str(path)
    assert problem.line in (5, 8)  # the task, or its title
    assert problem.rule_id == "r1"
    assert "bogus" in problem.message


def test_duplicate_rule_id_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", GOOD)
    second = write(
        tmp_path,
        "b.yaml",
        "# another pack\n\n- id: other\n  when: open_tickets > 2\n  severity: low\n"
        "  summary: s\n" + GOOD,
    )
    with pytest.raises(RulePackError) as info:
        load_rules([tmp_path])
    [problem] = info.value.problems
    assert problem.file == str(second)
    assert problem.line == 7
    assert problem.rule_id == "good"
    assert "duplicate rule id" in problem.message
    assert f"{first}:1" in problem.message


def test_duplicate_rule_id_within_one_file(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.yaml", GOOD + GOOD)
    problem = only_problem(path)
    assert (problem.line, problem.rule_id) == (5, "good")


def test_pack_with_one_bad_rule_loads_nothing(tmp_path: Path) -> None:
    text = GOOD + "- id: bad\n  when: open_tickets > 0\n  severity: low\n  summary: s\n  x: 1\n"
    good_file = write(tmp_path, "a.yaml", GOOD.replace("- id: good", "- id: fine"))
    bad_file = write(tmp_path, "b.yaml", text)
    with pytest.raises(RulePackError) as info:
        load_rules([good_file, bad_file])
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.rule_id) == (str(bad_file), 9, "bad")
    # the valid rules alone load fine: the failure above is all-or-nothing, not partial
    assert [r.id for r in load_rules([good_file]).rules] == ["fine"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "- id: r1\n  when: nope > 1\n  severity: low\n  summary: s\n")
    b = write(tmp_path, "b.yaml", "- id: r2\n  when: open_tickets > 0\n  severity: bad\n")
    with pytest.raises(RulePackError) as info:
        load_rules([a, b])
    found = {(p.file, p.line, p.rule_id, p.message.split(":")[0]) for p in info.value.problems}
    assert found == {
        (str(a), 2, "r1", "when"),
        (str(b), 3, "r2", "severity"),
        (str(b), 1, "r2", "summary"),
    }


def test_no_pack_found(tmp_path: Path) -> None:
    with pytest.raises(RulePackError) as info:
        load_rules([tmp_path])
    [problem] = info.value.problems
    assert problem.file == str(tmp_path)
    assert "no rule pack" in problem.message


def test_unreadable_pack(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(RulePackError) as info:
        load_rules([missing])
    [problem] = info.value.problems
    assert (problem.file, problem.line) == (str(missing), 0)
    assert "cannot read" in problem.message


# -- types, inhibition, thresholds ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("complaints_7d * 2.0 > 1.0", "CEL type error: No such overload"),
        ("name > 3", "CEL type error: No such overload"),
        ("open_tickets + 1", "must be a boolean expression, got int"),
        ("open_tickets > 0 && size(name) + 0.5 > 1.0", "CEL type error"),
    ],
)
def test_cel_type_error(tmp_path: Path, when: str, message: str) -> None:
    path = write(tmp_path, "t.yaml", GOOD.replace("open_tickets > 0", when))
    problem = only_problem(path)
    assert (problem.line, problem.rule_id) == (2, "good")
    assert problem.message.startswith("when: ")
    assert message in problem.message


def test_unknown_description_placeholder(tmp_path: Path) -> None:
    path = write(tmp_path, "d.yaml", GOOD + "  description: 'about {{ nope }}'\n")
    problem = only_problem(path)
    assert (problem.line, problem.message) == (5, "description: unknown placeholder(s) nope")


def test_bad_cooldown_duration(tmp_path: Path) -> None:
    path = write(tmp_path, "d.yaml", GOOD + "  cooldown: 3 days\n")
    problem = only_problem(path)
    assert problem.line == 5
    assert "bad duration '3 days'" in problem.message


def test_bad_max_fires(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", GOOD + "  max_fires: {count: 0, per: 1d}\n")
    problem = only_problem(path)
    assert problem.line == 5
    assert problem.message.startswith("max_fires.count:")


def test_unknown_inhibited_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "i.yaml", GOOD + "  inhibits: [ghost]\n")
    problem = only_problem(path)
    assert (problem.line, problem.message) == (5, "inhibits: unknown rule 'ghost'")


def test_inhibition_cycle(tmp_path: Path) -> None:
    a = GOOD.replace("- id: good", "- id: a") + "  inhibits: [b]\n"
    b = GOOD.replace("- id: good", "- id: b") + "  inhibits: [a]\n"
    path = write(tmp_path, "c.yaml", a + b)
    problem = only_problem(path)
    assert (problem.line, problem.rule_id) == (5, "a")
    assert problem.message == "inhibits: cycle a -> b -> a"


def test_self_inhibition(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", GOOD + "  inhibits: [good]\n")
    assert only_problem(path).message == "inhibits: a rule cannot inhibit itself"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("days_since_last_login >= 14", {14}),
        ("days_since_last_login > 14", {15}),
        ("14 <= days_since_last_login", {14}),
        ("days_since_last_login <= 3 || days_since_last_login == 30", {4, 30, 31}),
        ("x > 2 && (days_since_last_login < 7)", {7}),
        ("days_since_last_login >= 14 + x", None),
        ("double(days_since_last_login) > 3.0 * y", None),
        ("days_since_last_login >= 14.0", None),
    ],
)
def test_thresholds_from_comparisons_with_literals(source: str, expected: set[int] | None) -> None:
    found = thresholds(source, "days_since_last_login")
    assert (None if found is None else set(found)) == expected


def test_thresholds_of_a_counter_that_counts_down() -> None:
    # days_to_renewal: `<= 90` becomes true at 90, `>= 0` false at -1
    found = thresholds("days_to_renewal >= 0 && days_to_renewal <= 90", "days_to_renewal", True)
    assert found == {-1, 90}


def test_fingerprint_changes_with_the_rules(tmp_path: Path) -> None:
    first = load_rules([write(tmp_path, "a.yaml", GOOD)]).fingerprint
    assert first == load_rules([write(tmp_path, "a.yaml", GOOD)]).fingerprint
    changed = load_rules([write(tmp_path, "a.yaml", GOOD.replace("> 0", "> 1"))]).fingerprint
    assert len(first) == 8 and changed != first


def test_fingerprint_changes_with_the_feature_catalogue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # deadlines stored under an older catalogue (a feature that now changes with time) must
    # be recomputed: the catalogue version is part of the fingerprint stored with them
    path = write(tmp_path, "a.yaml", GOOD)
    before = load_rules([path]).fingerprint
    monkeypatch.setattr(loader, "CATALOGUE_VERSION", "next")
    assert load_rules([path]).fingerprint != before
