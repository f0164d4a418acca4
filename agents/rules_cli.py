"""``churnguard rules …``: check packs, list the feature catalogue, run rule unit tests.

These commands never touch Kafka: they run before (and without) building the Faust app, so a
broken pack in the configured paths cannot stop ``rules check`` from reporting it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rules.loader import RulePackError, load_rules, pack_files, param_literal
from streams.features import FEATURES
from streams.settings import Settings

CEL_TYPES = {int: "int", float: "double", str: "string", bool: "bool"}


@click.group(name="rules")
def rules_group() -> None:
    """Check rule packs, list the features rules can use, run rule unit tests."""


@rules_group.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def check(paths: tuple[Path, ...]) -> None:
    """Validate rule packs and scoring (files or directories; default: CHURNGUARD_RULE_PACKS).

    Reports every problem as FILE:LINE: rule ID: reason — YAML errors, unknown fields, bad
    durations, CEL syntax and type errors, unknown features, duplicate ids, unknown or
    cyclic `inhibits`; for tiers, health and lifecycle also grids, weights that do not sum
    to 100, a missing fallback entry and scores read before they are computed; `params:`
    referred to but not declared (params.NAME in CEL) or declared but not used. Exits 1 on
    any problem, 0 when everything loads.
    """
    targets = list(paths) or Settings().rule_packs
    try:
        ruleset = load_rules(targets)
    except RulePackError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problem(s); nothing would be loaded", err=True)
        sys.exit(1)
    files = pack_files(targets)
    click.echo(f"ok: {len(ruleset.rules)} rules in {len(files)} file(s)")
    for rule in ruleset.rules:
        wakes = "time-based" if rule.time_based else "event-driven"
        params = ", ".join(f"{k}={param_literal(v)}" for k, v in rule.rule.params.items())
        click.echo(
            f"  {rule.id:<28} {rule.rule.severity:<8} {wakes}"
            + (f"  params: {params}" if params else "")
        )
    scoring = ruleset.scoring
    if scoring is not None:
        spec = scoring.spec
        click.echo(
            f"scoring from {scoring.source}: tiers {', '.join(t.id for t in spec.tiers)}; "
            f"stages {', '.join(s.id for s in spec.lifecycle)}; "
            f"health factors {', '.join(f.id for f in spec.health.factors)}"
            + (
                f" (profiles {', '.join(p.id for p in spec.health.profiles)})"
                if spec.health.profiles
                else ""
            )
        )


@rules_group.command(name="list")
def list_features() -> None:
    """Print the feature catalogue: the variables a rule's CEL may use, with types."""
    width = max(len(name) for name in FEATURES)
    for feature in FEATURES.values():
        kind = CEL_TYPES[feature.type]
        timed = "t" if feature.changes_with_time else " "
        click.echo(f"{feature.name:<{width}}  {kind:<6} {timed}  {feature.description}")
    click.echo("\nt = changes with time alone (the worker wakes the customer when it matters)")


@rules_group.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def test(files: tuple[Path, ...]) -> None:
    """Run promtool-style rule unit tests (see docs/rules-testing.md); exit 1 on a failure."""
    from rules.testing import format_report, run_test_files

    reports = run_test_files(list(files))
    click.echo(format_report(reports))
    sys.exit(0 if all(report.ok for report in reports) else 1)
