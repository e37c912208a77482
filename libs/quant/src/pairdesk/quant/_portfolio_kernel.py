"""Numba kernel of the portfolio backtest (private; the API is :mod:`pairdesk.quant.portfolio`).

One call runs N pairs on one clock with the rule of :mod:`pairdesk.quant.rule`; the sequence per
clock step, the drawdown policy, margin and ruin are documented in
:mod:`pairdesk.quant.portfolio` and docs/quant-contracts.md §Portfolio backtest.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit
from numba.typed import List
from pairdesk.quant.rule import (
    _B_CA,
    _B_CB,
    _NCOL,
    _P_E0,
    _P_MARGIN_REQ,
    _R_DD_FLATTEN,
    _R_DD_FLATTEN_PAIR,
    _R_RUIN,
    _S_REALISED,
    _S_STATE,
    FLAT,
    RULE_BAR_SIZE,
    RULE_GATE_SIZE,
    RULE_STATE_SIZE,
    STEP_EXIT_FILLED,
    _set_bar_nb,
    rule_decide,
    rule_fill,
    rule_force_close,
    rule_gross,
    rule_mark,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# portfolio parameter vector
(
    PP_GROSS_CAP,
    PP_MAINT,
    PP_DD_ON,
    PP_WINDOW,
    PP_WARN,
    PP_HALT,
    PP_FLAT,
    PP_K_WARN,
    PP_K_HALT,
    PP_K_FLAT,
    PP_LEV_WARN,
    PP_PAIR_ON,
    PP_MIN_DAYS,
) = range(13)
PP_SIZE = 13

# dd event columns: clock index, scope (−1 portfolio, else pair index), level, dd, sigma
EV_COLS = 5

_BIG = np.iinfo(np.int64).max


@njit(cache=True)
def merge_clock_nb(ts_l: List) -> IntArray:
    """Sorted union of the pairs' (sorted) bar times by a k-way pointer walk."""
    n = len(ts_l)
    total = 0
    for i in range(n):
        total += ts_l[i].shape[0]
    out = np.empty(total, dtype=np.int64)
    ptr = np.zeros(n, dtype=np.int64)
    c = 0
    while True:
        m = _BIG
        for i in range(n):
            a = ts_l[i]
            p = ptr[i]
            if p < a.shape[0] and a[p] < m:
                m = a[p]
        if m == _BIG:
            break
        out[c] = m
        c += 1
        for i in range(n):
            a = ts_l[i]
            p = ptr[i]
            if p < a.shape[0] and a[p] == m:
                ptr[i] = p + 1
    return out[:c]


@njit(cache=True)
def validate_nb(ts_l: List, ca_l: List, cb_l: List) -> tuple[int, int]:
    """``(pair, code)`` of the first bad input (code 1: ts not increasing, 2: close_a, 3:
    close_b not finite > 0), ``(-1, 0)`` when all are fine."""
    for i in range(len(ts_l)):
        ts = ts_l[i]
        ca = ca_l[i]
        cb = cb_l[i]
        for j in range(ts.shape[0]):
            if j > 0 and ts[j] <= ts[j - 1]:
                return i, 1
            if not (np.isfinite(ca[j]) and ca[j] > 0.0):
                return i, 2
            if not (np.isfinite(cb[j]) and cb[j] > 0.0):
                return i, 3
    return -1, 0


@njit(cache=True)
def _write_trade_nb(
    trades: FloatArray, trade_pair: IntArray, k: int, row: FloatArray, pair: int
) -> int:
    if k < trades.shape[0]:
        for j in range(_NCOL):
            trades[k, j] = row[j]
        trade_pair[k] = pair
    return k + 1


@njit(cache=True)
def _level_nb(dd: float, warn: float, halt: float, flat: float) -> int:
    if dd >= flat:
        return 3
    if dd >= halt:
        return 2
    if dd >= warn:
        return 1
    return 0


@njit(cache=True)
def portfolio_kernel_nb(
    ts_l: List,
    ca_l: List,
    cb_l: List,
    z_l: List,
    beta_l: List,
    prob_l: List,
    risk_l: List,
    trad_l: List,
    lab_l: List,
    specs: FloatArray,
    clock: IntArray,
    mult: FloatArray,
    swapc: FloatArray,
    day_idx: IntArray,
    theta1: float,
    theta2: float,
    pp: FloatArray,
    equity: FloatArray,
    trades: FloatArray,
    trade_pair: IntArray,
    counters: IntArray,
    events: FloatArray,
    pair_day_pnl: FloatArray,
) -> tuple[int, int, int]:
    """Run the portfolio; returns ``(n_trades, n_events, ruin_clock_index or −1)``.

    ``trades``/``events`` are written up to their capacity; the counts returned may exceed it
    (the caller then reruns with larger buffers).
    """
    n_pairs = len(ts_l)
    n_clock = clock.shape[0]
    e0 = specs[0, _P_E0]
    state = np.zeros((n_pairs, RULE_STATE_SIZE))
    bars = np.zeros((n_pairs, RULE_BAR_SIZE))
    gate = np.empty(RULE_GATE_SIZE)
    out = np.zeros(_NCOL)
    ptr = np.zeros(n_pairs, dtype=np.int64)
    has = np.zeros(n_pairs, dtype=np.bool_)
    seen = np.zeros(n_pairs, dtype=np.bool_)
    u = np.zeros(n_pairs)
    gross = np.zeros(n_pairs)
    mreq = specs[:, _P_MARGIN_REQ].copy()
    gross_cap = pp[PP_GROSS_CAP]
    maint = pp[PP_MAINT]
    dd_on = pp[PP_DD_ON] != 0.0
    pair_on = dd_on and pp[PP_PAIR_ON] != 0.0
    win = int(pp[PP_WINDOW])
    lev_warn = pp[PP_LEV_WARN]
    min_days = int(pp[PP_MIN_DAYS])
    # drawdown state: per-day maxima of the last `win` trading days in ring buffers
    port_ring = np.full(win, -np.inf)
    pair_ring = np.full((n_pairs, win), -np.inf)
    pnl_ring = np.zeros((n_pairs, win))
    n_done = 0
    sigma = np.full(n_pairs, np.nan)
    day_max = e0
    prev_peak = -np.inf
    pair_day_max = np.zeros(n_pairs)
    pair_prev_peak = np.full(n_pairs, -np.inf)
    prev_end = np.zeros(n_pairs)
    port_level = 0
    port_latch = False
    pair_level = np.zeros(n_pairs, dtype=np.int64)
    pair_latch = np.zeros(n_pairs, dtype=np.bool_)
    cur_day = day_idx[0] if n_clock > 0 else 0
    k = 0
    nev = 0
    ruin_c = -1
    for c in range(n_clock):
        d = day_idx[c]
        if d != cur_day:
            # ---- close the trading day cur_day
            n_done = min(n_done + 1, win)
            slot = cur_day % win
            port_ring[slot] = day_max
            for i in range(n_pairs):
                pnl = state[i, _S_REALISED] + u[i]
                pair_day_pnl[i, cur_day] = pnl
                pnl_ring[i, slot] = pnl - prev_end[i]
                prev_end[i] = pnl
                pair_ring[i, slot] = pair_day_max[i]
            if pair_on:
                # σ of the pair's daily PnL over the active days (PnL != 0) of the window
                for i in range(n_pairs):
                    m = 0
                    mean = 0.0
                    for j in range(n_done):
                        v = pnl_ring[i, (cur_day - j) % win]
                        if v != 0.0:
                            mean += v
                            m += 1
                    if m >= min_days and m >= 2:
                        mean /= m
                        ss = 0.0
                        for j in range(n_done):
                            v = pnl_ring[i, (cur_day - j) % win]
                            if v != 0.0:
                                ss += (v - mean) ** 2
                        sigma[i] = np.sqrt(ss / (m - 1)) / e0
                    else:
                        sigma[i] = np.nan
            # peaks of the window of the new day: the previous win − 1 trading days
            prev_peak = -np.inf
            for j in range(1, win):
                v = port_ring[(d - j) % win]
                if v > prev_peak:
                    prev_peak = v
            for i in range(n_pairs):
                pk = -np.inf
                for j in range(1, win):
                    v = pair_ring[i, (d - j) % win]
                    if v > pk:
                        pk = v
                pair_prev_peak[i] = pk
            day_max = -np.inf
            for i in range(n_pairs):
                pair_day_max[i] = -np.inf
            cur_day = d
        t_now = clock[c]
        # ---- phase 1: fills due at this close
        for i in range(n_pairs):
            p = ptr[i]
            ts = ts_l[i]
            if p < ts.shape[0] and ts[p] == t_now:
                has[i] = True
                seen[i] = True
                lab = lab_l[i]
                _set_bar_nb(
                    bars[i],
                    p,
                    ca_l[i][p],
                    cb_l[i][p],
                    specs[i],
                    z_l[i][p],
                    beta_l[i][p],
                    prob_l[i][p],
                    risk_l[i][p],
                    trad_l[i][p],
                    p == ts.shape[0] - 1,
                    mult[c],
                    swapc[c],
                    lab[p] if lab.shape[0] > 0 else np.nan,
                )
                f = rule_fill(state[i], specs[i], bars[i], out, counters[i])
                if f & STEP_EXIT_FILLED:
                    k = _write_trade_nb(trades, trade_pair, k, out, i)
                u[i] = rule_mark(state[i], specs[i], bars[i])
                gross[i] = rule_gross(state[i], specs[i], bars[i, _B_CA], bars[i, _B_CB])
            else:
                has[i] = False
        eq = e0
        for i in range(n_pairs):
            eq += state[i, _S_REALISED]
        for i in range(n_pairs):
            eq += u[i]
        used_g = 0.0
        used_m = 0.0
        for i in range(n_pairs):
            used_g += gross[i]
            used_m += gross[i] * mreq[i]
        # ---- ruin: liquidate everything at each pair's latest close and stop
        if eq <= max(0.0, maint * used_m):
            for i in range(n_pairs):
                if seen[i] and state[i, _S_STATE] != FLAT:
                    f = rule_force_close(state[i], specs[i], bars[i], _R_RUIN, out)
                    if f & STEP_EXIT_FILLED:
                        k = _write_trade_nb(trades, trade_pair, k, out, i)
                u[i] = 0.0
            eq = e0
            for i in range(n_pairs):
                eq += state[i, _S_REALISED]
            for j in range(c, n_clock):
                equity[j] = eq
            for i in range(n_pairs):
                for j in range(cur_day, pair_day_pnl.shape[1]):
                    pair_day_pnl[i, j] = state[i, _S_REALISED]
            ruin_c = c
            return k, nev, ruin_c
        # ---- drawdown policy on the marks after the fills
        if dd_on:
            if eq > day_max:
                day_max = eq
            peak = max(prev_peak, day_max)
            dd = (peak - eq) / e0
            lvl = _level_nb(dd, pp[PP_WARN], pp[PP_HALT], pp[PP_FLAT])
            if lvl == 3:
                port_latch = True
            elif lvl == 0:
                port_latch = False
            if port_latch:
                lvl = 3
            if lvl != port_level:
                if nev < events.shape[0]:
                    events[nev, 0] = c
                    events[nev, 1] = -1
                    events[nev, 2] = lvl
                    events[nev, 3] = dd
                    events[nev, 4] = np.nan
                nev += 1
                port_level = lvl
            if pair_on:
                for i in range(n_pairs):
                    pnl = state[i, _S_REALISED] + u[i]
                    if pnl > pair_day_max[i]:
                        pair_day_max[i] = pnl
                    pk = max(pair_prev_peak[i], pair_day_max[i])
                    ddp = (pk - pnl) / e0
                    s = sigma[i]
                    lvl = 0
                    if s > 0.0:
                        lvl = _level_nb(
                            ddp, pp[PP_K_WARN] * s, pp[PP_K_HALT] * s, pp[PP_K_FLAT] * s
                        )
                    if lvl == 3:
                        pair_latch[i] = True
                    elif lvl == 0:
                        pair_latch[i] = False
                    if pair_latch[i]:
                        lvl = 3
                    if lvl != pair_level[i]:
                        if nev < events.shape[0]:
                            events[nev, 0] = c
                            events[nev, 1] = i
                            events[nev, 2] = lvl
                            events[nev, 3] = ddp
                            events[nev, 4] = s
                        nev += 1
                        pair_level[i] = lvl
        # ---- phase 2: decisions at this close
        gate[0] = theta1
        gate[1] = theta2
        gate[4] = 0.0
        for i in range(n_pairs):
            if not has[i]:
                continue
            lvl = max(port_level, pair_level[i])
            gate[2] = lev_warn if lvl == 1 else 1.0
            gate[3] = 1.0 if lvl >= 2 else 0.0
            if port_level == 3:
                gate[5] = _R_DD_FLATTEN
            elif pair_level[i] == 3:
                gate[5] = _R_DD_FLATTEN_PAIR
            else:
                gate[5] = -1.0
            gate[6] = eq - used_m
            gate[7] = gross_cap - used_g
            f = rule_decide(state[i], specs[i], bars[i], gate, out, counters[i])
            if f & STEP_EXIT_FILLED:
                k = _write_trade_nb(trades, trade_pair, k, out, i)
            u[i] = rule_mark(state[i], specs[i], bars[i])
            g = rule_gross(state[i], specs[i], bars[i, _B_CA], bars[i, _B_CB])
            used_g += g - gross[i]
            used_m += (g - gross[i]) * mreq[i]
            gross[i] = g
            ptr[i] += 1
        e = e0
        for i in range(n_pairs):
            e += state[i, _S_REALISED]
        for i in range(n_pairs):
            e += u[i]
        equity[c] = e
    if n_clock > 0:
        for i in range(n_pairs):
            pair_day_pnl[i, cur_day] = state[i, _S_REALISED] + u[i]
    return k, nev, ruin_c
