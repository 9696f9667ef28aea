"""Correlation metrics between predicted scores and MOS.

The paper reports SRCC and PLCC on the raw predictions and selects checkpoints by their mean.
IQA papers often report PLCC after a monotonic logistic mapping instead; both are here, under
names that say which is which.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats

MIN_SAMPLES = 3


class MetricInputError(ValueError):
    """Predictions and MOS cannot be correlated (length, count, non-finite or constant values)."""


class LogisticFitError(RuntimeError):
    """The logistic mapping for ``plcc_logistic`` did not converge to a usable fit."""


class LogisticFitWarning(RuntimeWarning):
    """``evaluate`` reported NaN for a logistic PLCC because its fit failed."""


def _as_pair(pred, mos) -> tuple[np.ndarray, np.ndarray]:
    pred, mos = _as_vector(pred, "pred"), _as_vector(mos, "mos")
    if pred.shape != mos.shape:
        raise MetricInputError(f"pred has {pred.size} values but mos has {mos.size}; they must pair up")
    if pred.size < MIN_SAMPLES:
        raise MetricInputError(f"need at least {MIN_SAMPLES} samples to correlate, got {pred.size}")
    for name, values in (("pred", pred), ("mos", mos)):
        if not np.isfinite(values).all():
            bad = np.flatnonzero(~np.isfinite(values))
            raise MetricInputError(f"{name} has {bad.size} non-finite values (first at index {bad[0]})")
        if np.ptp(values) == 0:
            raise MetricInputError(f"{name} is constant ({values[0]:g} everywhere); correlation is undefined")
    return pred, mos


def _as_vector(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        array = array.squeeze()
        if array.ndim != 1:
            raise MetricInputError(f"{name} must be one score per sample (1-D), got shape {np.shape(values)}")
    return array


def srcc(pred, mos) -> float:
    """Spearman rank correlation on the raw predictions."""
    pred, mos = _as_pair(pred, mos)
    return float(stats.spearmanr(pred, mos)[0])


def plcc(pred, mos) -> float:
    """Pearson linear correlation on the raw predictions (the paper's PLCC)."""
    pred, mos = _as_pair(pred, mos)
    return float(stats.pearsonr(pred, mos)[0])


def krcc(pred, mos) -> float:
    """Kendall rank correlation (tau-b, which handles ties) on the raw predictions."""
    pred, mos = _as_pair(pred, mos)
    return float(stats.kendalltau(pred, mos)[0])


def selection_metric(pred, mos) -> float:
    """The paper's model-selection metric, ``(SRCC + PLCC) / 2`` on raw predictions."""
    return (srcc(pred, mos) + plcc(pred, mos)) / 2.0


def logistic4(x, b1, b2, b3, b4):
    """4-parameter logistic (VQEG): ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``."""
    return (b1 - b2) / (1.0 + np.exp(-(x - b3) / np.abs(b4))) + b2


def logistic5(x, b1, b2, b3, b4, b5):
    """5-parameter logistic (Sheikh et al. 2006): ``b1 (1/2 - 1/(1 + exp(b2 (x - b3)))) + b4 x + b5``."""
    return b1 * (0.5 - 1.0 / (1.0 + np.exp(b2 * (x - b3)))) + b4 * x + b5


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow


def _basis(x: np.ndarray, centre: float, rate: float, params: int) -> np.ndarray:
    # Both curves are linear in all but (centre, rate): 4-param b3 = centre, |b4| = 1/rate, and
    # (b1 - b2, b2) linear; 5-param b3 = centre, b2 = rate, and (b1, b4, b5) linear.
    step = _sigmoid(rate * (x - centre))
    if params == 4:
        return np.column_stack([step, np.ones_like(x)])
    return np.column_stack([step - 0.5, x, np.ones_like(x)])


def _projected_fit(x: np.ndarray, y: np.ndarray, centre: float, log_rate: float, params: int):
    basis = _basis(x, centre, float(np.exp(np.clip(log_rate, *_LOG_RATE_RANGE))), params)
    coeffs = np.linalg.lstsq(basis, y, rcond=None)[0]
    mapped = basis @ coeffs
    return float(np.sum((mapped - y) ** 2)), mapped


# rate range on standardised x: from nearly linear to nearly a step
_LOG_RATE_RANGE = (np.log(1e-3), np.log(1e3))
# the start grid (centres at evenly spaced quantiles of pred, log-rates evenly spaced) and how many of its best
# points are polished: the squared error can have several valleys, so one start is not enough
_GRID_CENTRES, _GRID_RATES, _POLISHED_STARTS, _STEP_GAPS = 21, 15, 6, 1000


def fit_logistic(pred, mos, params: int = 4) -> np.ndarray:
    """Least-squares fit of the 4- or 5-parameter logistic from ``pred`` to ``mos``; returns mapped pred.

    Fitted by variable projection on standardised pred: for each (centre, rate) the coefficients
    the curve is linear in are solved exactly, so only (centre, rate) are searched. Starts: the best
    rate at each of 21 centres spread over pred's whole range (the best 6 kept), the best position of
    the steepest curve (a step) among the gaps between predictions, and Nelder-Mead from the best
    start. Each is polished by scipy's bounded least-squares solver (trust-region reflective, on the
    residuals; the rate stays in [1e-3, 1e3] per standard deviation of pred), and the point with the
    smallest squared error is used: the error can have several valleys and flat stretches where a
    single local search stops short. It cannot diverge. Raises :class:`LogisticFitError` with too
    few samples (``n <= params``) or a non-finite/constant mapping.
    """
    if params not in (4, 5):
        raise ValueError(f"params must be 4 or 5, got {params!r}")
    pred, mos = _as_pair(pred, mos)
    if pred.size <= params:
        raise LogisticFitError(f"a {params}-parameter logistic needs more than {params} samples, "
                               f"got {pred.size}")
    x = (pred - pred.mean()) / pred.std()

    def squared_error(point) -> float:
        return _projected_fit(x, mos, *point, params)[0]

    def residuals(point) -> np.ndarray:
        return _projected_fit(x, mos, *point, params)[1] - mos

    # centres across the whole range of pred (a step can sit in a tail), rates from nearly linear to a step
    # the best rate at each centre; the best few of those (distinct centres: distinct valleys) are polished
    rates = np.linspace(*_LOG_RATE_RANGE, _GRID_RATES)
    per_centre = [min((np.array([c, r]) for r in rates), key=squared_error)
                  for c in np.quantile(x, np.linspace(0.0, 1.0, _GRID_CENTRES))]
    starts = sorted(per_centre, key=squared_error)[:_POLISHED_STARTS]
    # at the steepest rate the curve is a step, whose error is flat between neighbouring predictions (no
    # gradient to follow): try it in every gap between them (at most _STEP_GAPS, evenly spread by rank)
    levels = np.unique(x)
    gaps = (levels[1:] + levels[:-1]) / 2
    if gaps.size > _STEP_GAPS:
        gaps = gaps[np.linspace(0, gaps.size - 1, _STEP_GAPS).round().astype(int)]
    if gaps.size:
        starts.append(min((np.array([c, _LOG_RATE_RANGE[1]]) for c in gaps), key=squared_error))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        found = optimize.minimize(squared_error, starts[0], method="Nelder-Mead",
                                  options={"xatol": 1e-6, "fatol": 1e-12, "maxiter": 2000})
        refined = np.array([found.x[0], np.clip(found.x[1], *_LOG_RATE_RANGE)])
        candidates = [*starts, refined] if np.isfinite(refined).all() else list(starts)
        for start in list(candidates):
            try:
                polished = optimize.least_squares(
                    residuals, start, method="trf", xtol=1e-12, ftol=1e-12, gtol=1e-12,
                    bounds=([-np.inf, _LOG_RATE_RANGE[0]], [np.inf, _LOG_RATE_RANGE[1]]))
            except ValueError:  # non-finite residuals at the start: keep the unpolished points
                continue
            candidates.append(polished.x)
    best = min(candidates, key=squared_error)
    mapped = _projected_fit(x, mos, *best, params)[1]
    if not np.isfinite(mapped).all() or np.ptp(mapped) == 0:
        raise LogisticFitError(f"the {params}-parameter logistic fit on {pred.size} samples gave a "
                               "constant or non-finite mapping")
    return mapped


def plcc_logistic(pred, mos, params: int = 4) -> float:
    """PLCC between MOS and the predictions mapped by a fitted 4- or 5-parameter logistic.

    The IQA convention (VQEG); the mapping absorbs the sign, so a perfectly inverse predictor
    scores near +1 here while :func:`plcc` is negative. Raises :class:`LogisticFitError` on failure.
    """
    mapped = fit_logistic(pred, mos, params)
    _, mos = _as_pair(pred, mos)
    return float(stats.pearsonr(mapped, mos)[0])


def plcc_logistic4(pred, mos) -> float:
    """PLCC after the 4-parameter logistic fit."""
    return plcc_logistic(pred, mos, params=4)


def plcc_logistic5(pred, mos) -> float:
    """PLCC after the 5-parameter logistic fit."""
    return plcc_logistic(pred, mos, params=5)


def evaluate(pred, mos) -> dict[str, float]:
    """All metrics: ``srcc, plcc, krcc, plcc_logistic4, plcc_logistic5, selection``.

    Raises :class:`MetricInputError` for unusable input. A logistic fit that fails gives NaN for
    its key and a :class:`LogisticFitWarning`; the raw-prediction metrics are always exact.
    """
    pred, mos = _as_pair(pred, mos)
    result = {"srcc": srcc(pred, mos), "plcc": plcc(pred, mos), "krcc": krcc(pred, mos)}
    for params in (4, 5):
        try:
            result[f"plcc_logistic{params}"] = plcc_logistic(pred, mos, params)
        except LogisticFitError as error:
            message = f"{error}; reporting plcc_logistic{params} as NaN"
            warnings.warn(message, LogisticFitWarning, stacklevel=2)
            result[f"plcc_logistic{params}"] = float("nan")
    result["selection"] = (result["srcc"] + result["plcc"]) / 2.0
    return result
