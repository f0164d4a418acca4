"""`churnguard backtest` on real CDNOW orders, as a user runs it (a subprocess, real files).

A subset of the customers (ids below 400, about 1.7 % of them) keeps it inside the CI
budget; docs/backtest.md has the full run. The recency rule's precision and recall are
checked against an independent pandas computation on the same subset, and two runs must
give the same report.json apart from ``generated_at`` (one sweeping in two processes, one in
one).
"""

from __future__ import annotations

import importlib.resources
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.settings import BUILTIN_PACKS

pd = pytest.importorskip("pandas")
pytest.importorskip("lifetimes")

CALIBRATION_END = date(1997, 9, 30)
HORIZON_END = date(1998, 6, 30)
MAX_CUSTOMER = 400
DORMANT_ORDER_DAYS = 90  # customer-dormant's params.order_days (no logins in CDNOW)


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    resource = importlib.resources.files("lifetimes.datasets") / "CDNOW_master.txt"
    out = tmp_path_factory.mktemp("cdnow") / "cdnow_subset.txt"
    with importlib.resources.as_file(resource) as path:
        lines = path.read_text().splitlines()
    kept = [x for x in lines if x.split()[0].isdigit() and int(x.split()[0]) < MAX_CUSTOMER]
    out.write_text("\n".join(kept) + "\n")
    yield out


def backtest(subset: Path, out: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents",
            "backtest",
            "--events",
            f"cdnow:{subset}",
            "--rules",
            str(BUILTIN_PACKS),
            "--to",
            str(CALIBRATION_END),
            "--derive-labels",
            f"no-order:{HORIZON_END}",
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CHURNGUARD_SCORING_ENABLED": "true"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "events/s" in done.stderr and "%" in done.stderr  # the progress bar
    report: dict[str, Any] = orjson.loads((out / "report.json").read_bytes())
    return report


@pytest.fixture(scope="module")
def runs(subset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    sweep = f"customer-dormant.order_days={DORMANT_ORDER_DAYS}..105 step 15"
    first = tmp_path_factory.mktemp("first")
    second = tmp_path_factory.mktemp("second")
    # customers and sweep values split over two processes, then everything in one: the
    # reports must not differ
    backtest(subset, first, "--sweep", sweep, "--jobs", "2")
    backtest(subset, second, "--sweep", sweep, "--jobs", "1")
    return first, second


def oracle(subset: Path) -> tuple[float, float, int]:
    """Precision, recall and customers alerted of "no order for 90 days", in pandas."""
    orders = pd.read_csv(
        subset, sep=r"\s+", header=None, names=["customer", "day", "cds", "value"], dtype=str
    )
    orders["day"] = pd.to_datetime(orders["day"], format="%Y%m%d")
    end = pd.Timestamp(CALIBRATION_END) + pd.Timedelta(days=1)
    horizon = pd.Timestamp(HORIZON_END) + pd.Timedelta(days=1)
    calibration = orders[orders["day"] < end]
    later = orders[(orders["day"] >= end) & (orders["day"] < horizon)]
    churned = set(calibration["customer"]) - set(later["customer"])
    days = calibration.drop_duplicates(["customer", "day"]).sort_values(["customer", "day"])
    # a gap of 90 days or more to the next order, or to the end of the calibration period
    following = days.groupby("customer")["day"].shift(-1).fillna(end)
    limit = pd.Timedelta(days=DORMANT_ORDER_DAYS)
    fires = (following - days["day"] >= limit) & (days["day"] + limit < end)
    alerted = set(days.loc[fires, "customer"])
    hits = len(alerted & churned)
    return hits / len(alerted), hits / len(churned), len(alerted)


def test_the_recency_rule_matches_an_independent_pandas_computation(
    subset: Path, runs: tuple[Path, Path]
) -> None:
    report = orjson.loads((runs[0] / "report.json").read_bytes())
    dormant = report["metrics"]["customer-dormant"]
    precision, recall, alerted = oracle(subset)
    assert dormant["customers_alerted"] == alerted
    assert dormant["precision"] == pytest.approx(precision, abs=1e-4)
    assert dormant["recall"] == pytest.approx(recall, abs=1e-4)
    assert report["labels"]["population"] == report["input"]["customers"]


def test_two_backtests_give_the_same_report_but_for_generated_at(runs: tuple[Path, Path]) -> None:
    first, second = (orjson.loads((d / "report.json").read_bytes()) for d in runs)
    assert first.pop("generated_at") and second.pop("generated_at")
    assert first == second
    strip = [(d / "report.json").read_bytes().split(b"\n", 2)[2] for d in runs]
    assert strip[0] == strip[1]  # byte-identical after the generated_at line
    alerts = [(d / "alerts.jsonl").read_bytes() for d in runs]
    assert alerts[0] == alerts[1] and alerts[0].count(b"\n") > 100


def test_the_report_has_every_metric_a_roc_and_the_sweep(runs: tuple[Path, Path]) -> None:
    out = runs[0]
    report = orjson.loads((out / "report.json").read_bytes())
    assert set(report["metrics"]) >= {"customer-dormant", "order-rhythm-broken", "health-score"}
    assert set(report["metrics"]["order-rhythm-broken"]) == {
        "alerts",
        "customers_alerted",
        "hits",
        "precision",
        "lift",
        "recall",
        "f1",
        "lead_time_days_median",
        "lead_time_days_p90",
        "alert_load",
    }
    assert 0.0 <= report["health"]["roc"]["auc"] <= 1.0
    rows = report["sweep"]["rows"]
    assert [r["value"] for r in rows] == [90, 105]
    # the default value in the sweep gives the main run's figures for that rule
    assert {k: v for k, v in rows[0].items() if k != "value"} == report["metrics"][
        "customer-dormant"
    ]
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 3 and "src=" not in page  # self-contained
    assert {p.name for p in out.glob("*.svg")} == {"roc.svg", "rules.svg", "sweep.svg"}
