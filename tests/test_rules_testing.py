"""Tests of the rule unit-test runner (rules.testing) and the shipped rules/tests/*.yaml."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import rules
from rules.testing import (
    Draft,
    NotationError,
    format_offset,
    format_report,
    parse_notation,
    parse_offset,
    run_test_file,
    run_test_files,
)
from schemas import ContactEvent, LoginEvent, OrderEvent, TaskUpdateEvent, TicketEvent

RULES_DIR = Path(rules.__file__).resolve().parent
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = 86400.0

QUIET_PACK = """\
- id: quiet
  when: days_since_last_login >= 3
  severity: low
  summary: "{{ name }}: quiet for {{ days_since_last_login }} days"
  task: {assignee: csm, due: 1d}
"""


def write(tmp_path: Path, body: str, name: str = "t_test.yaml") -> Path:
    (tmp_path / "pack.yaml").write_text(QUIET_PACK, encoding="utf-8")
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


HEADER = """\
rule_files: [pack.yaml]
start: 2026-01-05T09:00:00Z
accounts:
  c1: {name: Acme, owner: am-1, csm: csm-1}
tests:
"""


# -- the shipped test files ----------------------------------------------------------------------
def test_shipped_rule_tests_pass() -> None:
    files = sorted((RULES_DIR / "tests").glob("*.yaml"))
    assert files, "rules/tests/ has no test files"
    reports = run_test_files(files)
    assert all(r.ok for r in reports), format_report(reports)
    assert sum(len(r.tests) for r in reports) >= 10


def test_the_example_in_the_docs_passes(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "rules-testing.md").read_text(
        encoding="utf-8"
    )
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    core = RULES_DIR / "packs" / "core.yaml"
    path = tmp_path / "example_test.yaml"
    path.write_text(example.replace("../packs/core.yaml", str(core)), encoding="utf-8")
    reports = run_test_files([path])
    assert reports[0].ok, format_report(reports)
    assert len(reports[0].tests) == 2


# -- failures read like promtool's ---------------------------------------------------------------
def test_a_wrong_expectation_fails_with_a_readable_diff(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
  - name: quiet fires after three days
    input:
      c1:
        - logins: at 0d
    eval_at:
      - at: 2d
        firing: []
      - at: 3d
        firing: [{customer: c1, rule: quiet, severity: high}]
        tasks: [{customer: c1, rule: quiet, assignee: csm-2}]
""",
    )
    reports = run_test_files([path])
    assert not reports[0].ok
    assert format_report(reports) == textwrap.dedent(
        f"""\
        {path}: 1 test(s), 1 of 1 FAILED
          FAILED  {path}:6: quiet fires after three days
            at 3d (2026-01-08T09:00:00Z), line 13, firing:
              missing:    quiet c1 high
              unexpected: quiet c1 low "Acme: quiet for 3 days"
            at 3d (2026-01-08T09:00:00Z), line 13, tasks:
              missing:    quiet c1 csm-2 *
              unexpected: quiet c1 csm-1 open
        FAILED: 1 of 1 test(s) failed"""
    )


def test_nothing_firing_when_something_is_expected_and_extra_fields_are_shown(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
  - name: expects too early
    input:
      c1:
        - logins: at 0d
    eval_at:
      - at: 2d
        firing: [{customer: c1, rule: quiet, summary: quiet, fired_at: 2d}]
        tasks: [{customer: c1, rule: quiet, due: 3d, role: csm}]
""",
    )
    text = format_report(run_test_files([path]))
    assert 'missing:    quiet c1 * "…quiet…" fired_at=2d' in text
    assert "missing:    quiet c1 * * role=csm due=3d" in text
    assert "unexpected" not in text
    assert text.endswith("FAILED: 1 of 1 test(s) failed")


def test_extra_fields_of_the_actual_items_are_shown_when_the_expectation_uses_them(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
  - name: wrong times
    input:
      c1:
        - logins: at 0d
    eval_at:
      - at: 3d
        firing: [{customer: c1, rule: quiet, fired_at: 2d}]
        tasks: [{customer: c1, rule: quiet, due: 5d}]
""",
    )
    text = format_report(run_test_files([path]))
    assert 'unexpected: quiet c1 low "Acme: quiet for 3 days" fired_at=3d' in text
    assert "unexpected: quiet c1 csm-1 open due=4d" in text


def test_passing_file_and_verbose_listing(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
  - name: quiet fires after three days
    input:
      c1:
        - logins: at 0d
    eval_at:
      - at: 2d23h
        firing:
      - at: 3d
        firing: [{customer: c1, rule: quiet, severity: low, summary: "quiet for 3 days"}]
        tasks: [{customer: c1, rule: quiet, assignee: csm-1, role: csm, status: open, due: 4d}]
""",
    )
    reports = run_test_files([path])
    assert reports[0].ok, format_report(reports)
    assert format_report(reports, verbose=True) == (
        f"{path}: 1 test(s), ok\n"
        "  ok      quiet fires after three days\n"
        "SUCCESS: 1 test(s) in 1 file(s)"
    )


def test_account_changes_merge_and_null_removes_a_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
  - name: the CSM leaves the account, the next task goes to the fallback
    input:
      c1:
        - logins: at 0d, 4d
        - account: {at: 4d, csm: null}
    eval_at:
      - at: 3d
        tasks: [{customer: c1, rule: quiet, assignee: csm-1}]
      - at: 7d
        firing: [{customer: c1, rule: quiet, summary: "Acme: quiet", fired_at: 7d}]
        tasks: [{customer: c1, rule: quiet, assignee: cs-queue, role: fallback}]
""",
    )
    reports = run_test_files([path])
    assert reports[0].ok, format_report(reports)


def test_task_updates_close_tasks_and_a_missing_task_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
  - name: done closes the task, the alert keeps firing
    input:
      c1:
        - logins: at 0d
        - task_updates: done quiet at 3d12h
    eval_at:
      - at: 4d
        firing: [{customer: c1, rule: quiet}]
        tasks: []
  - name: an update before the rule opened a task
    input:
      c1:
        - logins: at 0d
        - task_updates: acknowledged quiet at 1d
    eval_at:
      - at: 4d
        firing: [{customer: c1, rule: quiet}]
""",
    )
    report = run_test_file(path)
    first, second = report.tests
    assert first.ok, format_report([report])
    assert not second.ok
    assert second.errors == [
        "line 19: task_updates at 1d: rule 'quiet' has opened no task for c1 by then"
    ]
    assert "    error: line 19: task_updates at 1d" in format_report([report])


def test_a_rule_failing_at_run_time_fails_the_test(tmp_path: Path) -> None:
    (tmp_path / "ratio.yaml").write_text(
        "- id: ratio\n  when: 10 / open_tickets > 1\n  severity: low\n  summary: s\n",
        encoding="utf-8",
    )
    path = tmp_path / "t_test.yaml"
    path.write_text(
        "rule_files: [ratio.yaml]\nstart: 2026-01-05\ntests:\n"
        "  - {name: t, input: {c1: [{logins: at 0d}]}, eval_at: [{at: 1d, firing: []}]}\n",
        encoding="utf-8",
    )
    report = run_test_file(path)
    assert not report.ok
    assert report.tests[0].failures == []
    [error] = report.tests[0].errors
    assert error.startswith("rule ratio failed for c1: ")
    assert "division by zero" in error


def test_runs_are_deterministic(tmp_path: Path) -> None:
    files = sorted((RULES_DIR / "tests").glob("*.yaml"))
    assert format_report(run_test_files(files)) == format_report(run_test_files(files))


# -- bad files: file and line ---------------------------------------------------------------------
BAD_CASES = [
    pytest.param(
        """\
          - name: typo in a key
            input: {c1: [{logins: at 0d}]}
            evals: [{at: 1d}]
        """,
        8,
        "tests[0].evals: unknown key",
        id="unknown-key",
    ),
    pytest.param(
        """\
          - name: bad duration
            input:
              c1:
                - logins: every 1x from 0d to 3d
            eval_at: [{at: 1d, firing: []}]
        """,
        9,
        "tests[0].input.c1[0].logins: expected a duration after 'every', got '1x'",
        id="bad-every",
    ),
    pytest.param(
        """\
          - name: second line of a list
            input:
              c1:
                - tickets:
                    - complaint at 1d
                    - complaint at 2d 3d oops
            eval_at: [{at: 1d}]
        """,
        11,
        "tests[0].input.c1[0].tickets[1]: unexpected 'oops'",
        id="list-item",
    ),
    pytest.param(
        """\
          - name: unknown rule
            input:
              c1:
                - logins: at 0d
                - task_updates: done quite at 4d
            eval_at: [{at: 1d}]
        """,
        10,
        "unknown rule 'quite' (did you mean 'quiet'?)",
        id="unknown-rule-in-task-update",
    ),
    pytest.param(
        """\
          - name: bad eval time
            input: {c1: []}
            eval_at:
              - at: soon
        """,
        9,
        "tests[0].eval_at[0].at: bad time 'soon'",
        id="bad-eval-time",
    ),
    pytest.param(
        """\
          - name: customer without input
            input: {c1: []}
            eval_at:
              - at: 1d
                firing: [{customer: c2, rule: quiet}]
        """,
        10,
        "customer 'c2' has no input in this test",
        id="unknown-customer",
    ),
    pytest.param(
        """\
          - name: wrong severity word
            input: {c1: []}
            eval_at:
              - at: 1d
                firing:
                  - customer: c1
                    rule: quiet
                    severity: urgent
        """,
        13,
        "tests[0].eval_at[0].firing[0].severity: Input should be",
        id="bad-severity",
    ),
    pytest.param(
        """\
          - name: two kinds on one line
            input:
              c1:
                - {logins: at 0d, tickets: complaint at 1d}
            eval_at: [{at: 1d}]
        """,
        9,
        "each input line has exactly one of",
        id="two-kinds",
    ),
    pytest.param(
        """\
          - name: a duplicate customer
            input:
              c1: []
              c1: []
            eval_at: [{at: 1d}]
        """,
        9,
        "duplicate key 'c1'",
        id="duplicate-key",
    ),
    pytest.param(
        """\
          - name: broken YAML
            input: {c1: [}
            eval_at: [{at: 1d}]
        """,
        7,
        "YAML error",
        id="yaml-syntax",
    ),
]


@pytest.mark.parametrize(("body", "line", "message"), BAD_CASES)
def test_bad_files_report_file_and_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    path = write(tmp_path, HEADER + textwrap.dedent(body))
    report = run_test_file(path)
    assert not report.ok
    assert not report.tests
    assert any(p.startswith(f"{path}:{line}: ") and message in p for p in report.problems), (
        report.problems
    )
    text = format_report([report])
    assert f"{path}: INVALID" in text
    assert text.endswith("FAILED: 1 invalid test file(s)")


def test_rule_files_that_do_not_load_are_reported_with_their_own_lines(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(
        "- id: x\n  when: nope >= 1\n  severity: low\n  summary: s\n", encoding="utf-8"
    )
    path = tmp_path / "t_test.yaml"
    path.write_text(
        "rule_files: [broken.yaml]\nstart: 2026-01-05\n"
        "tests: [{name: t, input: {}, eval_at: [{at: 1d}]}]\n",
        encoding="utf-8",
    )
    report = run_test_file(path)
    assert report.problems[0] == f"{path}:1: rule_files do not load:"
    assert (
        f"{tmp_path / 'broken.yaml'}:2: rule x: when: unknown variable(s) nope"
        in (report.problems[1])
    )


def test_start_needs_a_utc_offset(tmp_path: Path) -> None:
    path = write(
        tmp_path, HEADER.replace("09:00:00Z", "09:00:00") + "  - {name: t, eval_at: [{at: 0}]}\n"
    )
    report = run_test_file(path)
    assert report.problems == [
        f"{path}:2: start: start needs a UTC offset, like 2026-01-05T09:00:00Z"
    ]


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    report = run_test_file(tmp_path / "nope.yaml")
    assert not report.ok
    assert report.problems[0].startswith(f"{tmp_path / 'nope.yaml'}: cannot read")


# -- the notation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("14d", 14 * DAY),
        ("36h", 36 * 3600.0),
        ("90m", 5400.0),
        ("1d12h", 1.5 * DAY),
        ("2w", 14 * DAY),
        ("1.5d", 1.5 * DAY),
        ("-3d", -3 * DAY),
        ("0", 0.0),
        (0, 0.0),
    ],
)
def test_parse_offset(text: str | int, seconds: float) -> None:
    assert parse_offset(text) == seconds


@pytest.mark.parametrize("text", ["14", "d", "14 days", "1x", "", 5, "1d 2h"])
def test_parse_offset_rejects(text: str | int) -> None:
    with pytest.raises(NotationError):
        parse_offset(text)


def test_format_offset_round_trips() -> None:
    for text in ("34d", "1d12h", "1h30m", "0d", "-2d", "10s"):
        assert format_offset(parse_offset(text)) == text


def times(drafts: list[Draft]) -> list[float]:
    return [d.at / DAY for d in drafts]


def test_logins_every() -> None:
    drafts = parse_notation("logins", "every 1d from 0d to 20d")
    assert times(drafts) == [float(d) for d in range(21)]
    event = drafts[3].to_event("c1", "e-1", START)
    assert isinstance(event, LoginEvent)
    assert (event.customer_id, event.event_id, event.channel) == ("c1", "e-1", "web")
    assert event.occurred_at == START + timedelta(days=3)


def test_logins_at_with_channel_and_user() -> None:
    drafts = parse_notation("logins", "mobile at 1d, 2d12h 3d by u-9")
    assert times(drafts) == [1.0, 2.5, 3.0]
    assert drafts[0].fields == {"channel": "mobile", "user_id": "u-9"}


def test_tickets_several_at_the_same_time() -> None:
    drafts = parse_notation("tickets", "complaint at 30d, 30d, 31d")
    assert times(drafts) == [30.0, 30.0, 31.0]
    event = drafts[0].to_event("c1", "e-1", START)
    assert isinstance(event, TicketEvent)
    assert (event.kind, event.severity, event.status) == ("complaint", "medium", "opened")


def test_tickets_with_every_option() -> None:
    [draft] = parse_notation("tickets", "critical incident at 2d id T-1 csat 2 nps 9")
    assert draft.fields == {
        "kind": "incident",
        "severity": "critical",
        "status": "opened",
        "ticket_id": "T-1",
        "csat": 2,
        "nps": 9,
    }
    event = draft.to_event("c1", "e-1", START)
    assert isinstance(event, TicketEvent)
    assert (event.ticket_id, event.csat, event.nps) == ("T-1", 2, 9)
    [closing] = parse_notation("tickets", "incident closed at 3d id T-1")
    assert closing.fields["status"] == "closed"


def test_contacts() -> None:
    [draft] = parse_notation("contacts", 'key "Jane Doe" departed at 5d')
    event = draft.to_event("c1", "e-1", START)
    assert isinstance(event, ContactEvent)
    assert (event.contact_id, event.name, event.is_key_contact, event.change) == (
        "jane-doe",
        "Jane Doe",
        True,
        "departed",
    )
    [plain] = parse_notation("contacts", "Bob added at 0d id c-7")
    assert plain.fields == {
        "name": "Bob",
        "change": "added",
        "is_key_contact": False,
        "contact_id": "c-7",
    }


def test_orders() -> None:
    drafts = parse_notation("orders", "paid 120 EUR every 30d from 0d to 90d")
    assert times(drafts) == [0.0, 30.0, 60.0, 90.0]
    event = drafts[1].to_event("c1", "e-1", START)
    assert isinstance(event, OrderEvent)
    assert (event.status, event.amount, event.currency) == ("paid", Decimal(120), "EUR")
    [default] = parse_notation("orders", "at 1d")
    assert default.fields == {
        "status": "paid",
        "amount": Decimal(100),
        "currency": "EUR",
        "order_id": None,
    }
    [refund] = parse_notation("orders", "refunded 49.90 USD at 3d id O-7")
    assert refund.fields["amount"] == Decimal("49.90")
    assert refund.fields["order_id"] == "O-7"


def test_task_updates() -> None:
    [draft] = parse_notation("task_updates", "dismissed inactivity at 36d snooze 10d")
    assert draft.fields["rule"] == "inactivity"
    event = draft.to_event("c1", "e-1", START, task_id="tk-1")
    assert isinstance(event, TaskUpdateEvent)
    assert (event.task_id, event.status) == ("tk-1", "dismissed")
    assert event.snooze_until == START + timedelta(days=46)
    [until] = parse_notation("task_updates", "dismissed inactivity at 36d snooze until 50d")
    snoozed = until.to_event("c1", "e-2", START, task_id="tk-1")
    assert isinstance(snoozed, TaskUpdateEvent)
    assert snoozed.snooze_until == START + timedelta(days=50)
    [ack] = parse_notation(
        "task_updates", "acknowledged key-contact-departed escalation at 2d by am-1"
    )
    assert ack.fields == {
        "status": "acknowledged",
        "rule": "key-contact-departed",
        "escalation": True,
        "snooze": None,
        "snooze_until": None,
        "by": "am-1",
    }
    with pytest.raises(ValueError, match="task id"):
        ack.to_event("c1", "e-3", START)


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("logins", "at", "expected a time like 14d at the end"),
        ("logins", "every 1d from 0d", "expected 'to' at the end"),
        ("logins", "every 1d from 5d to 2d", "'to' is before 'from'"),
        ("logins", "every 0d from 0d to 2d", "must be more than 0"),
        ("logins", "web", "no time given"),
        ("logins", "at 1d every 1d from 0d to 2d", "more than one schedule"),
        ("logins", "at 1d, ", "expected a time after ','"),
        ("tickets", "complaint incident at 1d", "more than one ticket kind"),
        ("tickets", "complaint resolved at 1d", "needs the id of the ticket"),
        ("tickets", "complaint at 1d csat 7", "csat must be a whole number from 1 to 5"),
        ("contacts", "key departed at 1d", "expected one contact name"),
        ("contacts", "Jane Doe departed at 1d", "expected one contact name"),
        ("contacts", '"Jane departed at 1d', "unbalanced quote"),
        ("contacts", "Jane at 1d", "added, role_changed or departed"),
        ("orders", "paid 120 at 1d", "currency code"),
        ("orders", "refunded 10 EUR at 1d", "needs the id of the order"),
        ("task_updates", "inactivity at 1d", "acknowledged, done or dismissed"),
        ("task_updates", "done at 1d", "the id of the rule"),
        ("task_updates", "done inactivity at 1d snooze 2d", "only a dismissed task can snooze"),
        ("task_updates", "done inactivity at 1d by x by y", "'by' given twice"),
        ("account", "at 1d", "unknown input kind"),
    ],
)
def test_bad_notation(kind: str, text: str, message: str) -> None:
    with pytest.raises(NotationError, match=None) as info:
        parse_notation(kind, text)
    assert message in str(info.value)
