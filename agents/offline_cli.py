"""``churnguard fit`` and ``churnguard import``: offline work on order history files.

Neither builds the Faust app: ``fit`` needs no broker at all, ``import`` only a producer.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from schemas import OrderEvent, encode
from streams.clv import (
    BgNbdParams,
    ClvModel,
    bgnbd_log_likelihood,
    fit_bgnbd,
    fit_gamma_gamma,
    save_model,
)
from streams.kafka_security import client_options
from streams.orders_file import CsvColumns, OrdersFileError, read_cdnow, read_csv
from streams.rfm import summarise
from streams.settings import Settings

FORMATS = ("cdnow", "csv")
F = TypeVar("F", bound=Callable[..., Any])


def _csv_options(fn: F) -> F:
    """The CSV column mapping options (used with --format csv / FORMAT csv)."""
    options = [
        click.option("--customer-col", default="customer_id", show_default=True),
        click.option("--date-col", default="date", show_default=True),
        click.option("--amount-col", default="amount", show_default=True),
        click.option("--order-id-col", default=None, help="default: derived from the line"),
        click.option("--currency-col", default=None, help="default: --currency for every row"),
        click.option("--date-format", default=None, help="strptime format; default ISO 8601"),
        click.option("--delimiter", default=",", show_default=True),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _read_all(
    settings: Settings,
    path: Path,
    fmt: str,
    until: date | None,
    currency: str,
    prefix: str,
    csv_opts: dict[str, str | None],
) -> list[OrderEvent]:
    """Every order of the file in time order; exits 2 on a bad row or an unknown currency."""
    try:
        if fmt == "cdnow":
            events = list(read_cdnow(path, until=until, prefix=prefix, currency=currency))
        else:
            columns = CsvColumns(
                customer=csv_opts["customer_col"] or "customer_id",
                date=csv_opts["date_col"] or "date",
                amount=csv_opts["amount_col"] or "amount",
                order_id=csv_opts["order_id_col"],
                currency=csv_opts["currency_col"],
                default_currency=currency,
                date_format=csv_opts["date_format"],
                delimiter=csv_opts["delimiter"] or ",",
            )
            events = list(read_csv(path, columns, until=until))
    except OrdersFileError as exc:
        click.echo(f"churnguard: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"churnguard: cannot read {path}: {exc.strerror}", err=True)
        sys.exit(2)
    unknown = sorted({e.currency for e in events} - set(settings.currency_rates))
    if unknown:
        click.echo(
            f"churnguard: {path}: no rate for {', '.join(unknown)} in "
            f"CHURNGUARD_CURRENCY_RATES ({', '.join(sorted(settings.currency_rates))}); "
            "such orders would count with value 0",
            err=True,
        )
        sys.exit(2)
    # in time order: per customer, a late order for a day outside the horizon would count as
    # a new purchase day; per partition, the watermark would make later rows late
    events.sort(key=lambda e: e.occurred_at)
    return events


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--orders",
    "orders_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Order history file (see --format).",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="cdnow", show_default=True)
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    required=True,
    help="Calibration end (inclusive): orders after it are ignored, T counts up to it.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("clv-model.yaml"),
    show_default=True,
    help="Where to write the parameter file (CHURNGUARD_CLV_MODEL points workers at it).",
)
@click.option("--currency", default="USD", show_default=True, help="Currency of the amounts.")
@_csv_options
def fit(
    orders_path: Path, fmt: str, until: datetime, out: Path, currency: str, **csv_opts: str | None
) -> None:
    """Fit the CLV model (BG/NBD + Gamma-Gamma) on an order history by maximum likelihood.

    Summarises every customer the way the worker does (repeat purchase days, recency and
    age T in days, average repeat value in the reporting currency, using
    CHURNGUARD_CURRENCY_RATES), fits the parameters and writes a versioned YAML file the
    workers load (CHURNGUARD_CLV_MODEL). Prints the parameters.
    """
    settings = Settings()
    events = _read_all(settings, orders_path, fmt, None, currency, "", csv_opts)
    table = summarise(events, until.date(), settings.state_config)
    if not table.customers:
        click.echo(f"churnguard: no orders on or before {until.date()}", err=True)
        sys.exit(2)
    try:
        bg: BgNbdParams = fit_bgnbd(table.frequency, table.recency, table.age)
        gg = fit_gamma_gamma(table.frequency, table.monetary)
    except ValueError as exc:
        click.echo(f"churnguard: cannot fit: {exc}", err=True)
        sys.exit(1)
    model = ClvModel.model_validate(
        {
            "fitted_at": datetime.now(UTC),
            "calibration_end": until.date(),
            "customers": len(table.customers),
            "repeat_customers": int((table.frequency > 0).sum()),
            "bgnbd": {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b},
            "gamma_gamma": {"p": gg.p, "q": gg.q, "v": gg.v},
            "log_likelihood": bgnbd_log_likelihood(bg, table.frequency, table.recency, table.age),
            "source": str(orders_path),
        }
    )
    save_model(out, model)
    click.echo(
        f"fitted on {model.customers} customers ({model.repeat_customers} repeat) up to "
        f"{model.calibration_end}: BG/NBD r={bg.r:.6g} alpha={bg.alpha:.6g} a={bg.a:.6g} "
        f"b={bg.b:.6g}; Gamma-Gamma p={gg.p:.6g} q={gg.q:.6g} v={gg.v:.6g} -> {out}"
    )


@click.command(name="import", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("fmt", metavar="FORMAT", type=click.Choice(FORMATS))
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Only orders on or before this date.",
)
@click.option("--currency", default="USD", show_default=True, help="Currency of the amounts.")
@click.option("--prefix", default="", help="Prefix for customer ids (cdnow format).")
@click.option("--dry-run", is_flag=True, help="Validate and count, send nothing.")
@_csv_options
def import_orders(
    fmt: str,
    path: Path,
    until: datetime | None,
    currency: str,
    prefix: str,
    dry_run: bool,
    **csv_opts: str | None,
) -> None:
    """Publish an order history file as crm.orders events (FORMAT: cdnow or csv).

    Every row becomes one paid order at midnight UTC of its date, keyed and partitioned by
    customer_id like any upstream system should. Event ids come from the file name and line,
    so importing the same file twice changes nothing. The whole file is validated before
    anything is sent: a bad row stops the import with FILE:LINE: reason.
    """
    settings = Settings()
    events = _read_all(
        settings, path, fmt, until.date() if until else None, currency, prefix, csv_opts
    )
    if dry_run:
        click.echo(f"{len(events)} orders of {len({e.customer_id for e in events})} customers")
        return
    sent = asyncio.run(_publish(settings, events))
    click.echo(f"sent {sent} orders to {settings.topic_orders}")


async def _publish(settings: Settings, events: list[OrderEvent]) -> int:
    from aiokafka import AIOKafkaProducer

    from streams.partitioning import partition_for

    producer = AIOKafkaProducer(**client_options(settings), linger_ms=20)
    await producer.start()
    try:
        deliveries = [
            await producer.send(
                settings.topic_orders,
                encode(event),
                key=event.customer_id.encode(),
                partition=partition_for(event.customer_id, settings.partitions),
            )
            for event in events
        ]
        await asyncio.gather(*deliveries)  # raises if the broker refused any of them
    finally:
        await producer.stop()
    return len(events)
