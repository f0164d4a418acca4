"""Tests for streams.clv: fits and predictions against lifetimes 0.11.3 on CDNOW, model file.

Calibration: CDNOW_master.txt (shipped in lifetimes' wheel), summary up to 1997-09-30, days.
23,570 customers; 9,451 with a repeat purchase, 9,450 of them with positive monetary value.
Values seen (lifetimes 0.11.3, scipy 1.17, numpy 2.4):
  BG/NBD      lifetimes r 0.251624  alpha 33.52262  a 0.723433  b 2.161087
              ours      r 0.251624  alpha 33.52260  a 0.723434  b 2.161088
  Gamma-Gamma lifetimes p 6.275359  q 3.624450  v 14.983689
              ours      p 6.275359  q 3.624450  v 14.983687
(The other engineer saw r 0.2516, alpha 33.52, a 0.7234, b 2.1611: the same.)
"""

from __future__ import annotations

import importlib.resources
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import hyp2f1

lifetimes = pytest.importorskip("lifetimes")
pd = pytest.importorskip("pandas")

from lifetimes import BetaGeoFitter, GammaGammaFitter  # noqa: E402
from lifetimes.utils import summary_data_from_transaction_data  # noqa: E402

from streams.clv import (  # noqa: E402
    BgNbdFields,
    BgNbdParams,
    ClvModel,
    GammaGammaFields,
    GammaGammaParams,
    bgnbd_log_likelihood,
    clv,
    expected_avg_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    load_model,
    p_alive,
    save_model,
)

CALIBRATION_END = "1997-09-30"


@pytest.fixture(scope="module")
def summary() -> Any:
    path = importlib.resources.files("lifetimes.datasets") / "CDNOW_master.txt"
    with importlib.resources.as_file(path) as file:
        # A header line, then: customer_id date(YYYYMMDD) number_of_cds dollar_value
        orders = pd.read_csv(file, sep=r"\s+", dtype={"customer_id": str, "date": str})
    orders["date"] = pd.to_datetime(orders["date"], format="%Y%m%d")
    return summary_data_from_transaction_data(
        orders,
        "customer_id",
        "date",
        monetary_value_col="dollar_value",
        observation_period_end=CALIBRATION_END,
        freq="D",
    )


def _rfm(summary: Any) -> tuple[Any, Any, Any]:
    return (
        summary["frequency"].to_numpy(),
        summary["recency"].to_numpy(),
        summary["T"].to_numpy(),
    )


@pytest.fixture(scope="module")
def bgf(summary: Any) -> Any:
    return BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])


@pytest.fixture(scope="module")
def ggf(summary: Any) -> Any:
    # lifetimes refuses monetary <= 0; fit_gamma_gamma drops those rows itself.
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    return GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])


@pytest.fixture(scope="module")
def sample(summary: Any) -> Any:
    """300 customers: a random 290 and the 10 most frequent buyers."""
    top = summary.nlargest(10, "frequency")
    rest = summary.drop(top.index).sample(290, random_state=7)
    return pd.concat([rest, top])


def _lifetimes_bg(bgf: Any) -> BgNbdParams:
    return BgNbdParams(**{k: float(bgf.params_[k]) for k in ("r", "alpha", "a", "b")})


def _lifetimes_gg(ggf: Any) -> GammaGammaParams:
    return GammaGammaParams(**{k: float(ggf.params_[k]) for k in ("p", "q", "v")})


# ------------------------------------------------------------------------------------------
# Fits against lifetimes
# ------------------------------------------------------------------------------------------


def test_bgnbd_fit_matches_lifetimes(summary: Any, bgf: Any) -> None:
    frequency, recency, T = _rfm(summary)
    ours = fit_bgnbd(frequency, recency, T)
    theirs = _lifetimes_bg(bgf)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(ours, name) == pytest.approx(getattr(theirs, name), rel=1e-2), name
    # Ours is an optimum at least as good as lifetimes'.
    ll_ours = bgnbd_log_likelihood(ours, frequency, recency, T)
    ll_theirs = bgnbd_log_likelihood(theirs, frequency, recency, T)
    assert ll_ours >= ll_theirs - 1e-6 * abs(ll_theirs)


def test_bgnbd_penalized_fit_matches_lifetimes(summary: Any) -> None:
    frequency, recency, T = _rfm(summary)
    ours = fit_bgnbd(frequency, recency, T, penalizer=0.01)
    fitted = BetaGeoFitter(penalizer_coef=0.01).fit(frequency, recency, T)
    theirs = _lifetimes_bg(fitted)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(ours, name) == pytest.approx(getattr(theirs, name), rel=1e-2), name


def test_gamma_gamma_fit_matches_lifetimes(summary: Any, ggf: Any) -> None:
    ours = fit_gamma_gamma(summary["frequency"].to_numpy(), summary["monetary_value"].to_numpy())
    theirs = _lifetimes_gg(ggf)
    for name in ("p", "q", "v"):
        assert getattr(ours, name) == pytest.approx(getattr(theirs, name), rel=1e-2), name


# ------------------------------------------------------------------------------------------
# Predictions against lifetimes, with lifetimes' parameters
# ------------------------------------------------------------------------------------------


def _rows(sample: Any) -> list[tuple[float, float, float, float]]:
    return list(
        zip(
            sample["frequency"].astype(float),
            sample["recency"].astype(float),
            sample["T"].astype(float),
            sample["monetary_value"].astype(float),
            strict=True,
        )
    )


@pytest.mark.parametrize("t", [30.0, 90.0, 365.0, 3650.0])
def test_expected_purchases_matches_lifetimes(bgf: Any, sample: Any, t: float) -> None:
    bg = _lifetimes_bg(bgf)
    theirs = bgf.conditional_expected_number_of_purchases_up_to_time(
        t, sample["frequency"], sample["recency"], sample["T"]
    )
    ours = [expected_purchases(bg, t, x, t_x, age) for x, t_x, age, _ in _rows(sample)]
    assert ours == pytest.approx(list(theirs), rel=1e-6)


@pytest.mark.parametrize(("x", "t"), [(200, 36500.0), (300, 365000.0), (150, 100000.0)])
def test_expected_purchases_hyp2f1_fallback_matches_lifetimes(bgf: Any, x: int, t: float) -> None:
    bg = _lifetimes_bg(bgf)
    t_x, age = 200.0, 272.0
    z = t / (bg.alpha + age + t)
    assert math.isinf(hyp2f1(bg.r + x, bg.b + x, bg.a + bg.b + x - 1, z))  # the fallback path
    theirs = bgf.conditional_expected_number_of_purchases_up_to_time(
        t, np.array([x]), np.array([t_x]), np.array([age])
    )
    assert expected_purchases(bg, t, x, t_x, age) == pytest.approx(float(theirs[0]), rel=1e-6)


def test_clv_sums_discounted_monthly_purchases_on_the_fallback_path(bgf: Any) -> None:
    bg = _lifetimes_bg(bgf)
    gg = GammaGammaParams(p=6.3, q=3.6, v=15.0)
    x, t_x, age, m, months = 300, 200.0, 272.0, 25.0, 400
    value = expected_avg_value(gg, x, m)
    cumulative = [expected_purchases(bg, 30.0 * i, x, t_x, age) for i in range(months + 1)]
    expected = sum(
        value * (cumulative[i] - cumulative[i - 1]) / 1.02**i for i in range(1, months + 1)
    )
    got = clv(bg, gg, x, t_x, age, m, months=months, monthly_discount=0.02)
    assert got == pytest.approx(expected, rel=1e-9)


def test_expected_purchases_zero_horizon(bgf: Any) -> None:
    assert expected_purchases(_lifetimes_bg(bgf), 0.0, 3, 100.0, 200.0) == 0.0


def test_p_alive_matches_lifetimes(bgf: Any, sample: Any) -> None:
    bg = _lifetimes_bg(bgf)
    theirs = bgf.conditional_probability_alive(
        sample["frequency"].to_numpy(), sample["recency"].to_numpy(), sample["T"].to_numpy()
    )
    ours = [p_alive(bg, x, t_x, age) for x, t_x, age, _ in _rows(sample)]
    assert ours == pytest.approx(list(theirs), rel=1e-6)


def test_expected_avg_value_matches_lifetimes(ggf: Any, sample: Any) -> None:
    gg = _lifetimes_gg(ggf)
    theirs = ggf.conditional_expected_average_profit(sample["frequency"], sample["monetary_value"])
    ours = [expected_avg_value(gg, x, m) for x, _, _, m in _rows(sample)]
    assert ours == pytest.approx(list(theirs), rel=1e-6)
    assert expected_avg_value(gg, 0, 0.0) == pytest.approx(gg.v * gg.p / (gg.q - 1))


def test_clv_matches_lifetimes(bgf: Any, ggf: Any, sample: Any) -> None:
    bg, gg = _lifetimes_bg(bgf), _lifetimes_gg(ggf)
    theirs = ggf.customer_lifetime_value(
        bgf,
        sample["frequency"],
        sample["recency"],
        sample["T"],
        sample["monetary_value"],
        time=12,
        discount_rate=0.01,
        freq="D",
    )
    ours = [
        clv(bg, gg, x, t_x, age, m, months=12, monthly_discount=0.01)
        for x, t_x, age, m in _rows(sample)
    ]
    assert ours == pytest.approx(list(theirs), rel=1e-6)


def test_clv_one_month_is_discounted_month_of_purchases() -> None:
    bg = BgNbdParams(r=0.25, alpha=33.5, a=0.72, b=2.16)
    gg = GammaGammaParams(p=6.3, q=3.6, v=15.0)
    expected = expected_purchases(bg, 30.0, 4, 150.0, 250.0) * expected_avg_value(gg, 4, 40.0)
    got = clv(bg, gg, 4, 150.0, 250.0, 40.0, months=1, monthly_discount=0.05)
    assert got == pytest.approx(expected / 1.05, rel=1e-12)
    assert clv(bg, gg, 4, 150.0, 250.0, 40.0, months=0) == 0.0


# ------------------------------------------------------------------------------------------
# Units
# ------------------------------------------------------------------------------------------


def test_p_alive_is_one_without_repeat_purchases() -> None:
    bg = BgNbdParams(r=0.25, alpha=33.5, a=0.72, b=2.16)
    assert p_alive(bg, 0, 0.0, 200.0) == 1.0
    assert p_alive(bg, 0, 0.0, 1.0) == 1.0
    assert 0.0 < p_alive(bg, 2, 10.0, 200.0) < 1.0


def test_fit_on_empty_arrays_is_an_error() -> None:
    empty = np.array([], dtype=float)
    with pytest.raises(ValueError, match="empty"):
        fit_bgnbd(empty, empty, empty)
    with pytest.raises(ValueError, match="no customer"):
        fit_gamma_gamma(empty, empty)


def test_fit_without_repeat_purchases_is_an_error() -> None:
    zeros = np.zeros(5)
    with pytest.raises(ValueError, match="repeat purchase"):
        fit_bgnbd(zeros, zeros, np.full(5, 100.0))
    with pytest.raises(ValueError, match="repeat purchase"):
        fit_gamma_gamma(np.array([0.0, 2.0]), np.array([10.0, 0.0]))


def test_fit_without_finite_optimum_is_an_error() -> None:
    # One customer: the likelihood keeps growing as a -> 0 and b -> 0.
    with pytest.raises(ValueError, match="did not converge"):
        fit_bgnbd([1.0], [5.0], [10.0])


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "message"),
    [
        ([1.0, 2.0], [5.0], [10.0, 10.0], "differ in length"),
        ([1.5], [5.0], [10.0], "whole numbers"),
        ([1.0], [12.0], [10.0], "exceed T"),
        ([0.0], [3.0], [10.0], "recency must be 0"),
        ([1.0], [math.nan], [10.0], "NaN"),
    ],
)
def test_fit_bgnbd_rejects_invalid_input(
    frequency: list[float], recency: list[float], T: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fit_bgnbd(frequency, recency, T)


def test_params_must_be_positive() -> None:
    with pytest.raises(ValueError, match="alpha"):
        BgNbdParams(r=1.0, alpha=0.0, a=1.0, b=1.0)
    with pytest.raises(ValueError, match="q"):
        GammaGammaParams(p=1.0, q=math.inf, v=1.0)


def _model(**changes: Any) -> ClvModel:
    fields: dict[str, Any] = {
        "fitted_at": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "calibration_end": date(1997, 9, 30),
        "customers": 23570,
        "repeat_customers": 9451,
        "bgnbd": BgNbdFields(r=0.2516240114, alpha=33.5226161922892, a=0.72343, b=2.16108),
        "gamma_gamma": GammaGammaFields(p=6.27535859283659, q=3.624450210390983, v=14.98),
        "log_likelihood": -142726.05923071993,
        "source": "data/orders.csv",
    }
    fields.update(changes)
    return ClvModel(**fields)


def test_model_file_round_trip(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "clv.yaml"
    save_model(path, model)
    text = path.read_text()
    assert text.startswith("#")
    assert "format_version: 1" in text
    loaded = load_model(path)
    assert loaded == model
    assert loaded.bg() == BgNbdParams(r=0.2516240114, alpha=33.5226161922892, a=0.72343, b=2.16108)
    assert loaded.gg() == GammaGammaParams(p=6.27535859283659, q=3.624450210390983, v=14.98)
    assert [p.name for p in tmp_path.iterdir()] == ["clv.yaml"]  # no temporary left behind


def test_model_file_without_gamma_gamma(tmp_path: Path) -> None:
    path = tmp_path / "clv.yaml"
    save_model(path, _model(gamma_gamma=None))
    loaded = load_model(path)
    assert loaded.gamma_gamma is None
    assert loaded.gg() is None


def test_model_requires_aware_fitted_at() -> None:
    with pytest.raises(ValueError, match="fitted_at"):
        _model(fitted_at=datetime(2024, 5, 1, 12, 30))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("format_version: 1", "format_version: 2"), "format_version 2"),
        (lambda t: t.replace("format_version: 1\n", ""), "missing format_version"),
        (lambda t: t.replace("  alpha:", "  alpah:"), "bgnbd.alpha"),
        (lambda t: t.replace("customers: 23570", "customers: many"), "customers"),
        (lambda t: t.replace("  r: 0.2516240114", "  r: -1.0"), "bgnbd.r"),
        (lambda t: t + "oops: [unbalanced\n", "not valid YAML"),
        (lambda t: "- just a list\n", "expected a mapping"),
    ],
)
def test_load_model_rejects_broken_file(tmp_path: Path, edit: Any, message: str) -> None:
    path = tmp_path / "broken.yaml"
    save_model(path, _model())
    path.write_text(edit(path.read_text()))
    with pytest.raises(ValueError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_load_model_on_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ValueError, match="cannot read") as info:
        load_model(path)
    assert str(path) in str(info.value)
