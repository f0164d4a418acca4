"""Customer lifetime value: BG/NBD and Gamma-Gamma fits, per-customer predictions, model file.

The BG/NBD model (Fader, Hardie & Lee 2005) says how many repeat purchases a customer will
make and how likely they are still "alive"; the Gamma-Gamma model (Fader, Hardie & Lee 2005,
Hardie's note 025) says what an average purchase of theirs is worth. Both are fitted by
maximum likelihood on a calibration summary of the orders, with the same likelihoods, time
scaling and formulas as the ``lifetimes`` 0.11.3 package (``BetaGeoFitter``,
``GammaGammaFitter``, ``customer_lifetime_value``), which the tests use as an oracle.

Inputs follow lifetimes' definitions, all in days: ``x`` (frequency) is the number of days
with a repeat purchase, ``t_x`` (recency) the age of the customer at their last purchase
(0 when ``x == 0``), ``T`` their age at the end of the calibration period, ``m`` (monetary)
the mean value of their repeat purchases.

The fits use numpy on whole data sets; the predictions are scalar functions on ``math`` and
``scipy.special.hyp2f1``, cheap enough to run per customer in a stream worker. The fitted
parameters live in a versioned, human-readable YAML file (:class:`ClvModel`,
:func:`save_model`, :func:`load_model`).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError


@cache
def _special() -> Any:
    """scipy.special, imported when a CLV is first worked out (a fifth of a second at
    start-up otherwise, for every command, whether a CLV model is set or not)."""
    import scipy.special

    return scipy.special


FORMAT_VERSION: Final = 1
"""The model file format this module writes and reads."""

DAYS_PER_MONTH = 30.0
"""lifetimes' month for ``freq="D"`` in :func:`clv`."""

_GRAD_TOL = 1e-5  # max |gradient| (per customer, log-parameters) accepted as an optimum
_LOG_PARAM_LIMIT = 15.0  # |log parameter| (fit units) beyond which it ran off to 0 or infinity

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """BG/NBD parameters, time in days: purchase rate ~ Gamma(r, alpha), dropout ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        _check_positive(self, ("r", "alpha", "a", "b"))


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Gamma-Gamma parameters of the spend per purchase (shape p; scale ~ Gamma(q, v))."""

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        _check_positive(self, ("p", "q", "v"))


def _check_positive(obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{type(obj).__name__}.{name} must be finite and > 0, got {value!r}")


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


def _as_float_array(name: str, values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _rfm_arrays(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = _as_float_array("frequency", frequency)
    t_x = _as_float_array("recency", recency)
    age = _as_float_array("T", T)
    if not (len(x) == len(t_x) == len(age)):
        raise ValueError(
            f"frequency, recency and T differ in length ({len(x)}, {len(t_x)}, {len(age)})"
        )
    if len(x) == 0:
        raise ValueError("cannot fit BG/NBD on empty input (no customers)")
    if np.any(x < 0) or np.any(x != np.floor(x)):
        raise ValueError("frequency must hold non-negative whole numbers")
    if np.any(t_x < 0):
        raise ValueError("recency must be >= 0")
    if np.any(t_x > age):
        raise ValueError("recency must not exceed T")
    if np.any(t_x[x == 0] != 0):
        raise ValueError("recency must be 0 where frequency is 0")
    if not np.any(age > 0):
        raise ValueError("T must be > 0 for at least one customer")
    return x, t_x, age


def _bgnbd_terms(
    params: FloatArray, x: FloatArray, t_x: FloatArray, age: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-row log-likelihood and its gradient with respect to (r, alpha, a, b)."""
    special = _special()
    r, alpha, a, b = params
    repeat = x > 0
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * math.log(alpha)
    a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    log_at = np.log(alpha + age)
    log_ar = np.log(alpha + t_x)
    a3 = -(r + x) * log_at
    a4 = math.log(a) - np.log(b + np.maximum(x, 1.0) - 1.0) - (r + x) * log_ar
    top = np.where(repeat, np.maximum(a3, a4), a3)
    e3 = np.exp(a3 - top)
    e4 = np.where(repeat, np.exp(a4 - top), 0.0)
    total = e3 + e4
    ll = a1 + a2 + np.log(total) + top
    w3 = e3 / total
    w4 = e4 / total
    d_r = special.digamma(r + x) - special.digamma(r) + math.log(alpha) - w3 * log_at - w4 * log_ar
    d_alpha = r / alpha - (r + x) * (w3 / (alpha + age) + w4 / (alpha + t_x))
    psi_ab = special.digamma(a + b)
    psi_abx = special.digamma(a + b + x)
    d_a = psi_ab - psi_abx + w4 / a
    d_b = (
        psi_ab
        + special.digamma(b + x)
        - special.digamma(b)
        - psi_abx
        - w4 / (b + np.maximum(x, 1.0) - 1.0)
    )
    return ll, np.stack([d_r, d_alpha, d_a, d_b])


def _group(*columns: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Distinct rows of the columns and how many times each occurs."""
    rows, counts = np.unique(np.column_stack(columns), axis=0, return_counts=True)
    return [rows[:, i] for i in range(rows.shape[1])], counts.astype(np.float64)


def _minimize(
    objective: Any, x0: FloatArray, args: tuple[Any, ...], what: str
) -> tuple[FloatArray, float]:
    """Minimise a (value, gradient) objective: an optimum, or ValueError."""
    # only fitting needs the optimiser, and importing it costs a third of a second: the
    # worker, the backtest and every other command use the fitted model's formulas only
    from scipy.optimize import minimize

    def value_only(point: FloatArray) -> float:
        return float(objective(point, *args)[0])

    with np.errstate(all="ignore"):
        best = minimize(objective, x0, args=args, jac=True, method="BFGS", tol=1e-10).x
        # BFGS can stop on "precision loss" next to the optimum or wander off from a poor
        # start: polish with L-BFGS-B, then restart from a derivative-free simplex search.
        if not _converged(objective, best, args):
            start = best if _finite(objective, best, args) else x0
            best = minimize(objective, start, args=args, jac=True, method="L-BFGS-B").x
        if not _converged(objective, best, args):
            start = best if _finite(objective, best, args) else x0
            simplex = minimize(value_only, start, method="Nelder-Mead").x
            best = minimize(objective, simplex, args=args, jac=True, method="BFGS", tol=1e-10).x
        if not _converged(objective, best, args):
            raise ValueError(
                f"{what} maximum likelihood did not converge to a finite optimum (parameters "
                "ran off towards 0 or infinity, or the optimiser failed): too few or too "
                "uniform customers? try a penalizer"
            )
        value = float(objective(best, *args)[0])
    return np.asarray(best, dtype=np.float64), value


def _finite(objective: Any, point: FloatArray, args: tuple[Any, ...]) -> bool:
    return bool(np.all(np.isfinite(point))) and math.isfinite(objective(point, *args)[0])


def _converged(objective: Any, point: FloatArray, args: tuple[Any, ...]) -> bool:
    """A finite point, no parameter run off towards 0 or infinity, a vanishing gradient."""
    if not np.all(np.isfinite(point)) or np.any(np.abs(point) > _LOG_PARAM_LIMIT):
        return False
    value, grad = objective(point, *args)
    return math.isfinite(value) and bool(np.max(np.abs(grad)) < _GRAD_TOL)


def _bgnbd_objective(
    log_params: FloatArray,
    x: FloatArray,
    t_x: FloatArray,
    age: FloatArray,
    weights: FloatArray,
    penalizer: float,
) -> tuple[float, FloatArray]:
    params = np.exp(log_params)
    ll, grad = _bgnbd_terms(params, x, t_x, age)
    total = weights.sum()
    value = -float(weights @ ll) / total + penalizer * float(params @ params)
    d_log = -(grad @ weights) / total * params + 2.0 * penalizer * params * params
    if not np.isfinite(value):
        return math.inf, np.zeros_like(log_params)
    return value, d_log


def fit_bgnbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    *,
    penalizer: float = 0.0,
) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters for customers' (frequency, recency, T) in days.

    The objective is lifetimes' ``BetaGeoFitter`` one: the mean log-likelihood on time scaled
    so that the oldest customer has age 1, minus ``penalizer`` times the sum of the squared
    (scaled) parameters. Raises ValueError on invalid or empty input, on data with no repeat
    purchase, or when the optimiser does not converge.
    """
    x, t_x, age = _rfm_arrays(frequency, recency, T)
    if not np.any(x > 0):
        raise ValueError("cannot fit BG/NBD: no customer has a repeat purchase")
    if penalizer < 0 or not math.isfinite(penalizer):
        raise ValueError(f"penalizer must be finite and >= 0, got {penalizer!r}")
    scale = 1.0 / float(age.max())  # lifetimes' _scale_time: the oldest customer has age 1
    (gx, gt, gage), weights = _group(x, t_x * scale, age * scale)
    log_params, _ = _minimize(
        _bgnbd_objective, np.full(4, 0.1), (gx, gt, gage, weights, penalizer), "BG/NBD"
    )
    r, alpha, a, b = (float(v) for v in np.exp(log_params))
    return BgNbdParams(r=r, alpha=alpha / scale, a=a, b=b)


def bgnbd_log_likelihood(
    bg: BgNbdParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> float:
    """Total BG/NBD log-likelihood of the customers' (frequency, recency, T) in days."""
    x, t_x, age = _rfm_arrays(frequency, recency, T)
    params = np.array([bg.r, bg.alpha, bg.a, bg.b])
    ll, _ = _bgnbd_terms(params, x, t_x, age)
    return float(ll.sum())


def _gamma_gamma_objective(
    log_params: FloatArray, x: FloatArray, m: FloatArray, weights: FloatArray
) -> tuple[float, FloatArray]:
    special = _special()
    p, q, v = np.exp(log_params)
    px = p * x
    log_xmv = np.log(x * m + v)
    ll = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * math.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_xmv
    )
    psi_pxq = special.digamma(px + q)
    d_p = x * (psi_pxq - special.digamma(px) + np.log(m) + np.log(x) - log_xmv)
    d_q = psi_pxq - special.digamma(q) + math.log(v) - log_xmv
    d_v = q / v - (px + q) / (x * m + v)
    total = weights.sum()
    value = -float(weights @ ll) / total
    if not np.isfinite(value):
        return math.inf, np.zeros_like(log_params)
    grad = np.array([weights @ d_p, weights @ d_q, weights @ d_v]) / total
    return value, -grad * np.array([p, q, v])


def fit_gamma_gamma(frequency: ArrayLike, monetary: ArrayLike) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters (lifetimes' ``GammaGammaFitter`` likelihood).

    Only customers with ``frequency > 0`` and ``monetary > 0`` take part; raises ValueError
    when there are none, on invalid input, or when the optimiser does not converge.
    """
    x = _as_float_array("frequency", frequency)
    m = _as_float_array("monetary", monetary)
    if len(x) != len(m):
        raise ValueError(f"frequency and monetary differ in length ({len(x)}, {len(m)})")
    keep = (x > 0) & (m > 0)
    if not np.any(keep):
        raise ValueError(
            "cannot fit Gamma-Gamma: no customer with a repeat purchase of positive value"
        )
    x, m = x[keep], m[keep]
    # The likelihood is equivariant in the money unit (m -> s*m, v -> s*v): fit on a unit
    # near 1 for conditioning and convert v back.
    scale = 1.0 / float(np.median(m))
    (gx, gm), weights = _group(x, m * scale)
    log_params, _ = _minimize(
        _gamma_gamma_objective, np.full(3, 0.1), (gx, gm, weights), "Gamma-Gamma"
    )
    p, q, v = (float(val) for val in np.exp(log_params))
    return GammaGammaParams(p=p, q=q, v=v / scale)


# --------------------------------------------------------------------------------------------
# Scalar predictions
# --------------------------------------------------------------------------------------------


def _ln_hyp(ha: float, hb: float, hc: float, z: float, direct: float) -> float:
    """log 2F1(ha, hb; hc; z) from its direct value, by Euler's transformation if need be."""
    special = _special()
    if direct > 0 and math.isfinite(direct):
        return math.log(direct)
    alt = float(special.hyp2f1(hc - ha, hc - hb, hc, z))
    return math.log(alt) + (hc - ha - hb) * math.log1p(-z)


def expected_purchases(bg: BgNbdParams, t: float, x: float, t_x: float, T: float) -> float:
    """Expected number of repeat purchases in the next ``t`` days of a customer (x, t_x, T)."""
    special = _special()
    r, alpha, a, b = bg.r, bg.alpha, bg.a, bg.b
    ha = r + x
    hb = b + x
    hc = a + b + x - 1.0
    z = t / (alpha + T + t)
    ln_hyp = _ln_hyp(ha, hb, hc, z, float(special.hyp2f1(ha, hb, hc, z)))
    first = hc / (a - 1.0)
    second = 1.0 - math.exp(ln_hyp + ha * math.log((alpha + T) / (alpha + t + T)))
    denominator = 1.0
    if x > 0:
        denominator += (a / (b + x - 1.0)) * ((alpha + T) / (alpha + t_x)) ** ha
    return first * second / denominator


def p_alive(bg: BgNbdParams, x: float, t_x: float, T: float) -> float:
    """Probability that a customer (x, t_x, T) is still active; 1.0 when ``x == 0``."""
    if x == 0:
        return 1.0
    log_div = (bg.r + x) * math.log((bg.alpha + T) / (bg.alpha + t_x)) + math.log(
        bg.a / (bg.b + x - 1.0)
    )
    if log_div > 0:
        e = math.exp(-log_div)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(log_div))


def expected_avg_value(gg: GammaGammaParams, x: float, m: float) -> float:
    """Expected value of a customer's future purchase given x purchases averaging ``m``.

    For ``x == 0`` this is the population mean spend per purchase.
    """
    p, q, v = gg.p, gg.q, gg.v
    individual_weight = p * x / (p * x + q - 1.0)
    population_mean = v * p / (q - 1.0)
    return (1.0 - individual_weight) * population_mean + individual_weight * m


def clv(
    bg: BgNbdParams,
    gg: GammaGammaParams,
    x: float,
    t_x: float,
    T: float,
    m: float,
    *,
    months: int = 12,
    monthly_discount: float = 0.01,
) -> float:
    """Discounted value of a customer's expected purchases over the next ``months`` months.

    lifetimes' ``customer_lifetime_value`` with ``freq="D"``: 30-day months, each month's
    expected purchases times :func:`expected_avg_value`, discounted by ``monthly_discount``
    per month.
    """
    special = _special()
    if months <= 0:
        return 0.0
    r, alpha, a, b = bg.r, bg.alpha, bg.a, bg.b
    ha = r + x
    hb = b + x
    hc = a + b + x - 1.0
    base = alpha + T
    # E(t) = scale * (1 - S(t)), S(t) = 2F1(ha, hb; hc; z) * (1 - z) ** ha, z = t / (base + t).
    # One vectorised hyp2f1 call for all month ends: its per-call overhead dominates otherwise.
    zs = [t / (base + t) for t in [DAYS_PER_MONTH * i for i in range(1, months + 1)]]
    direct = special.hyp2f1(ha, hb, hc, zs).tolist()
    scale = hc / (a - 1.0)
    if x > 0:
        scale /= 1.0 + (a / (b + x - 1.0)) * (base / (alpha + t_x)) ** ha
    step = 1.0 / (1.0 + monthly_discount)
    discount = 1.0
    previous = 1.0  # S(0)
    total = 0.0
    for z, h in zip(zs, direct, strict=True):
        if 0.0 < h < math.inf:
            current = h * (1.0 - z) ** ha
        else:
            current = math.exp(_ln_hyp(ha, hb, hc, z, h) + ha * math.log1p(-z))
        discount *= step
        total += (previous - current) * discount
        previous = current
    return total * scale * expected_avg_value(gg, x, m)


# --------------------------------------------------------------------------------------------
# Model file
# --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BgNbdFields(_Strict):
    """BG/NBD parameters as stored in the model file (time in days)."""

    r: float = Field(gt=0, allow_inf_nan=False)
    alpha: float = Field(gt=0, allow_inf_nan=False)
    a: float = Field(gt=0, allow_inf_nan=False)
    b: float = Field(gt=0, allow_inf_nan=False)


class GammaGammaFields(_Strict):
    """Gamma-Gamma parameters as stored in the model file."""

    p: float = Field(gt=0, allow_inf_nan=False)
    q: float = Field(gt=0, allow_inf_nan=False)
    v: float = Field(gt=0, allow_inf_nan=False)


class ClvModel(_Strict):
    """A fitted CLV model: its parameters and where and when they came from."""

    format_version: Literal[1] = FORMAT_VERSION
    fitted_at: AwareDatetime
    calibration_end: date
    customers: int = Field(ge=0)
    repeat_customers: int = Field(ge=0)
    bgnbd: BgNbdFields
    gamma_gamma: GammaGammaFields | None = None
    log_likelihood: float = Field(allow_inf_nan=False)
    """Total BG/NBD log-likelihood of the calibration data (:func:`bgnbd_log_likelihood`)."""
    source: str
    """The orders file the model was fitted on."""

    def bg(self) -> BgNbdParams:
        """The BG/NBD parameters."""
        f = self.bgnbd
        return BgNbdParams(r=f.r, alpha=f.alpha, a=f.a, b=f.b)

    def gg(self) -> GammaGammaParams | None:
        """The Gamma-Gamma parameters, or None when the model has none."""
        f = self.gamma_gamma
        return None if f is None else GammaGammaParams(p=f.p, q=f.q, v=f.v)


_HEADER = (
    f"# churnguard CLV model (BG/NBD + Gamma-Gamma), format {FORMAT_VERSION}; "
    "written by streams.clv.save_model\n"
)


def save_model(path: str | os.PathLike[str], model: ClvModel) -> None:
    """Write the model to ``path`` as YAML with a comment header, replacing it atomically."""
    target = Path(path)
    text = _HEADER + yaml.safe_dump(
        model.model_dump(mode="json"), sort_keys=False, default_flow_style=False
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_model(path: str | os.PathLike[str]) -> ClvModel:
    """Read a model written by :func:`save_model`.

    Raises ValueError naming the file and the problem when it cannot be read, is not YAML,
    has an unknown ``format_version``, or has missing or invalid fields.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"CLV model {path}: cannot read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"CLV model {path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"CLV model {path}: expected a mapping, got {type(data).__name__}")
    if "format_version" not in data:
        raise ValueError(f"CLV model {path}: missing format_version")
    version = data["format_version"]
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ValueError(
            f"CLV model {path}: unknown format_version {version!r} "
            f"(this churnguard reads {FORMAT_VERSION})"
        )
    try:
        return ClvModel.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(f"CLV model {path}: {problems}") from exc
