"""churnguard on the real CDNOW data against lifetimes, the reference implementation.

The orders go through the same engine (state, scoring, built-in rules) a worker runs; its
RFM features must equal lifetimes' summary for every customer, and `churnguard fit` must give
lifetimes' BetaGeoFitter parameters. lifetimes is only a test oracle (extra `oracle`).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from rules.engine import Engine, EngineConfig, run_batch
from rules.loader import load_rules
from streams.clv import load_model
from streams.features import FEATURES
from streams.orders_file import CsvColumns, OrdersFileError, read_cdnow, read_csv
from streams.rfm import end_of_day, summarise
from streams.settings import BUILTIN_PACKS
from streams.state import CustomerState, StateConfig

lifetimes = pytest.importorskip("lifetimes")
pd = pytest.importorskip("pandas")

CALIBRATION_END = date(1997, 9, 30)
USD = StateConfig(currency_rates={"USD": 1.0})


@pytest.fixture(scope="module")
def cdnow() -> Iterator[Path]:
    resource = importlib.resources.files("lifetimes.datasets") / "CDNOW_master.txt"
    with importlib.resources.as_file(resource) as path:
        yield path


@pytest.fixture(scope="module")
def oracle(cdnow: Path) -> pd.DataFrame:
    """lifetimes' own summary of the calibration period, in days."""
    orders = pd.read_csv(cdnow, sep=r"\s+", dtype={"customer_id": str, "date": str})
    orders["date"] = pd.to_datetime(orders["date"], format="%Y%m%d")
    return lifetimes.utils.summary_data_from_transaction_data(
        orders,
        "customer_id",
        "date",
        monetary_value_col="dollar_value",
        observation_period_end=str(CALIBRATION_END),
        freq="D",
    )


def test_the_engine_replay_gives_lifetimes_rfm_for_every_customer(
    cdnow: Path, oracle: pd.DataFrame
) -> None:
    # the rules and scoring run too (no errors); snapshots and alert texts are not compared
    config = EngineConfig(state=USD, snapshots=False, texts=False)
    engine = Engine(load_rules([BUILTIN_PACKS]), config)
    states: dict[str, CustomerState] = {}
    events = list(read_cdnow(cdnow, until=CALIBRATION_END))
    assert len(events) == 49_086
    result = run_batch(engine, states, events)
    assert not result.errors
    at = end_of_day(CALIBRATION_END)
    assert len(states) == len(oracle) == 23_570
    mismatches = []
    for customer_id, row in oracle.iterrows():
        state = states[customer_id]
        ours = {
            name: FEATURES[name].compute(state, at)
            for name in ("rfm_frequency", "rfm_recency_days", "rfm_age_days", "rfm_monetary")
        }
        theirs = {
            "rfm_frequency": row["frequency"],
            "rfm_recency_days": row["recency"],
            "rfm_age_days": row["T"],
            "rfm_monetary": row["monetary_value"],
        }
        if any(ours[k] != pytest.approx(v, rel=1e-9, abs=1e-9) for k, v in theirs.items()):
            mismatches.append((customer_id, ours, theirs))
    assert mismatches == []


def test_the_offline_summary_matches_the_engine_and_lifetimes(
    cdnow: Path, oracle: pd.DataFrame
) -> None:
    table = summarise(read_cdnow(cdnow), CALIBRATION_END, USD)
    got = pd.DataFrame(
        {
            "frequency": table.frequency,
            "recency": table.recency,
            "T": table.age,
            "monetary_value": table.monetary,
        },
        index=table.customers,
    ).sort_index()
    want = oracle[["frequency", "recency", "T", "monetary_value"]].sort_index()
    assert list(got.index) == list(want.index)
    assert (got - want).abs().max().max() < 1e-9


def test_churnguard_fit_matches_betageofitter_within_one_percent(
    cdnow: Path, oracle: pd.DataFrame, tmp_path: Path
) -> None:
    reference = lifetimes.BetaGeoFitter().fit(oracle["frequency"], oracle["recency"], oracle["T"])
    out = tmp_path / "clv.yaml"
    env = {
        **os.environ,
        "CHURNGUARD_REPORTING_CURRENCY": "USD",
        "CHURNGUARD_CURRENCY_RATES": json.dumps({"USD": 1.0}),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents",
            "fit",
            "--orders",
            str(cdnow),
            "--until",
            str(CALIBRATION_END),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "23570 customers" in done.stdout
    model = load_model(out)
    assert model.calibration_end == CALIBRATION_END
    ours = model.bgnbd.model_dump()
    for name in ("r", "alpha", "a", "b"):
        assert ours[name] == pytest.approx(reference.params_[name], rel=0.01), name
    repeat = oracle[(oracle["frequency"] > 0) & (oracle["monetary_value"] > 0)]
    gg_reference = lifetimes.GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    assert model.gamma_gamma is not None
    gg = model.gamma_gamma.model_dump()
    for name in ("p", "q", "v"):
        assert gg[name] == pytest.approx(gg_reference.params_[name], rel=0.01), name


# -- reading order files --------------------------------------------------------------------------
def test_cdnow_rows_become_paid_orders_with_stable_ids(cdnow: Path) -> None:
    first = list(read_cdnow(cdnow, until=date(1997, 1, 1), prefix="cd-"))
    again = list(read_cdnow(cdnow, until=date(1997, 1, 1), prefix="cd-"))
    assert first and [e.event_id for e in first] == [e.event_id for e in again]
    assert first[0].customer_id == "cd-00001" and first[0].status == "paid"
    assert str(first[0].amount) == "11.77" and first[0].currency == "USD"


def test_a_bad_cdnow_row_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "orders.txt"
    path.write_text("customer_id date n value\n1 19970101 1 5.00\n2 1997-01-02 1 3.00\n")
    with pytest.raises(OrdersFileError, match=r"orders.txt:3: date '1997-01-02' is not YYYYMMDD"):
        list(read_cdnow(path))
    path.write_text("1 19970101 1 -5.00\n")
    with pytest.raises(OrdersFileError, match=r"orders.txt:1: amount: .*greater than or equal"):
        list(read_cdnow(path))


def test_csv_columns_are_mapped_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("client;day;total;cur\nacme;01/02/2024;12.50;EUR\nglobex;03/02/2024;7;USD\n")
    columns = CsvColumns(
        customer="client",
        date="day",
        amount="total",
        currency="cur",
        date_format="%d/%m/%Y",
        delimiter=";",
    )
    orders = list(read_csv(path, columns, until=date(2024, 2, 1)))
    assert [(o.customer_id, o.currency, str(o.amount)) for o in orders] == [
        ("acme", "EUR", "12.50")
    ]
    with pytest.raises(OrdersFileError, match=r"orders.csv:1: missing column\(s\) amount"):
        list(read_csv(path, CsvColumns(customer="client", date="day", delimiter=";")))


def import_without_broker(*args: str) -> subprocess.CompletedProcess[str]:
    """`churnguard import ARGS` pointed at a port where no broker listens."""
    return subprocess.run(
        [sys.executable, "-m", "agents", "import", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CHURNGUARD_BROKER": "kafka://127.0.0.1:1"},
        check=False,
    )


def test_import_refuses_a_bad_file_before_sending_anything(tmp_path: Path) -> None:
    path = tmp_path / "orders.txt"
    path.write_text("1 19970101 1 5.00\n2 19970102 x 3.00 extra\n")
    done = import_without_broker("cdnow", str(path))
    assert done.returncode == 2
    assert "orders.txt:2: expected 4 columns" in done.stderr


def test_same_named_files_do_not_share_ids_and_a_short_row_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "jan").mkdir()
    (tmp_path / "feb").mkdir()
    jan = tmp_path / "jan" / "orders.csv"
    feb = tmp_path / "feb" / "orders.csv"
    jan.write_text("customer_id,date,amount\nc1,2024-01-05,10\n")
    feb.write_text("customer_id,date,amount\nc1,2024-02-05,12\n")
    [a] = read_csv(jan, CsvColumns())
    [b] = read_csv(feb, CsvColumns())
    assert a.event_id != b.event_id
    twice = tmp_path / "twice.csv"
    twice.write_text("customer_id,date,amount\nc1,2024-01-05,10\nc1,2024-01-05,10\n")
    first, second = read_csv(twice, CsvColumns())
    assert first.event_id != second.event_id  # two real orders, not a duplicate
    short = tmp_path / "short.csv"
    short.write_text("customer_id,date,amount\nc1,2024-01-05\n")
    with pytest.raises(OrdersFileError, match=r"short.csv:2: 2 field\(s\)"):
        list(read_csv(short, CsvColumns()))


def test_import_refuses_a_currency_without_a_rate(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,date,amount,cur\nc1,2024-01-05,10,JPY\n")
    done = import_without_broker("csv", str(path), "--currency-col", "cur")
    assert done.returncode == 2
    assert "no rate for JPY" in done.stderr
