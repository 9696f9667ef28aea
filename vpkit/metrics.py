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


def _initial_guesses(params: int, direction: float) -> list[list[float]]:
    # Starts on standardised data (mean 0, std 1), so they are scale-free: first a curve rising
    # with the linear trend (direction = its sign), then wider/flatter fallbacks.
    if params == 4:
        return [[2.0 * direction, -2.0 * direction, 0.0, 1.0], [4.0 * direction, -4.0 * direction, 0.0, 3.0],
                [direction, -direction, 0.0, 0.3]]
    return [[3.0, 1.5 * direction, 0.0, 0.0, 0.0], [1.0, 0.5 * direction, 0.0, 0.5 * direction, 0.0],
            [6.0, 4.0 * direction, 0.0, 0.0, 0.0]]


def fit_logistic(pred, mos, params: int = 4) -> np.ndarray:
    """Fit the 4- or 5-parameter logistic from ``pred`` to ``mos``; returns the mapped predictions.

    The fit runs on standardised pred and MOS (a reparametrisation that only helps convergence),
    from a start that follows the linear trend, then from fallback starts. Raises :class:`LogisticFitError` when no
    start converges to a finite, non-constant mapping.
    """
    if params not in (4, 5):
        raise ValueError(f"params must be 4 or 5, got {params!r}")
    pred, mos = _as_pair(pred, mos)
    if pred.size <= params:
        raise LogisticFitError(f"a {params}-parameter logistic needs more than {params} samples, got {pred.size}")
    x = (pred - pred.mean()) / pred.std()
    y = (mos - mos.mean()) / mos.std()
    curve = logistic4 if params == 4 else logistic5
    direction = float(np.sign(np.corrcoef(x, y)[0, 1]) or 1.0)
    for start in _initial_guesses(params, direction):
        mapped = _try_fit(curve, x, y, start)
        if mapped is not None:
            return mapped * mos.std() + mos.mean()
    raise LogisticFitError(f"the {params}-parameter logistic fit did not converge on {pred.size} samples")


def _try_fit(curve, x: np.ndarray, y: np.ndarray, start: list[float]) -> np.ndarray | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow in exp and covariance warnings are expected while searching
        try:
            coeffs, _ = optimize.curve_fit(curve, x, y, p0=start, maxfev=20000)
        except (RuntimeError, ValueError, optimize.OptimizeWarning):
            return None
        mapped = curve(x, *coeffs)
    if not np.isfinite(mapped).all() or np.ptp(mapped) == 0:
        return None
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
            warnings.warn(f"{error}; reporting plcc_logistic{params} as NaN", LogisticFitWarning, stacklevel=2)
            result[f"plcc_logistic{params}"] = float("nan")
    result["selection"] = (result["srcc"] + result["plcc"]) / 2.0
    return result
