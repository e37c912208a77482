"""Risk figures of a daily equity curve: drawdowns and historical VaR / expected shortfall
(spec 004 §ml-assets-analytics 仕様 v1 ``GET /metrics/risk``; spec 002 VaR (historical)).

Pure numpy: arrays in, floats out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pairdesk.quant.metrics import max_drawdown

__all__ = ["EquityRisk", "equity_risk", "historical_var_es", "simple_returns"]


def simple_returns(equity: npt.ArrayLike) -> np.ndarray:
    """Period returns ``r_t = E_t / E_{t-1} - 1`` of an equity series.

    Parameters
    ----------
    equity : array_like of float, shape (n,)
        Equity values (> 0), one per period (day), in time order.

    Returns
    -------
    ndarray, shape (max(n - 1, 0),)
        Fractions (0.01 = +1 %).

    Raises
    ------
    ValueError
        If an equity value is not finite and positive.
    """
    e = np.asarray(equity, dtype=np.float64)
    if e.size and (not np.all(np.isfinite(e)) or np.any(e <= 0)):
        raise ValueError("equity must be finite and positive")
    return e[1:] / e[:-1] - 1.0 if e.size > 1 else np.empty(0)


def historical_var_es(
    returns: npt.ArrayLike, confidence: float = 0.95
) -> tuple[float | None, float | None]:
    """Historical value-at-risk and expected shortfall of period returns.

    Parameters
    ----------
    returns : array_like of float, shape (n,)
        Period (daily) returns as fractions.
    confidence : float, default 0.95
        Confidence level ``α`` in (0, 1).

    Returns
    -------
    (var, es) : (float or None, float or None)
        Losses as positive fractions of equity (0.012 = a 1.2 % loss); ``None`` with fewer than
        2 returns.

    Notes
    -----
    With losses ``L = -r``::

        VaR_α = Q_L(α)                    (numpy's default linear-interpolation quantile)
        ES_α  = mean(L_i | L_i >= VaR_α)

    A negative VaR means even the α-quantile day was a gain.

    Raises
    ------
    ValueError
        If ``confidence`` is not in (0, 1) or a return is not finite.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    r = np.asarray(returns, dtype=np.float64)
    if not np.all(np.isfinite(r)):
        raise ValueError("returns must be finite")
    if r.size < 2:
        return None, None
    losses = -r
    var = float(np.quantile(losses, confidence))
    es = float(losses[losses >= var].mean())
    return var, es


@dataclass(frozen=True)
class EquityRisk:
    """Risk of one daily equity curve (fractions of equity; VaR/ES are positive losses)."""

    days: int
    max_drawdown: float
    current_drawdown: float
    var: float | None
    es: float | None
    worst_day: float | None


def equity_risk(equity: npt.ArrayLike, confidence: float = 0.95) -> EquityRisk:
    """Drawdowns and historical VaR/ES of a daily equity curve.

    Parameters
    ----------
    equity : array_like of float, shape (n,), n >= 1
        Daily equity (> 0) in date order.
    confidence : float, default 0.95
        VaR/ES confidence level.

    Returns
    -------
    EquityRisk
        ``max_drawdown = max_t (1 - E_t / max_{s<=t} E_s)`` (:func:`pairdesk.quant.metrics.max_drawdown`),
        ``current_drawdown = 1 - E_n / max_t E_t``, VaR/ES of :func:`simple_returns`,
        ``worst_day`` the most negative daily return.

    Raises
    ------
    ValueError
        Empty or non-positive equity, or a bad ``confidence``.
    """
    e = np.asarray(equity, dtype=np.float64)
    if e.size == 0:
        raise ValueError("equity is empty")
    r = simple_returns(e)
    var, es = historical_var_es(r, confidence)
    return EquityRisk(
        days=int(e.size),
        max_drawdown=max_drawdown(e),
        current_drawdown=float(1.0 - e[-1] / e.max()),
        var=var,
        es=es,
        worst_day=float(r.min()) if r.size else None,
    )
