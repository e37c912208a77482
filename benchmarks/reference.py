"""Plain pandas / statsmodels / Python reference implementations used only by ``benchmarks/run.py``.

Nothing here imports ``pairdesk``: each function re-derives its numbers from the formulas in
``docs/quant-contracts.md`` (spec 004 §特徴量仕様 v1, §backtest-assets-engine 仕様 v1,
§コストテーブル) with ordinary library calls, so the benchmark can report both a speed ratio and
the largest difference against an independent computation.

* :func:`features_reference` — features v1 with ``statsmodels`` ``RollingOLS`` for the raw β and
  pandas ``ewm``/``rolling`` for everything else. **No Huber switch** unless the caller passes
  ``beta_raw`` (e.g. from :func:`huber_reference`).
* :func:`huber_reference` — the Huber switch done the slow, obvious way: residual ratio of every
  window with numpy, ``statsmodels.RLM(HuberT)`` on the windows where it exceeds the threshold.
* :func:`backtest_reference` — the backtest state machine as a plain Python loop over lists,
  with the cost model applied directly from the parsed ``cost_table.yaml``/``universe.yaml``.
* :func:`kpis_reference` — final equity and daily MaxDD of an equity curve (for the θ grid).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from numpy.lib.stride_tricks import sliding_window_view
from statsmodels.regression.rolling import RollingOLS

NS_PER_MINUTE = 60_000_000_000
NS_PER_DAY = 86_400_000_000_000
MAD_NORMAL = 0.6744897501960817  # Φ⁻¹(0.75): MAD / this = normal-consistent scale
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


def load_leg(path: str) -> pd.DataFrame:
    """Read one shipped bar file: ``ts_utc`` parsed as a UTC index, OHLC float columns."""
    df = pd.read_csv(path, usecols=["ts_utc", "open", "high", "low", "close"])
    df["ts_utc"] = pd.to_datetime(df["ts_utc"], utc=True)
    return df.set_index("ts_utc").sort_index()


def align_reference(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inner join of the two legs on common timestamps (pandas ``join``)."""
    j = a[["open", "high", "low", "close"]].join(
        b[["open", "high", "low", "close"]], how="inner", lsuffix="_a", rsuffix="_b"
    )
    j = j.sort_index()
    cols = ["open", "high", "low", "close"]
    out_a = j[[f"{c}_a" for c in cols]].set_axis(cols, axis=1)
    out_b = j[[f"{c}_b" for c in cols]].set_axis(cols, axis=1)
    return out_a, out_b


# ----------------------------------------------------------------------------------------------
# features v1
# ----------------------------------------------------------------------------------------------


def _wilder(x: pd.Series, n: int) -> pd.Series:
    """Wilder smoothing: seed = mean of the first ``n`` valid values, then ``ewm(alpha=1/n)``."""
    valid = np.flatnonzero(x.notna().to_numpy())
    out = pd.Series(np.nan, index=x.index)
    if valid.size < n:
        return out
    first = valid[0]
    seed_pos = first + n - 1
    y = x.copy()
    y.iloc[:seed_pos] = np.nan
    y.iloc[seed_pos] = x.iloc[first : seed_pos + 1].mean()
    return y.ewm(alpha=1.0 / n, adjust=False).mean()


def _true_range(bars: pd.DataFrame) -> pd.Series:
    """``max(H−L, |H−C₋₁|, |L−C₋₁|)``, NaN on the first bar (no previous close)."""
    pc = bars["close"].shift(1)
    tr = pd.concat(
        [bars["high"] - bars["low"], (bars["high"] - pc).abs(), (bars["low"] - pc).abs()], axis=1
    ).max(axis=1)
    tr.iloc[0] = np.nan
    return tr


def _rolling_slope(x: pd.Series, w: int) -> pd.Series:
    """OLS slope on bar index over the last ``w`` values (NaN if any is NaN)."""
    i = np.arange(w, dtype=np.float64)
    weights = (i - i.mean()) / ((i - i.mean()) ** 2).sum()
    out = np.full(len(x), np.nan)
    out[w - 1 :] = sliding_window_view(x.to_numpy(dtype=np.float64), w) @ weights
    return pd.Series(out, index=x.index)


def rolling_ols_beta(log_a: np.ndarray, log_b: np.ndarray, window: int) -> np.ndarray:
    """Raw window β (slope of ``log_a`` on ``[1, log_b]``) with statsmodels ``RollingOLS``."""
    fit = RollingOLS(log_a, sm.add_constant(log_b), window=window).fit(params_only=True)
    return np.asarray(fit.params)[:, 1]


def centred_ols_beta(
    log_a: np.ndarray, log_b: np.ndarray, window: int, chunk: int = 4096
) -> np.ndarray:
    """Raw window β by explicit centred sums on numpy sliding windows (accurate to ~1e-15).

    Used for the correctness check, where ``RollingOLS``'s own float error (~1e-9 on log prices
    near 7) would otherwise dominate the comparison.
    """
    out = np.full(log_a.shape[0], np.nan)
    xw = sliding_window_view(log_b, window)
    yw = sliding_window_view(log_a, window)
    for s0 in range(0, xw.shape[0], chunk):
        xc = xw[s0 : s0 + chunk] - xw[s0 : s0 + chunk].mean(axis=1, keepdims=True)
        yc = yw[s0 : s0 + chunk] - yw[s0 : s0 + chunk].mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[window - 1 + s0 : window - 1 + s0 + xc.shape[0]] = (xc * yc).sum(axis=1) / (
                xc * xc
            ).sum(axis=1)
    return out


def features_reference(
    bars_a: pd.DataFrame,
    bars_b: pd.DataFrame,
    params: Any,
    beta_raw: np.ndarray | None = None,
) -> pd.DataFrame:
    """Features v1 of ``docs/quant-contracts.md`` §Features v1 in plain pandas/statsmodels.

    ``params`` is any object with the ``FeatureParams`` field names (rolling-OLS hedge ratio; the
    21 features then ``kappa``). Without ``beta_raw`` the raw β is plain ``RollingOLS`` (**no
    Huber switch**). z and the half-life come from pandas rolling (co)variances of the log prices
    combined under each bar's β; the other spread features from the β-hedged returns. Rows before ``params.warmup_bars`` are
    set to NaN like the library's output. Returns a DataFrame indexed by the common timestamps.
    """
    a, b = align_reference(bars_a, bars_b)
    pa = np.log(a["close"])
    pb = np.log(b["close"])
    wb, wz = params.beta_window_bars, params.z_window_bars
    if beta_raw is None:
        beta_raw = rolling_ols_beta(pa.to_numpy(), pb.to_numpy(), wb)
    braw = pd.Series(beta_raw, index=a.index)
    beta = braw.ewm(halflife=params.beta_ema_half_life, adjust=False).mean()
    # consistent z: the spread under today's beta against its own window mean/std, from pandas
    # rolling moments of the log prices
    rz = pa.rolling(wz)
    var_x = rz.var() - 2.0 * beta * rz.cov(pb) + beta * beta * pb.rolling(wz).var()
    sd_x = np.sqrt(var_x)
    z = ((pa - rz.mean() - beta * (pb - pb.rolling(wz).mean())) / sd_x).clip(
        -params.z_clip, params.z_clip
    )
    # hedged return with the previous bar's beta, accumulated (origin irrelevant to the features)
    ra, rb = pa.diff(), pb.diff()
    h = ra - beta.shift(1) * rb
    first = int(np.flatnonzero(beta.notna().to_numpy())[0])  # H = 0 at the first beta
    hs = pd.Series(np.nan, index=a.index)
    hs.iloc[first:] = np.r_[0.0, h.iloc[first + 1 :].cumsum().to_numpy()]
    out = pd.DataFrame(index=a.index)
    out["beta"] = beta
    out["spread"] = pa - beta * pb
    out["z"] = z
    out["delta_z"] = z.diff()
    out["z_ema"] = z.ewm(halflife=params.z_ema_half_life, adjust=False).mean()
    atr_s = _wilder(h.abs(), params.atr_period)
    out["atr_spread"] = atr_s
    out["vol_ratio_spread"] = atr_s / atr_s.rolling(params.atr_baseline_median_bars).median()
    # half-life: OLS of dx on x_{-1} over the window, x = p_A - beta_t p_B (today's beta)
    pal, pbl = pa.shift(1), pb.shift(1)
    num = (
        ra.rolling(wz).cov(pal)
        - beta * (ra.rolling(wz).cov(pbl) + rb.rolling(wz).cov(pal))
        + beta * beta * rb.rolling(wz).cov(pbl)
    )
    den = (
        pal.rolling(wz).var()
        - 2.0 * beta * pal.rolling(wz).cov(pbl)
        + beta**2 * pbl.rolling(wz).var()
    )
    kappa = -num / den
    lo, hi = params.half_life_clip
    out["half_life"] = (
        (math.log(2.0) / kappa).where(kappa > 0.0, hi).clip(lo, hi).where(kappa.notna())
    )
    rho = ra.rolling(params.rho_window_bars).corr(rb)
    out["rho_rolling"] = rho
    out["corr_stability"] = rho.rolling(params.rho_window_bars).var()
    out["beta_stability"] = beta.rolling(wb).std() / (
        beta.rolling(wb).mean().abs() + params.beta_stability_eps
    )
    for leg, bars in (("A", a), ("B", b)):
        atr = _wilder(_true_range(bars), params.atr_period)
        out[f"atr_{leg}"] = atr
        out[f"atr_ratio_{leg}"] = atr / atr.rolling(params.atr_baseline_median_bars).median()
    out["ema_gap_spread"] = (
        hs.ewm(span=params.ema_fast_span, adjust=False).mean()
        - hs.ewm(span=params.ema_slow_span, adjust=False).mean()
    )
    out["slope_spread"] = _rolling_slope(hs, params.slope_window_bars) / sd_x
    gain = _wilder(h.clip(lower=0.0), params.rsi_period)
    loss = _wilder((-h).clip(lower=0.0), params.rsi_period)
    rsi = 100.0 - 100.0 / (1.0 + gain / loss)
    out["rsi_spread"] = rsi.mask(loss == 0.0, 100.0)
    out["abs_delta_S"] = h.abs()
    out["abs_delta_z"] = out["delta_z"].abs()
    out["slope_z"] = _rolling_slope(z, params.slope_window_bars)
    out["kappa"] = kappa
    out.iloc[: params.warmup_bars] = np.nan
    return out


def huber_reference(
    log_a: np.ndarray, log_b: np.ndarray, beta_ols: np.ndarray, params: Any, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Huber switch the obvious way.

    For each window (ending at bar ``t``): OLS residuals from ``beta_ols[t]`` (centred windows),
    ratio ``std(e, ddof=1) / (MAD(e) / 0.67449)``; where it exceeds ``params.huber_mad_ratio``,
    β is re-estimated with ``statsmodels.RLM(HuberT(t)).fit(scale_est='mad')``.

    Returns ``(ratio, huber_mask, beta_raw)``, each shape ``(n,)``; ``beta_raw`` is ``beta_ols``
    with the RLM slope on the flagged windows.
    """
    w = params.beta_window_bars
    n = log_a.shape[0]
    ratio = np.full(n, np.nan)
    xw = sliding_window_view(log_b, w)
    yw = sliding_window_view(log_a, w)
    for s0 in range(0, xw.shape[0], chunk):
        xs, ys = xw[s0 : s0 + chunk], yw[s0 : s0 + chunk]
        bs = beta_ols[w - 1 + s0 : w - 1 + s0 + xs.shape[0], None]
        e = (ys - ys.mean(axis=1, keepdims=True)) - bs * (xs - xs.mean(axis=1, keepdims=True))
        mad = np.median(np.abs(e - np.median(e, axis=1, keepdims=True)), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio[w - 1 + s0 : w - 1 + s0 + xs.shape[0]] = e.std(axis=1, ddof=1) / (
                mad / MAD_NORMAL
            )
    mask = np.nan_to_num(ratio, nan=0.0) > params.huber_mad_ratio
    beta = beta_ols.copy()
    norm = sm.robust.norms.HuberT(t=params.huber_t)
    for t in np.flatnonzero(mask):
        y = log_a[t - w + 1 : t + 1]
        x = sm.add_constant(log_b[t - w + 1 : t + 1])
        fit = sm.RLM(y, x, M=norm).fit(
            scale_est="mad", conv="dev", tol=params.huber_tol, maxiter=params.huber_maxiter
        )
        beta[t] = fit.params[1]
    return ratio, mask, beta


# ----------------------------------------------------------------------------------------------
# backtest
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LegRef:
    """One leg's order units and costs, rates as fractions (bps · 1e-4)."""

    symbol: str
    tick: float
    contract_size: float
    min_lot: float
    lot_step: float
    half_spread: float
    slippage: float
    commission: float
    swap_long: float
    swap_short: float


@dataclass(frozen=True)
class CostRef:
    """Both legs plus the swap calendar and time-of-day slippage windows."""

    leg_a: LegRef
    leg_b: LegRef
    min_notional: float
    swap_minute: int
    rollover_weekday: int
    tod: tuple[tuple[int, int, float], ...]


def _hhmm(text: str) -> int:
    h, m = str(text).split(":")
    return int(h) * 60 + int(m)


def cost_reference(
    universe: Mapping[str, Any], cost_table: Mapping[str, Any], pair_id: str
) -> CostRef:
    """Read the pair's legs from ``universe.yaml`` and their costs from ``cost_table.yaml``."""
    pair = next(p for p in universe["pairs"] if p["pair_id"] == pair_id)
    defaults = cost_table["defaults"]
    dswap = defaults.get("swap", {})

    def leg(spec: Mapping[str, Any]) -> LegRef:
        sym = spec["canonical_symbol"]
        ov = cost_table.get("overrides", {}).get(sym, {})
        swap = {**dswap, **ov.get("swap", {})}
        return LegRef(
            symbol=sym,
            tick=float(spec["tick_size"]),
            contract_size=float(spec["contract_size"]),
            min_lot=float(spec["min_lot"]),
            lot_step=float(spec["lot_step"]),
            half_spread=float(ov.get("spread_bps", defaults["spread_bps"])) / 2 * 1e-4,
            slippage=float(ov.get("slippage_bps", defaults["slippage_bps"])) * 1e-4,
            commission=float(ov.get("commission_bps", defaults["commission_bps"])) * 1e-4,
            swap_long=float(swap.get("long_bps_day", 0.0)) * 1e-4,
            swap_short=float(swap.get("short_bps_day", 0.0)) * 1e-4,
        )

    tod = []
    for key, mult in (cost_table.get("time_of_day_multipliers") or {}).items():
        start, end = str(key).split("-")
        tod.append((_hhmm(start), _hhmm(end), float(mult)))
    return CostRef(
        leg_a=leg(pair["leg_A"]),
        leg_b=leg(pair["leg_B"]),
        min_notional=float(pair.get("constraints", {}).get("min_notional_usd", 0.0)),
        swap_minute=_hhmm(dswap.get("time_utc", "21:00")),
        rollover_weekday=WEEKDAYS.index(str(dswap.get("rollover_day", "WED")).upper()),
        tod=tuple(tod),
    )


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step) + 1e-9)) + 2


def _tick(price: float, tick: float, mode: int) -> float:
    """Round to the tick grid: 0 nearest (half up), +1 up, −1 down (1e-9 tick tolerance)."""
    u = price / tick
    if mode == 0:
        k = math.floor(u + 0.5)
    elif mode > 0:
        k = math.ceil(u - 1e-9)
    else:
        k = math.floor(u + 1e-9)
    return round(k * tick, _decimals(tick))


def _lots(j: int, leg: LegRef) -> float:
    return round(leg.min_lot + j * leg.lot_step, _decimals(leg.lot_step))


def size_reference(
    cap_a: float,
    beta: float,
    price_a: float,
    price_b: float,
    c: CostRef,
    ratio_tol: float,
    up: float,
) -> tuple[float, float]:
    """β-neutral lots ``(lots_a, lots_b)`` following the steps of spec §サイズ決定と丸め."""
    la_, lb_ = c.leg_a, c.leg_b
    ua = la_.contract_size * _tick(price_a, la_.tick, 0)
    ub = lb_.contract_size * _tick(price_b, lb_.tick, 0)
    ab = abs(beta)
    na, nb = cap_a, ab * cap_a
    k = max(1.0, la_.min_lot * ua / na, lb_.min_lot * ub / nb, c.min_notional / na)
    k = max(k, c.min_notional / nb)

    def idx(lots: float, leg: LegRef, up_: bool) -> int:
        u = (lots - leg.min_lot) / leg.lot_step
        j = math.ceil(u - 1e-9) if up_ else math.floor(u + 0.5)
        return max(j, 0)

    jmin_a = idx(c.min_notional / ua, la_, True)
    jmin_b = idx(c.min_notional / ub, lb_, True)

    def hedge(j_a: int) -> tuple[int, float]:
        lots_a = _lots(j_a, la_)
        j_b = max(idx(ab * lots_a * ua / ub, lb_, False), jmin_b)
        return j_b, abs(_lots(j_b, lb_) * ub / (lots_a * ua) / ab - 1.0)

    j_a = max(idx(k * na / ua, la_, False), jmin_a)
    j_b, err = hedge(j_a)
    if err > ratio_tol:
        j_cap = max(math.floor((up * k * na / ua - la_.min_lot) / la_.lot_step + 1e-9), 0)
        for j in range(j_a + 1, j_cap + 1):
            jb, e = hedge(j)
            if e <= ratio_tol:
                j_a, j_b = j, jb
                break
    return _lots(j_a, la_), _lots(j_b, lb_)


@dataclass
class BacktestRef:
    """Output of :func:`backtest_reference`."""

    equity: list[float]
    trade_pnl: list[float]
    counters: dict[str, int]


def backtest_reference(
    ts: np.ndarray,
    close_a: np.ndarray,
    close_b: np.ndarray,
    z: np.ndarray,
    beta: np.ndarray,
    prob: np.ndarray,
    risk: np.ndarray,
    tradable: np.ndarray,
    c: CostRef,
    rule: Any,
    theta1: float,
    theta2: float,
    bar_ns: int,
) -> BacktestRef:
    """The backtest rule as a plain Python loop (``rule``: ``BacktestParams`` field names).

    Covers: entry on ``prob > θ1 and risk < θ2`` with finite non-zero z/β while flat and
    tradable; direction −sign(z), leg B ``−sign(β)`` times leg A; β-neutral sizing at the signal
    bar; fills at the close of ``t + latency`` (first tradable bar from then; an entry is never
    filled on the last bar); exits ``|z| <= z_exit`` → risk stop → ``elapsed > M``; costs as in
    ``cost_table.yaml`` (half spread + slippage × time-of-day multiplier in the fill price, one
    tick rounding against the trader; commission per side on the fill notional; swap on the
    entry notional per 21:00 UTC rollover crossed, ×3 on the rollover weekday, 0 at weekends);
    close at the last bar; per-bar equity marked at the close. Assumes ``latency_bars >= 1``.
    """
    if rule.latency_bars < 1:
        raise ValueError("the reference loop covers latency_bars >= 1 only")
    la_, lb_ = c.leg_a, c.leg_b
    ca, cb = close_a.tolist(), close_b.tolist()
    zz, bb, pp, rr = z.tolist(), beta.tolist(), prob.tolist(), risk.tolist()
    trd = tradable.tolist()
    close_t = (np.asarray(ts, dtype=np.int64) + bar_ns).tolist()
    weights = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    weights[c.rollover_weekday] = 3.0
    swap_ns = c.swap_minute * NS_PER_MINUTE
    # first rollover instant strictly after the first bar close - 1 day
    next_roll = ((close_t[0] - swap_ns) // NS_PER_DAY) * NS_PER_DAY + swap_ns
    swap_days = 0.0

    def mult_at(t_ns: int) -> float:
        minute = (t_ns // NS_PER_MINUTE) % 1440
        for start, end, m in c.tod:
            if (start <= minute < end) if start < end else (minute >= start or minute < end):
                return m
        return 1.0

    e0 = rule.initial_capital
    cap_a = e0 * rule.notional_leg_a_fraction * min(rule.position_scale, 1.0)
    n = len(ca)
    equity = [0.0] * n
    pnls: list[float] = []
    cnt = dict.fromkeys(("candidates", "passed_theta1", "vetoed", "signals", "entries"), 0)
    state = 0  # 0 flat, 1 entry pending, 2 open, 3 exit pending
    due = sig_in = bar_in = 0
    qa = qb = fa_in = fb_in = comm_in = swap_rate = swap_in = realised = 0.0

    def fill(t: int, buy_a: bool, buy_b: bool) -> tuple[float, float, float]:
        m = mult_at(close_t[t])
        ra, rb = _tick(ca[t], la_.tick, 0), _tick(cb[t], lb_.tick, 0)
        adj_a, adj_b = la_.half_spread + la_.slippage * m, lb_.half_spread + lb_.slippage * m
        fa = (
            _tick(ra * (1 + adj_a), la_.tick, 1) if buy_a else _tick(ra * (1 - adj_a), la_.tick, -1)
        )
        fb = (
            _tick(rb * (1 + adj_b), lb_.tick, 1) if buy_b else _tick(rb * (1 - adj_b), lb_.tick, -1)
        )
        comm = abs(qa) * la_.contract_size * fa * la_.commission
        comm += abs(qb) * lb_.contract_size * fb * lb_.commission
        return fa, fb, comm

    def close_pos(t: int) -> float:
        fa, fb, comm_out = fill(t, qa < 0, qb < 0)
        pnl = qa * la_.contract_size * (fa - fa_in) + qb * lb_.contract_size * (fb - fb_in)
        pnl += swap_rate * (swap_days - swap_in) - comm_in - comm_out
        pnls.append(pnl)
        return pnl

    for t in range(n):
        last = t == n - 1
        while next_roll <= close_t[t]:
            swap_days += weights[(next_roll // NS_PER_DAY + 3) % 7]  # 1970-01-01 was a Thursday
            next_roll += NS_PER_DAY
        if state == 1 and t >= due and trd[t] and not last:
            fa_in, fb_in, comm_in = fill(t, qa > 0, qb > 0)
            swap_rate = (
                abs(qa) * la_.contract_size * fa_in * (la_.swap_long if qa > 0 else la_.swap_short)
            )
            swap_rate += (
                abs(qb) * lb_.contract_size * fb_in * (lb_.swap_long if qb > 0 else lb_.swap_short)
            )
            swap_in = swap_days
            bar_in = t
            cnt["entries"] += 1
            state = 2
        elif state == 3 and t >= due and trd[t]:
            realised += close_pos(t)
            state = 0
        if state == 2 and t > sig_in:
            zt = zz[t]
            if (
                (abs(zt) <= rule.z_exit)
                or (rule.risk_stop and rr[t] >= rule.theta_stop)
                or (t - bar_in > rule.M)
            ):
                due = t + rule.latency_bars
                state = 3
        if state == 0 and trd[t] and math.isfinite(pp[t]):
            cnt["candidates"] += 1
            if pp[t] > theta1:
                cnt["passed_theta1"] += 1
                if not (rr[t] < theta2):
                    cnt["vetoed"] += 1
                else:
                    zt, bt = zz[t], bb[t]
                    if math.isfinite(zt) and zt != 0.0 and math.isfinite(bt) and bt != 0.0:
                        lots_a, lots_b = size_reference(
                            cap_a, bt, ca[t], cb[t], c, rule.ratio_tol, rule.max_upscale
                        )
                        side = -1.0 if zt > 0 else 1.0
                        qa = side * lots_a
                        qb = -side * (1.0 if bt > 0 else -1.0) * lots_b
                        sig_in = t
                        due = t + rule.latency_bars
                        cnt["signals"] += 1
                        state = 1
        if last and state in (2, 3):
            realised += close_pos(t)
            state = 0
        if state in (2, 3):
            equity[t] = (
                e0
                + realised
                + qa * la_.contract_size * (ca[t] - fa_in)
                + qb * lb_.contract_size * (cb[t] - fb_in)
                - comm_in
                + swap_rate * (swap_days - swap_in)
            )
        else:
            equity[t] = e0 + realised
    return BacktestRef(equity=equity, trade_pnl=pnls, counters=cnt)


def kpis_reference(ts: np.ndarray, equity: list[float], e0: float) -> dict[str, float]:
    """Final equity and MaxDD on daily equity (last bar of each UTC date of ``ts``)."""
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(ts), utc=True))
    eq = pd.Series(equity, index=idx)
    daily = eq.groupby(idx.floor("D")).last().to_numpy()
    peak = np.maximum.accumulate(np.concatenate([[e0], daily]))[1:]
    return {"final_equity": float(equity[-1]), "max_dd": float(np.max(1.0 - daily / peak))}
