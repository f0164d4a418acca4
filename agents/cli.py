"""The ``churnguard`` command: Faust's own CLI (``churnguard worker``) plus our commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from streams.settings import Settings

# Faust, aiokafka and the worker's modules are imported where the Faust app is built: the
# commands without one (backtest, rules, fit, import, replay, serve, redis) start a second
# sooner without them
if TYPE_CHECKING:
    import faust

HELP = """churnguard: early warnings for customer success, from the event streams you already have.

Reads crm.* events from Kafka, keeps per-customer state, evaluates YAML/CEL rules and emits
alerts (cs.alerts) and tasks (cs.tasks). Configure with CHURNGUARD_* environment variables
(see README). Start a worker with `churnguard worker -l info`; try it all with
`churnguard demo`. Check rule packs and scoring with `churnguard rules check`, list the
features rules can use with `churnguard rules list`, run rule unit tests with
`churnguard rules test FILE`. Fit the CLV model with `churnguard fit --orders FILE --until
DATE`; publish an order history with `churnguard import cdnow|csv FILE`. Measure rules on
history with `churnguard backtest --events FILE …` (no broker), publish history to the input
topics with `churnguard replay FILE…`. Serve the HTTP API
and the customer-success dashboard over the Redis read model with `churnguard serve`.
"""


def build_app(settings: Settings | None = None) -> faust.App:
    """The fully wired app: topics, table, agents, timers, metrics and commands."""
    from faust.sensors.prometheus import setup_prometheus_sensors

    from agents.ingest import register
    from agents.metrics import Metrics
    from streams.app import create_app

    settings = settings or Settings()
    app = create_app(settings)
    metrics = Metrics.create()
    setup_prometheus_sensors(app, pattern="/metrics", registry=metrics.registry)
    app.churnguard_metrics = metrics  # type: ignore[attr-defined]
    register(app, settings, metrics)
    _add_commands(app, settings)
    return app


def _add_commands(app: faust.App, settings: Settings) -> None:
    from faust.cli import AppCommand, argument, option

    @app.command(
        option(
            "--duration",
            type=float,
            default=100.0,
            show_default=True,
            help="Seconds to run before stopping cleanly (Ctrl-C also stops).",
        ),
        option(
            "--customers",
            type=int,
            default=1000,
            show_default=True,
            help="Synthetic customers to simulate.",
        ),
        option(
            "--days",
            type=int,
            default=40,
            show_default=True,
            help="Simulated days of traffic.",
        ),
        option(
            "--days-per-second",
            type=float,
            default=0.5,
            show_default=True,
            help="Time compression: simulated days per wall-clock second.",
        ),
    )
    async def demo(
        self: AppCommand, duration: float, customers: int, days: int, days_per_second: float
    ) -> None:
        """Run the whole pipeline on synthetic traffic and print alerts and tasks.

        Starts the embedded Tansu broker on a free port unless CHURNGUARD_BROKER is set,
        creates the topics, starts a worker in event-time mode, replays CUSTOMERS customers
        over DAYS simulated days (some go quiet, some complain, some lose a key contact, most
        stay healthy) and prints one line per alert and task.
        """
        from agents.demo import DemoOptions, run_demo

        await run_demo(
            settings,
            DemoOptions(
                duration=duration,
                customers=customers,
                days=days,
                days_per_second=days_per_second,
            ),
        )

    @app.command(
        argument("action", type=click.Choice(["export"])),
        argument("directory", type=click.Path(file_okay=False, path_type=Path)),
    )
    async def schemas(self: AppCommand, action: str, directory: Path) -> None:
        """Write the JSON Schemas of every input and output event to DIRECTORY."""
        from schemas import export_json_schemas

        for path in export_json_schemas(directory):
            click.echo(str(path))


def main() -> None:
    """Entry point of the ``churnguard`` console script."""
    if sys.argv[1:2] == ["rules"]:  # no Faust app, no broker: works on broken packs too
        from agents.rules_cli import rules_group

        rules_group.main(args=sys.argv[2:], prog_name="churnguard rules")
        return
    if sys.argv[1:2] == ["serve"]:  # API, dashboard and read-model sink: no Faust app
        from agents.serve import serve_command

        serve_command.main(args=sys.argv[2:], prog_name="churnguard serve")
        return
    if sys.argv[1:2] == ["redis"]:  # read model: Redis and the output topics, no Faust app
        from agents.redis_cli import redis_group

        redis_group.main(args=sys.argv[2:], prog_name="churnguard redis")
        return
    if sys.argv[1:2] == ["backtest"]:  # the pure engine in-process: no Faust app, no broker
        from agents.backtest_cli import backtest

        backtest.main(args=sys.argv[2:], prog_name="churnguard backtest")
        return
    if sys.argv[1:2] == ["replay"]:  # history to the input topics: a producer, no Faust app
        from agents.replay_cli import replay

        replay.main(args=sys.argv[2:], prog_name="churnguard replay")
        return
    if sys.argv[1:2] in (["fit"], ["import"]):  # offline: no Faust app
        from agents.offline_cli import fit, import_orders

        command = fit if sys.argv[1] == "fit" else import_orders
        command.main(args=sys.argv[2:], prog_name=f"churnguard {sys.argv[1]}")
        return
    from agents.preflight import PreflightError, check_data_dir, quarantine_corrupt_stores
    from rules.loader import RulePackError

    try:
        settings = Settings()
        if sys.argv[1:2] == ["worker"] and settings.store.startswith("rocksdb"):
            check_data_dir(settings.data_dir)
            quarantine_corrupt_stores(settings.data_dir)
        app = build_app(settings)
    except RulePackError as exc:
        click.echo(f"churnguard: invalid rule pack, nothing loaded:\n{exc}", err=True)
        sys.exit(2)
    except PreflightError as exc:
        click.echo(f"churnguard: cannot start: {exc}", err=True)
        sys.exit(2)
    except ValueError as exc:  # settings from the environment, the CLV model file
        click.echo(f"churnguard: cannot start: {exc}", err=True)
        sys.exit(2)
    from faust.cli.faust import cli

    cli.help = HELP  # Faust's group help text is generic; say what churnguard is
    try:
        app.main()
    except SystemExit as stop:
        # Faust exits 1 on any crash; a crash that names its code (a storage failure: 74)
        # exits with it, so that an orchestrator and an operator tell them apart
        code = getattr(app, "exit_code", None)
        if code is not None and stop.code not in (0, None):
            sys.exit(code)
        raise
