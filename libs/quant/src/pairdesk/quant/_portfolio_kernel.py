"""Numba kernel of the portfolio backtest (private; the API is :mod:`pairdesk.quant.portfolio`).

One call runs N pairs on one clock with the rule of :mod:`pairdesk.quant.rule`; the sequence per
clock step, the drawdown policy, margin and ruin are documented in
:mod:`pairdesk.quant.portfolio` and docs/quant-contracts.md §Portfolio backtest.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from pairdesk.quant.costs import _round_tick_nb
from pairdesk.quant.rule import (
    _B_CA,
    _B_CB,
    _B_RA,
    _B_RB,
    _B_XA,
    _B_XB,
    _NCOL,
    _P_E0,
    _P_LATENCY,
    _P_MARGIN_REQ,
    _P_TICK_A,
    _P_TICK_B,
    _R_DD_FLATTEN,
    _R_DD_FLATTEN_PAIR,
    _R_RUIN,
    _S_REALISED,
    _S_STATE,
    FLAT,
    OPEN,
    RULE_BAR_SIZE,
    RULE_COUNTERS,
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
from pairdesk.quant.typing import BoolArray, FloatArray, IntArray

#: ``njit`` without the runtime's reference counting (``_nrt=False``) for functions that never
#: allocate: a call then costs ~1 ns instead of tens of ns of atomic increments and decrements on
#: its array arguments, which matters at one call per pair-bar.
_njit_no_rc = njit(cache=True, _nrt=False)  # type: ignore[call-overload]


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
    PP_RUIN_ON,
) = range(14)
PP_SIZE = 14

# dd event columns: clock index, scope (−1 portfolio, else pair index), level, dd, sigma
EV_COLS = 5

_BIG = np.iinfo(np.int64).max


@njit(cache=True)
def merge_clock_nb(ts: IntArray, off: IntArray) -> IntArray:
    """Sorted union of the pairs' (sorted) bar times by a k-way pointer walk; pair ``i`` owns
    ``ts[off[i]:off[i + 1]]``."""
    n = off.shape[0] - 1
    out = np.empty(ts.shape[0], dtype=np.int64)
    ptr = off[:-1].copy()
    c = 0
    while True:
        m = _BIG
        for i in range(n):
            p = ptr[i]
            if p < off[i + 1] and ts[p] < m:
                m = ts[p]
        if m == _BIG:
            break
        out[c] = m
        c += 1
        for i in range(n):
            p = ptr[i]
            if p < off[i + 1] and ts[p] == m:
                ptr[i] = p + 1
    return out[:c]


@njit(cache=True)
def validate_nb(ts: IntArray, ca: FloatArray, cb: FloatArray, off: IntArray) -> tuple[int, int]:
    """``(pair, code)`` of the first bad input (code 1: ts not increasing, 2: close_a, 3:
    close_b not finite > 0), ``(-1, 0)`` when all are fine."""
    for i in range(off.shape[0] - 1):
        for j in range(off[i], off[i + 1]):
            if j > off[i] and ts[j] <= ts[j - 1]:
                return i, 1
            if not (np.isfinite(ca[j]) and ca[j] > 0.0):
                return i, 2
            if not (np.isfinite(cb[j]) and cb[j] > 0.0):
                return i, 3
    return -1, 0


@njit(cache=True)
def _grow_nb(a: FloatArray) -> FloatArray:
    out = np.empty((2 * a.shape[0] + 16, a.shape[1]))
    out[: a.shape[0]] = a
    return out


@njit(cache=True)
def _grow_int_nb(a: IntArray) -> IntArray:
    out = np.empty(2 * a.shape[0] + 16, dtype=np.int64)
    out[: a.shape[0]] = a
    return out


@njit(cache=True)
def _level_nb(dd: float, warn: float, halt: float, flat: float) -> int:
    if dd >= flat:
        return 3
    if dd >= halt:
        return 2
    if dd >= warn:
        return 1
    return 0


_SC_K, _SC_NEV, _SC_PLEVEL, _SC_PLATCH, _SC_DAY, _SC_DAYMAX, _SC_PEAK, _SC_NDONE, _SC_RUIN = range(
    9
)


@_njit_no_rc
def _set_event_nb(row: FloatArray, c: int, scope: int, level: int, dd: float, sigma: float) -> None:
    row[0] = c
    row[1] = scope
    row[2] = level
    row[3] = dd
    row[4] = sigma


@_njit_no_rc
def _loop_nb(
    c0: int,
    sc: FloatArray,
    off: IntArray,
    ts: IntArray,
    ca: FloatArray,
    cb: FloatArray,
    z: FloatArray,
    beta: FloatArray,
    prob: FloatArray,
    risk: FloatArray,
    trad: BoolArray,
    lab: FloatArray,
    xa: FloatArray,
    xb: FloatArray,
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
    state: FloatArray,
    bars: FloatArray,
    gate: FloatArray,
    out: FloatArray,
    step_out: FloatArray,
    step_pair: IntArray,
    step_ev: FloatArray,
    ptr: IntArray,
    has: BoolArray,
    built: BoolArray,
    seen: BoolArray,
    u: FloatArray,
    gross: FloatArray,
    realised: FloatArray,
    mreq: FloatArray,
    port_ring: FloatArray,
    pair_ring: FloatArray,
    pnl_ring: FloatArray,
    sigma: FloatArray,
    pair_day_max: FloatArray,
    pair_prev_peak: FloatArray,
    prev_end: FloatArray,
    pair_level: IntArray,
    pair_latch: BoolArray,
) -> int:
    """The clock loop from step ``c0``, without the runtime's reference counting (nothing is
    allocated here). Stops before a step whose trades or events might not fit the buffers and
    returns the step to resume at (``n_clock`` when done); scalars persist in ``sc``."""
    n_pairs = off.shape[0] - 1
    n_clock = clock.shape[0]
    n_days = pair_day_pnl.shape[1]
    has_lab = lab.shape[0] > 0
    e0 = specs[0, _P_E0]
    gross_cap = pp[PP_GROSS_CAP]
    maint = pp[PP_MAINT]
    ruin_on = pp[PP_RUIN_ON] != 0.0
    dd_on = pp[PP_DD_ON] != 0.0
    pair_on = dd_on and pp[PP_PAIR_ON] != 0.0
    win = int(pp[PP_WINDOW])
    lev_warn = pp[PP_LEV_WARN]
    min_days = int(pp[PP_MIN_DAYS])
    k = int(sc[_SC_K])
    nev = int(sc[_SC_NEV])
    port_level = int(sc[_SC_PLEVEL])
    port_latch = sc[_SC_PLATCH] != 0.0
    cur_day = int(sc[_SC_DAY])
    day_max = sc[_SC_DAYMAX]
    prev_peak = sc[_SC_PEAK]
    n_done = int(sc[_SC_NDONE])
    c_next = c0
    for c in range(c0, n_clock):
        if k + n_pairs + 1 > trades.shape[0] or nev + n_pairs + 1 > events.shape[0]:
            break  # the caller grows the buffers and resumes at c
        d = day_idx[c]
        if d != cur_day:
            # ---- close the trading day cur_day
            n_done = min(n_done + 1, win)
            slot = cur_day % win
            port_ring[slot] = day_max
            for i in range(n_pairs):
                pnl = realised[i] + u[i]
                pair_day_pnl[i, cur_day] = pnl
                pnl_ring[i, slot] = pnl - prev_end[i]
                prev_end[i] = pnl
                pair_ring[i, slot] = pair_day_max[i]
            if pair_on:
                # σ of the pair's daily PnL over the active days (PnL != 0) of the window; the
                # completed days of the window fill ring slots 0 .. n_done − 1
                for i in range(n_pairs):
                    m = 0
                    mean = 0.0
                    for j in range(n_done):
                        v = pnl_ring[i, j]
                        if v != 0.0:
                            mean += v
                            m += 1
                    if m >= min_days and m >= 2:
                        mean /= m
                        ss = 0.0
                        for j in range(n_done):
                            v = pnl_ring[i, j]
                            if v != 0.0:
                                ss += (v - mean) ** 2
                        sigma[i] = np.sqrt(ss / (m - 1)) / e0
                    else:
                        sigma[i] = np.nan
            # peaks of the window of the new day d: the previous win − 1 trading days = every
            # ring slot but d's own (which holds day d − win, now out of the window)
            new_slot = d % win
            prev_peak = -np.inf
            for j in range(win):
                if j != new_slot and port_ring[j] > prev_peak:
                    prev_peak = port_ring[j]
            for i in range(n_pairs):
                pk = -np.inf
                for j in range(win):
                    if j != new_slot and pair_ring[i, j] > pk:
                        pk = pair_ring[i, j]
                pair_prev_peak[i] = pk
                pair_day_max[i] = -np.inf
            day_max = -np.inf
            cur_day = d
        t_now = clock[c]
        mult_c = mult[c]
        swapc_c = swapc[c]
        # ---- phase 1: fills due at this close
        n_out = 0
        for i in range(off.shape[0] - 1):
            q = ptr[i]
            if q < off[i + 1] and ts[q] == t_now:
                has[i] = True
                seen[i] = True
                built[i] = False
                if state[i, _S_STATE] != FLAT:  # idle pairs cost nothing more here
                    built[i] = True
                    st = state[i]
                    sp = specs[i]
                    br = bars[i]
                    last = q == off[i + 1] - 1
                    # reference prices only where a fill can happen at this close
                    need = st[_S_STATE] != OPEN or last or sp[_P_LATENCY] == 0.0
                    _set_bar_nb(
                        br, q - off[i], ca[q], cb[q], sp, z[q], beta[q], prob[q], risk[q],
                        trad[q], last, mult_c, swapc_c, lab[q] if has_lab else np.nan, xa[q],
                        xb[q], need,
                    )  # fmt: skip
                    f = rule_fill(st, sp, br, step_out[n_out], counters[i])
                    realised[i] = st[_S_REALISED]
                    u[i] = rule_mark(st, sp, br)
                    gross[i] = rule_gross(st, sp, br[_B_CA] * br[_B_XA], br[_B_CB] * br[_B_XB])
                    if f & STEP_EXIT_FILLED:
                        step_pair[n_out] = i
                        n_out += 1
            else:
                has[i] = False
        for j in range(n_out):
            for jj in range(_NCOL):
                trades[k, jj] = step_out[j, jj]
            trade_pair[k] = step_pair[j]
            k += 1
        eq = e0
        for i in range(n_pairs):
            eq += realised[i]
        for i in range(n_pairs):
            eq += u[i]
        used_g = 0.0
        used_m = 0.0
        for i in range(n_pairs):
            used_g += gross[i]
            used_m += gross[i] * mreq[i]
        # ---- ruin: liquidate everything at each pair's latest close and stop
        if ruin_on and eq <= max(0.0, maint * used_m):
            for i in range(n_pairs):
                if seen[i] and state[i, _S_STATE] != FLAT:
                    br = bars[i]
                    br[_B_RA] = _round_tick_nb(br[_B_CA], specs[i, _P_TICK_A], 0)
                    br[_B_RB] = _round_tick_nb(br[_B_CB], specs[i, _P_TICK_B], 0)
                    f = rule_force_close(state[i], specs[i], br, _R_RUIN, out)
                    if f & STEP_EXIT_FILLED:
                        for jj in range(_NCOL):
                            trades[k, jj] = out[jj]
                        trade_pair[k] = i
                        k += 1
                        realised[i] = state[i, _S_REALISED]
                u[i] = 0.0
            eq = e0
            for i in range(n_pairs):
                eq += realised[i]
            for j in range(c, n_clock):
                equity[j] = eq
            for i in range(n_pairs):
                for j in range(cur_day, n_days):
                    pair_day_pnl[i, j] = realised[i]
            sc[_SC_RUIN] = c
            c_next = n_clock
            break
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
                _set_event_nb(events[nev], c, -1, lvl, dd, np.nan)
                nev += 1
                port_level = lvl
            if pair_on:
                n_ev = 0
                for i in range(realised.shape[0]):
                    pnl = realised[i] + u[i]
                    if pnl > pair_day_max[i]:
                        pair_day_max[i] = pnl
                    s = sigma[i]
                    lvl = 0
                    ddp = 0.0
                    if s > 0.0:
                        pk = max(pair_prev_peak[i], pair_day_max[i])
                        ddp = (pk - pnl) / e0
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
                        step_ev[n_ev, 0] = i
                        step_ev[n_ev, 1] = lvl
                        step_ev[n_ev, 2] = ddp
                        step_ev[n_ev, 3] = s
                        n_ev += 1
                        pair_level[i] = lvl
                for j in range(n_ev):
                    _set_event_nb(
                        events[nev], c, int(step_ev[j, 0]), int(step_ev[j, 1]), step_ev[j, 2],
                        step_ev[j, 3],
                    )  # fmt: skip
                    nev += 1
        # ---- phase 2: decisions at this close
        gate[0] = theta1
        gate[1] = theta2
        gate[4] = 0.0
        n_out = 0
        for i in range(off.shape[0] - 1):
            if not has[i]:
                continue
            q = ptr[i]
            ptr[i] = q + 1
            last = q == off[i + 1] - 1
            if state[i, _S_STATE] == FLAT and not np.isfinite(prob[q]) and not last:
                continue  # flat and no AI1 candidate: nothing can happen
            if not built[i]:
                _set_bar_nb(
                    bars[i], q - off[i], ca[q], cb[q], specs[i], z[q], beta[q], prob[q], risk[q],
                    trad[q], last, mult_c, swapc_c, lab[q] if has_lab else np.nan, xa[q], xb[q],
                    last or specs[i, _P_LATENCY] == 0.0,
                )  # fmt: skip
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
            g0 = gross[i]
            st = state[i]
            sp = specs[i]
            br = bars[i]
            f = rule_decide(st, sp, br, gate, step_out[n_out], counters[i])
            if f != 0:  # no flag: nothing changed, the phase-1 marks stand
                realised[i] = st[_S_REALISED]
                u[i] = rule_mark(st, sp, br)
                gross[i] = rule_gross(st, sp, br[_B_CA] * br[_B_XA], br[_B_CB] * br[_B_XB])
            if f & STEP_EXIT_FILLED:
                step_pair[n_out] = i
                n_out += 1
            used_g += gross[i] - g0
            used_m += (gross[i] - g0) * mreq[i]
        for j in range(n_out):
            for jj in range(_NCOL):
                trades[k, jj] = step_out[j, jj]
            trade_pair[k] = step_pair[j]
            k += 1
        e = e0
        for i in range(n_pairs):
            e += realised[i]
        for i in range(n_pairs):
            e += u[i]
        equity[c] = e
        c_next = c + 1
    if c_next == n_clock and sc[_SC_RUIN] < 0 and n_clock > 0:
        for i in range(n_pairs):
            pair_day_pnl[i, cur_day] = realised[i] + u[i]
    sc[_SC_K] = k
    sc[_SC_NEV] = nev
    sc[_SC_PLEVEL] = port_level
    sc[_SC_PLATCH] = 1.0 if port_latch else 0.0
    sc[_SC_DAY] = cur_day
    sc[_SC_DAYMAX] = day_max
    sc[_SC_PEAK] = prev_peak
    sc[_SC_NDONE] = n_done
    return c_next


@njit(cache=True)
def portfolio_kernel_nb(
    off: IntArray,
    ts: IntArray,
    ca: FloatArray,
    cb: FloatArray,
    z: FloatArray,
    beta: FloatArray,
    prob: FloatArray,
    risk: FloatArray,
    trad: BoolArray,
    lab: FloatArray,
    xa: FloatArray,
    xb: FloatArray,
    specs: FloatArray,
    clock: IntArray,
    mult: FloatArray,
    swapc: FloatArray,
    day_idx: IntArray,
    n_days: int,
    theta1: float,
    theta2: float,
    pp: FloatArray,
    trade_cap: int,
) -> tuple[FloatArray, FloatArray, IntArray, IntArray, FloatArray, FloatArray, int, int, int]:
    """Run the portfolio.

    Pair ``i`` owns ``[off[i], off[i + 1])`` of the flat per-bar arrays (``lab`` may be empty:
    no labels; ``xa``/``xb`` the legs' quote-to-account rates, 1.0 for USD-quoted legs). Returns ``(equity, trades, trade_pair, counters, events, pair_day_pnl,
    n_trades, n_events, ruin clock index or −1)``; ``trades``/``events`` hold ``n_trades`` /
    ``n_events`` valid rows.
    """
    n_pairs = off.shape[0] - 1
    n_clock = clock.shape[0]
    e0 = specs[0, _P_E0]
    win = int(pp[PP_WINDOW])
    equity = np.empty(n_clock)
    trades = np.empty((max(trade_cap, 2 * n_pairs + 16), _NCOL))
    trade_pair = np.empty(trades.shape[0], dtype=np.int64)
    events = np.empty((max(256, 2 * n_pairs + 16), EV_COLS))
    sc = np.zeros(9)
    sc[_SC_DAY] = day_idx[0] if n_clock > 0 else 0
    sc[_SC_DAYMAX] = e0
    sc[_SC_PEAK] = -np.inf
    sc[_SC_RUIN] = -1.0
    counters = np.zeros((n_pairs, RULE_COUNTERS), dtype=np.int64)
    pair_day_pnl = np.zeros((n_pairs, n_days))
    state = np.zeros((n_pairs, RULE_STATE_SIZE))
    bars = np.zeros((n_pairs, RULE_BAR_SIZE))
    gate = np.zeros(RULE_GATE_SIZE)
    out = np.zeros(_NCOL)
    step_out = np.zeros((n_pairs, _NCOL))
    step_pair = np.zeros(n_pairs, dtype=np.int64)
    step_ev = np.zeros((n_pairs, 4))
    ptr = off[:-1].copy()
    has = np.zeros(n_pairs, dtype=np.bool_)
    built = np.zeros(n_pairs, dtype=np.bool_)
    seen = np.zeros(n_pairs, dtype=np.bool_)
    u = np.zeros(n_pairs)
    gross = np.zeros(n_pairs)
    realised = np.zeros(n_pairs)
    mreq = specs[:, _P_MARGIN_REQ].copy()
    port_ring = np.full(win, -np.inf)
    pair_ring = np.full((n_pairs, win), -np.inf)
    pnl_ring = np.zeros((n_pairs, win))
    sigma = np.full(n_pairs, np.nan)
    pair_day_max = np.zeros(n_pairs)
    pair_prev_peak = np.full(n_pairs, -np.inf)
    prev_end = np.zeros(n_pairs)
    pair_level = np.zeros(n_pairs, dtype=np.int64)
    pair_latch = np.zeros(n_pairs, dtype=np.bool_)
    c = 0
    while True:
        c = _loop_nb(
            c, sc, off, ts, ca, cb, z, beta, prob, risk, trad, lab, xa, xb, specs, clock, mult, swapc,
            day_idx, theta1, theta2, pp, equity, trades, trade_pair, counters, events,
            pair_day_pnl, state, bars, gate, out, step_out, step_pair, step_ev, ptr, has, built,
            seen, u, gross, realised, mreq, port_ring, pair_ring, pnl_ring, sigma, pair_day_max,
            pair_prev_peak, prev_end, pair_level, pair_latch,
        )  # fmt: skip
        if c >= n_clock:
            break
        if int(sc[_SC_K]) + n_pairs + 1 > trades.shape[0]:
            trades = _grow_nb(trades)
            trade_pair = _grow_int_nb(trade_pair)
        if int(sc[_SC_NEV]) + n_pairs + 1 > events.shape[0]:
            events = _grow_nb(events)
    k = int(sc[_SC_K])
    nev = int(sc[_SC_NEV])
    return equity, trades, trade_pair, counters, events, pair_day_pnl, k, nev, int(sc[_SC_RUIN])
