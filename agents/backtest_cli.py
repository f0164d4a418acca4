"""``churnguard backtest``: history through the engine in-process, scored against churn labels.

No broker and no Faust app: the events are read (streams/history.py), run through the same
engine a worker runs in event time (rules/backtest.py), and each rule's precision, recall,
lead time and alert load computed (rules/backtest_metrics.py). Writes ``report.json``
(deterministic apart from ``generated_at``), ``report.html`` and the charts as SVG.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import re
import signal
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import orjson

from agents.backtest_report import markdown_table
from agents.cut_feed import CutFeed
from agents.engine_config import engine_config
from agents.history_options import DAY, echo_bad_lines, mapping_option, parse_day, strict_option
from agents.progress import Progress
from agents.report_writer import ReportWriteError, ReportWriter
from rules.backtest import HEALTH_RULE, Run, cut_schedule, merge_runs, rules_needed, run_backtest
from rules.backtest_metrics import Window, all_rule_metrics, population, roc
from rules.engine import Engine
from rules.loader import Overrides, RulePackError, RuleSet, load_rules
from rules.model import parse_duration
from schemas import InputEvent
from streams.features import FEATURES
from streams.gc_tuning import tune_gc
from streams.history import (
    HistoryError,
    Problems,
    derive_no_order_labels,
    read_all,
    read_labels,
)
from streams.settings import Settings

_SWEEP = re.compile(
    r"^\s*(?P<rule>[a-z0-9][a-z0-9_.-]*)\.(?P<param>[A-Za-z_]\w*)\s*=\s*"
    r"(?P<start>-?[\d.]+)\s*\.\.\s*(?P<stop>-?[\d.]+)(?:\s+step\s+(?P<step>[\d.]+))?\s*$"
)
_DERIVE = re.compile(r"^no-order:(?P<span>\d+(?:\.\d+)?[smhdw]|\d{4}-\d\d-\d\d)$")


UsageError = click.UsageError
"""A bad option value, said plainly."""


def parse_sweep(text: str) -> tuple[str, str, list[float]]:
    """``RULE.PARAM=A..B step S`` → rule id, parameter and the values A, A+S, … ≤ B."""
    match = _SWEEP.match(text)
    if not match:
        raise UsageError(
            f"--sweep {text!r}: use RULE.PARAM=START..STOP step STEP (e.g. "
            "'order-rhythm-broken.min_days=14..60 step 7')"
        )
    start, stop = float(match["start"]), float(match["stop"])
    step = float(match["step"] or 1)
    if step <= 0 or stop < start:
        raise UsageError(f"--sweep {text!r}: needs START <= STOP and a positive step")
    count = int((stop - start) / step + 1e-9) + 1
    if count > 50:
        raise UsageError(f"--sweep {text!r}: {count} values; at most 50")
    values = [round(start + i * step, 10) for i in range(count)]
    return match["rule"], match["param"], values


def derive_horizon(text: str, end: float) -> float:
    """The end (exclusive) of the label horizon of ``no-order:SPAN|DATE`` after ``end``."""
    match = _DERIVE.match(text)
    if not match:
        raise UsageError(
            f"--derive-labels {text!r}: use no-order:DAYSd (e.g. no-order:273d) or "
            "no-order:YYYY-MM-DD (the last day of the horizon)"
        )
    span = match["span"]
    if "-" in span:
        return parse_day(span, "--derive-labels") + DAY
    return end + parse_duration(span)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def make_engine(
    settings: Settings,
    packs: list[Path],
    params: Overrides | None,
    scoring: bool,
    only: frozenset[str] | None = None,
) -> Engine:
    """The engine as a worker configures it, with these packs and parameter overrides
    (``only``: just the rules with these ids)."""
    rules = load_rules(packs, default_scoring=scoring, params=params)
    if not scoring or only is not None:
        kept = tuple(r for r in rules.rules if only is None or r.id in only)
        rules = RuleSet(kept, rules.fingerprint, scoring=rules.scoring if scoring else None)
    # a backtest reports alert ids and times and health scores: snapshots, alert texts and
    # task events would be built for nothing
    config = dataclasses.replace(engine_config(settings), snapshots=False, texts=False)
    return Engine(rules, config, wall_clock=lambda: 0.0)


def build_report(
    *,
    files: list[str],
    events: list[InputEvent],
    bad_lines: int,
    run: Run,
    engine: Engine,
    window: Window,
    churned_at: dict[str, float],
    label_source: str,
    step: float,
    health_below: int | None,
) -> dict[str, Any]:
    """The report's content (everything but ``generated_at``), deterministic."""
    people = population(run.first_seen, churned_at, window)
    churned = sum(1 for c in people if c in churned_at)
    rule_ids = [r.id for r in engine.rules.rules]
    if engine.scorer is not None and health_below is not None:
        rule_ids.append(HEALTH_RULE)
    metrics = all_rule_metrics(rule_ids, run.episodes, people, churned_at, window)
    report: dict[str, Any] = {
        "input": {
            "files": files,
            "events": len(events),
            "events_in_window": run.applied + run.duplicates,
            "duplicates": run.duplicates,
            "bad_lines": bad_lines,
            "customers": len(run.first_seen),
        },
        "window": {
            "from": _iso(window.start),
            "to": _iso(window.end),
            "months": round(window.months, 4),
        },
        "labels": {
            "source": label_source,
            "population": len(people),
            "churned": churned,
            "churn_rate": round(churned / len(people), 6) if people else None,
        },
        "rules": {
            "fingerprint": engine.rules.fingerprint.hex(),
            "params": {r.id: r.rule.params for r in engine.rules.rules if r.rule.params},
        },
        "engine": {
            "eval_every_s": step,
            "evaluations": run.evaluations,
            "errors": run.errors,
            "sweeps": run.sweeps,
        },
        "metrics": metrics,
    }
    if engine.scorer is not None:
        risk = {c: 100.0 - h for c, h in run.health.items()}
        report["health"] = {"below": health_below, "roc": roc(risk, people, churned_at)}
    return report


def dump(report: dict[str, Any]) -> bytes:
    """The report as indented JSON bytes, ``generated_at`` first."""
    stamped = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), **report}
    return orjson.dumps(stamped, option=orjson.OPT_INDENT_2) + b"\n"


@click.command(name="backtest", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--events",
    "event_files",
    multiple=True,
    required=True,
    metavar="[FORMAT:]FILE",
    help="History to replay (repeat for several files): JSON lines (.jsonl, the wire format, "
    "kind by a kind/topic field or by the fields), CSV (.csv, with a column mapping) or "
    "CDNOW orders (.txt). Prefix jsonl:, csv: or cdnow: to say the format.",
)
@mapping_option
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Churn labels: a CSV with customer_id,churned_at (empty or absent: did not churn).",
)
@click.option(
    "--derive-labels",
    metavar="no-order:SPAN|DATE",
    help="Derive labels from the events after --to instead: churned = no order in the SPAN "
    "(e.g. 273d) after --to, or up to DATE inclusive; churn time = --to.",
)
@click.option(
    "--rules",
    "packs",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Rule packs (files or directories; repeat). Default: CHURNGUARD_RULE_PACKS.",
)
@click.option("--from", "from_", metavar="DATE", help="Window start (default: first event's day).")
@click.option(
    "--to",
    "to",
    metavar="DATE",
    help="Window end, inclusive (default: the last event's day). Later events are not run "
    "(they only serve --derive-labels).",
)
@click.option(
    "--eval-every",
    default="1d",
    show_default=True,
    help="Sweep interval in event time (deadlines themselves are exact; this sets how often "
    "due customers are swept and RFM cut points refreshed).",
)
@click.option(
    "--health-below",
    type=click.IntRange(0, 100),
    default=50,
    show_default=True,
    help="A health score under this counts as a health-score alert.",
)
@click.option(
    "--sweep",
    "sweep_spec",
    metavar="'RULE.PARAM=A..B step S'",
    help="Also run once per value of one rule parameter (declared under params:) and chart "
    "its precision / recall / lead time / alert load.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=lambda: min(os.cpu_count() or 1, 8),
    show_default="the number of CPUs, at most 8",
    help="Processes: the main run splits the customers between them, a sweep runs that many "
    "values at a time (the report does not depend on it).",
)
@strict_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("backtest-report"),
    show_default=True,
    help="Directory for report.json, report.html and the charts.",
)
def backtest(
    event_files: tuple[str, ...],
    mapping: Path | None,
    labels_path: Path | None,
    derive_labels: str | None,
    packs: tuple[Path, ...],
    from_: str | None,
    to: str | None,
    eval_every: str,
    health_below: int,
    sweep_spec: str | None,
    jobs: int,
    strict: bool,
    out: Path,
) -> None:
    """Replay history through the rules in-process and measure each rule against churn.

    Runs the engine a worker runs, in event time, without a broker: every rule and the
    health score get alerts, customers alerted, precision, recall, F1, median and p90 lead
    time (days from the first alert to churn) and alert load (alerts per 1,000 customers per
    month); the health score also a ROC curve and AUC. Writes OUT/report.json,
    OUT/report.html, the charts (SVG) and OUT/alerts.jsonl (every alert that would have
    fired, with the alert_id and fired_at a worker gives it). Labels come from --labels or
    --derive-labels (exactly one).

    \b
    Example (CDNOW, calibration to 1997-09-30, churned = no order up to 1998-06-30):
      churnguard backtest --events cdnow:CDNOW_master.txt --to 1997-09-30
        --derive-labels no-order:1998-06-30 --out report/
    """
    if (labels_path is None) == (derive_labels is None):
        raise UsageError("give exactly one of --labels FILE or --derive-labels no-order:SPAN")
    if derive_labels is not None and to is None:
        raise UsageError("--derive-labels needs --to (the calibration end)")
    try:
        step = parse_duration(eval_every)
    except ValueError as exc:
        raise UsageError(f"--eval-every: {exc}") from None
    if step <= 0:
        raise UsageError("--eval-every must be positive")
    sweep = parse_sweep(sweep_spec) if sweep_spec else None
    settings = Settings()
    writer = ReportWriter()  # imports matplotlib while the history is read
    click.get_current_context().call_on_close(writer.close)  # on every way out
    problems = Problems(strict=strict)
    started = datetime.now(UTC)
    click.echo("reading history …", err=True)
    try:
        events = read_all(list(event_files), problems, mapping)
        churned_at = read_labels(labels_path, problems) if labels_path else {}
    except HistoryError as exc:
        click.echo(f"churnguard: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"churnguard: cannot read: {exc}", err=True)
        sys.exit(2)
    echo_bad_lines(problems)
    if not events:
        click.echo("churnguard: no events in the history", err=True)
        sys.exit(2)
    first_day = (events[0].occurred_at.timestamp() // DAY) * DAY
    last_day = (events[-1].occurred_at.timestamp() // DAY) * DAY
    start = parse_day(from_, "--from") if from_ else first_day
    end = parse_day(to, "--to") + DAY if to else last_day + DAY
    if end <= start:
        raise UsageError("--to must not be before --from")
    label_source = str(labels_path)
    if derive_labels is not None:
        churned_at = derive_no_order_labels(events, end, derive_horizon(derive_labels, end))
        label_source = f"derived: {derive_labels} after {_iso(end)}"
    window = Window(start, end)
    targets = list(packs) or settings.rule_packs
    try:
        engine = make_engine(settings, targets, None, settings.scoring_enabled)
    except RulePackError as exc:
        click.echo(f"churnguard: invalid rule pack:\n{exc}", err=True)
        sys.exit(2)
    in_run = sum(1 for e in events if e.occurred_at.timestamp() < end)
    tune_gc(settings.gc_gen0_threshold)  # the history and the engine live to the end
    bar, progress = _progress(first_day, end)
    main = _MainJob(settings, targets, engine, events, end, step, health_below)
    run = main.run(jobs, progress)
    elapsed = bar.finish()
    report = build_report(
        files=list(event_files),
        events=events,
        bad_lines=len(problems.lines),
        run=run,
        engine=engine,
        window=window,
        churned_at=churned_at,
        label_source=label_source,
        step=step,
        health_below=health_below,
    )
    if sweep is not None:
        report["sweep"] = _sweep(
            settings, targets, sweep, events, end, step, window, churned_at, run, jobs
        )
    out.mkdir(parents=True, exist_ok=True)
    writer.submit(out, report, dump(report))
    alerts = write_alerts(out / "alerts.jsonl", run)
    try:
        written = [*writer.written(), alerts]
    except ReportWriteError as exc:
        click.echo(f"churnguard: {exc}", err=True)
        sys.exit(1)
    took = (datetime.now(UTC) - started) / timedelta(seconds=1)
    click.echo(
        f"{in_run:,} events in {elapsed:.1f} s ({in_run / max(elapsed, 1e-9):,.0f} events/s); "
        f"total {took:.1f} s",
        err=True,
    )
    _print_table(report)
    for path in written:
        click.echo(str(path))


@dataclass
class _MainJob:
    """The main run, in one process or with the customers split over ``jobs`` processes.

    Customers are independent but for the RFM cut points, which the main process works out
    from the events (:func:`rules.backtest.cut_schedule`) while the processes run their
    customers, and hands to them as they are known (:mod:`agents.cut_feed`); the runs are
    merged, so the report is the same whatever ``jobs`` is.
    """

    settings: Settings
    packs: list[Path]
    engine: Engine
    events: list[InputEvent]
    end: float
    step: float
    health_below: int | None
    shards: list[list[InputEvent]] = field(default_factory=list)
    cuts: CutFeed | None = None  # the population's RFM cut points, as they are worked out
    done: Any = None  # per process: events applied (shared memory)
    reached: Any = None  # per process: event time reached (shared memory)

    def run(self, jobs: int, progress: Callable[[int, float], None]) -> Run:
        """The merged run (``progress`` is called now and then with the totals)."""
        global _MAIN
        customers = len({e.customer_id for e in self.events})
        jobs = min(jobs, customers)
        if jobs <= 1:
            only = run_backtest(
                self.engine,
                self.events,
                until=self.end,
                step=self.step,
                health_below=self.health_below,
                on_progress=progress,
            )
            return merge_runs([only])
        self.shards = [[] for _ in range(jobs)]
        for event in self.events:
            self.shards[zlib.crc32(event.customer_id.encode()) % jobs].append(event)
        context = multiprocessing.get_context("fork")  # children inherit the events
        if self.engine.scorer is not None:
            self.cuts = CutFeed(context, jobs)
        self.done = context.Array("q", jobs, lock=False)
        self.reached = context.Array("d", jobs, lock=False)
        _MAIN = self
        try:
            with context.Pool(jobs, initializer=_leave_interrupts_to_the_parent) as pool:
                pending = pool.map_async(_main_part, range(jobs))
                if self.cuts is not None:
                    cut_schedule(
                        self.events,
                        until=self.end,
                        config=self.engine.config.state,
                        step=self.step,
                        on_cuts=self.cuts.send,
                    )
                    self.cuts.close()
                while not pending.ready():
                    pending.wait(0.25)
                    reached = [t for t in self.reached if t > 0]  # the slowest part so far
                    if reached:
                        progress(sum(self.done), min(reached))
                parts = pending.get()
        finally:
            _MAIN = None
        return merge_runs(parts)


_MAIN: _MainJob | None = None


def _leave_interrupts_to_the_parent() -> None:
    """In a pool's process: ignore Ctrl-C. The parent gets it, leaves the pool's ``with``
    and terminates the pool; a part that raised KeyboardInterrupt itself would print its
    traceback over the parent's "Aborted!"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _main_part(k: int) -> Run:
    """One process's share of the main run: the customers of shard ``k``."""
    job = _MAIN
    assert job is not None
    engine = make_engine(job.settings, job.packs, None, job.engine.scorer is not None)

    def progress(done: int, at: float) -> None:
        job.done[k] = done
        job.reached[k] = at

    start = job.events[0].occurred_at.timestamp()
    return run_backtest(
        engine,
        job.shards[k],
        until=job.end,
        step=job.step,
        health_below=job.health_below,
        on_progress=progress,
        start=start,
        cuts=None if job.cuts is None else job.cuts.reader(k),
    )


def _progress(first_day: float, end: float) -> tuple[Progress, Callable[[int, float], None]]:
    """A progress bar over the days of event time, noting the events applied."""
    bar = Progress(int((end - first_day) // DAY), what="days of event time")

    def update(done: int, at: float) -> None:
        bar.update(int((at - first_day) // DAY), f"{done:,} events")

    return bar, update


def write_alerts(path: Path, run: Run) -> Path:
    """Every episode of the run, one JSON object per line, in firing order (deterministic)."""
    with path.open("wb") as out:
        for ep in run.episodes:
            out.write(
                orjson.dumps(
                    {
                        "alert_id": ep.alert_id,
                        "rule_id": ep.rule_id,
                        "customer_id": ep.customer_id,
                        "fired_at": _iso(ep.fired_at),
                        "resolved_at": None if ep.resolved_at is None else _iso(ep.resolved_at),
                    }
                )
                + b"\n"
            )
    return path


@dataclass(frozen=True)
class _SweepJob:
    """What every run of a sweep shares (handed to forked children by inheritance)."""

    settings: Settings
    packs: list[Path]
    rule_id: str
    param: str
    events: list[InputEvent]
    end: float
    step: float
    window: Window
    churned_at: dict[str, float]
    people: set[str]
    scoring: bool
    only: frozenset[str] | None


_JOB: _SweepJob | None = None


def _sweep_value(value: float, show_progress: bool = False) -> dict[str, Any]:
    """One run of the sweep: the swept rule's metrics with its parameter at ``value``."""
    job = _JOB
    assert job is not None
    overrides = {job.rule_id: {job.param: value}}
    engine = make_engine(job.settings, job.packs, overrides, job.scoring, job.only)
    progress = None
    bar = None
    if show_progress:
        first_day = (job.events[0].occurred_at.timestamp() // DAY) * DAY
        bar, progress = _progress(first_day, job.end)
    run = run_backtest(
        engine, job.events, until=job.end, step=job.step, health_below=None, on_progress=progress
    )
    if bar is not None:
        bar.finish()
    metrics = all_rule_metrics([job.rule_id], run.episodes, job.people, job.churned_at, job.window)[
        job.rule_id
    ]
    shown = int(value) if float(value).is_integer() else value
    return {"value": shown, **metrics}


def _sweep(
    settings: Settings,
    packs: list[Path],
    sweep: tuple[str, str, list[float]],
    events: list[InputEvent],
    end: float,
    step: float,
    window: Window,
    churned_at: dict[str, float],
    base: Run,
    jobs: int,
) -> dict[str, Any]:
    """Run the backtest once per value (``jobs`` processes at a time); the swept rule's rows."""
    global _JOB
    rule_id, param, values = sweep
    for value in values:  # every value checked before anything runs
        try:
            probe = load_rules(packs, params={rule_id: {param: value}})
        except RulePackError as exc:
            click.echo(f"churnguard: --sweep: {exc}", err=True)
            sys.exit(2)
    only = rules_needed(probe, rule_id)  # the others cannot change its alerts
    running = [r for r in probe.rules if only is None or r.id in only]
    needs_scores = any("scores" in FEATURES[n].depends_on for r in running for n in r.inputs)
    _JOB = _SweepJob(
        settings,
        packs,
        rule_id,
        param,
        events,
        end,
        step,
        window,
        churned_at,
        population(base.first_seen, churned_at, window),
        needs_scores and settings.scoring_enabled,
        only,
    )
    rows: list[dict[str, Any]] = []
    try:
        if jobs <= 1:
            for i, value in enumerate(values):
                click.echo(f"sweep {i + 1}/{len(values)}: {rule_id}.{param} = {value:g}", err=True)
                rows.append(_sweep_value(value, show_progress=True))
        else:
            context = multiprocessing.get_context("fork")  # children inherit the events
            with context.Pool(
                min(jobs, len(values)), initializer=_leave_interrupts_to_the_parent
            ) as pool:
                for i, row in enumerate(pool.imap(_sweep_value, values)):
                    click.echo(
                        f"sweep {i + 1}/{len(values)}: {rule_id}.{param} = {values[i]:g} done",
                        err=True,
                    )
                    rows.append(row)
    finally:
        _JOB = None
    return {"rule": rule_id, "param": param, "rows": rows}


def _print_table(report: dict[str, Any]) -> None:
    click.echo(markdown_table(report["metrics"]))
    auc = (report.get("health") or {}).get("roc", {}).get("auc")
    if auc is not None:
        click.echo(f"health score ROC AUC: {auc:.3f}")
    if report.get("sweep"):
        sweep = report["sweep"]
        click.echo(
            markdown_table({str(r["value"]): r for r in sweep["rows"]}, first=sweep["param"])
        )
