"""Numba kernels for features v1 (spec 004 §特徴量仕様 v1): one per-bar update shared by batch and live.

This module is private. :func:`pairdesk.quant.features.compute_features` runs :func:`run_batch`,
which is a plain loop over :func:`update_bar`; :class:`pairdesk.quant.incremental.PairFeatureState`
calls :func:`update_bar` once per closed bar. Both execute the same floating-point operations in the
same order, so the batch and the incremental results agree bit for bit.

Numerics
--------
Every window statistic is recomputed from its window buffer each bar, so no rounding error
accumulates along the history and the work per bar is bounded by the window sizes. Means and
(co)variances use the *shifted* one-pass form of the corrected two-pass algorithm: with a shift ``c``
close to the window mean (the previous bar's window mean, or the newest value when that is not
finite), ``d_i = x_i - c``, ``mean = c + sum(d)/n`` and ``css = sum(d^2) - sum(d)^2/n``. Because
``|mean - c|`` is a small fraction of the window's spread, the correction term is tiny and the result
has the accuracy of the centred two-pass formula (no cancellation between log-price levels ~7.6 and
variances ~1e-4); the shift only changes rounding at the 1e-16 relative level.

Medians are exact order statistics (numpy's definition: mean of the two middle values for an even
count): the ATR medians keep a sorted window (binary search, one shift of the elements between the
removed and the inserted position). The Huber switch ``std(e)/(MAD(e)/0.67449) > ratio`` is
equivalent to ``MAD < theta = std * 0.67449 / ratio``; it is first screened in one counting pass
around a guess ``g`` of the residual median (the last exactly computed one): when the band
``g +- delta`` provably holds the median, counting ``|e - g|`` against ``theta -+ delta`` (with a 1e-9
relative margin) settles the inequality. Otherwise the exact median (quickselect restricted to the
band, or the whole window) and the exact MAD are computed and the formula itself is evaluated. The
decision is therefore always that of the exact formula; the guess only changes the speed.

All kernels use numba's numpy error model: a division by zero yields inf/NaN rather than raising;
degenerate windows (zero variance, zero median) are turned into NaN features explicitly.

Layout
------
``ip`` (int64 parameters), ``fp`` (float64 parameters): see the ``IP_*`` / ``FP_*`` indices.
``si`` (int64 counters) and ``sf`` (float64 scalars): see ``SI_*`` / ``SF_*``.
``rb`` (float64, shape (N_RINGS, 2*C)): ring buffers. Each value is written twice, at ``pos`` and
``pos + C``, so the last ``w <= C`` values are always the contiguous slice ending at
``(cnt - 1) % C + C`` (oldest first).
``sw`` (float64, shape (3, W_med)): sorted windows of the last ``W_med`` ATR values (legs A, B, spread).
``sc`` (float64, shape (3, W_beta)): scratch for residuals, weights and selection.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ---- int parameters (ip)
IP_WB = 0  # beta window (bars)
IP_WZ = 1  # z window (bars); also the half-life and std_S windows
IP_WR = 2  # rho window (log returns)
IP_WS = 3  # slope window (bars)
IP_NATR = 4  # Wilder ATR period
IP_WMED = 5  # ATR median baseline window (bars)
IP_NRSI = 6  # Wilder RSI period
IP_MAXIT = 7  # Huber IRLS maxiter (statsmodels semantics)
IP_C = 8  # ring capacity
IP_WARM = 9  # warm-up bars: rows with bar index < this are all-NaN
N_IP = 10

# ---- float parameters (fp)
FP_ABETA = 0  # EMA alpha for beta
FP_HRATIO = 1  # Huber switch threshold on std(e)/(MAD(e)/0.67449)
FP_HT = 2  # Huber t
FP_ZCLIP = 3
FP_AZ = 4  # EMA alpha for z_ema
FP_HLLO = 5
FP_HLHI = 6
FP_AFAST = 7
FP_ASLOW = 8
FP_HTOL = 9  # Huber IRLS tolerance on the deviance
FP_BEPS = 10  # epsilon in beta_stability denominator
N_FP = 11

# ---- int state (si)
SI_NBARS = 0
SI_NRET = 1  # log returns pushed
SI_NS = 2  # spread values pushed (== smoothed beta values pushed)
SI_NZ = 3  # z values pushed
SI_NRHO = 4  # rho values pushed
SI_NTR = 5  # leg true ranges seen
SI_NATRL = 6  # leg ATR values pushed
SI_NATRS = 7  # spread ATR values pushed
SI_NHUBER = 8  # windows where the Huber re-estimate fired (diagnostic)
N_SI = 9

# ---- float state (sf)
SF_PCA = 0  # previous close A
SF_PCB = 1
SF_PPA = 2  # previous log close A
SF_PPB = 3
SF_BETA = 4  # smoothed beta (NaN until seeded)
SF_EMAF = 5
SF_EMAS = 6
SF_ZEMA = 7
SF_ATRA = 8  # running sum during seeding, then Wilder ATR
SF_ATRB = 9
SF_ATRS = 10
SF_RSIG = 11
SF_RSIL = 12
# shifts (previous window means) and the residual-median guess; NaN = none yet
SF_MPA = 13
SF_MPB = 14
SF_MRA = 15
SF_MRB = 16
SF_MRHO = 17
SF_MBETA = 18
SF_MS = 19
SF_MHL = 20
SF_EMED = 21
N_SF = 22

# ---- rings (rb rows)
R_PA = 0
R_PB = 1
R_RA = 2
R_RB = 3
R_BETA = 4
R_S = 5
R_Z = 6
R_RHO = 7
R_ATRA = 8
R_ATRB = 9
R_ATRS = 10
N_RINGS = 11

# ---- output columns (same order as features.FEATURE_COLUMNS)
O_BETA = 0
O_SPREAD = 1
O_Z = 2
O_DZ = 3
O_ZEMA = 4
O_ATRS = 5
O_VOLR = 6
O_HL = 7
O_RHO = 8
O_CSTAB = 9
O_BSTAB = 10
O_ATRA = 11
O_ATRB = 12
O_ATRRA = 13
O_ATRRB = 14
O_EMAGAP = 15
O_SLOPES = 16
O_RSI = 17
O_ADS = 18
O_ADZ = 19
O_SLOPEZ = 20
N_OUT = 21

#: Phi^-1(3/4): the MAD of a standard normal (statsmodels ``Gaussian.ppf(3/4)``); MAD/this = sigma.
MAD_NORMAL_C = 0.6744897501960817
#: Relative margin of the counting decision of the Huber switch (exact MAD evaluated inside it).
_SWITCH_MARGIN = 1e-9


# --------------------------------------------------------------------------------------- helpers
@njit(cache=True, error_model="numpy")
def _moments(v: np.ndarray, shift: float) -> tuple[float, float]:
    """(mean, centred sum of squares) of ``v`` by the shifted corrected two-pass formula."""
    n = v.shape[0]
    if not abs(shift) < np.inf:
        shift = v[n - 1]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    q0 = 0.0
    q1 = 0.0
    q2 = 0.0
    q3 = 0.0
    i = 0
    while i + 4 <= n:
        d0 = v[i] - shift
        d1 = v[i + 1] - shift
        d2 = v[i + 2] - shift
        d3 = v[i + 3] - shift
        s0 += d0
        s1 += d1
        s2 += d2
        s3 += d3
        q0 += d0 * d0
        q1 += d1 * d1
        q2 += d2 * d2
        q3 += d3 * d3
        i += 4
    while i < n:
        d0 = v[i] - shift
        s0 += d0
        q0 += d0 * d0
        i += 1
    s = (s0 + s1) + (s2 + s3)
    css = ((q0 + q1) + (q2 + q3)) - s * s / n
    if css < 0.0:
        css = 0.0
    return shift + s / n, css


@njit(cache=True, error_model="numpy")
def _comoments(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float
) -> tuple[float, float, float, float, float]:
    """(mean_x, mean_y, Sxx, Sxy, Syy) of two equal-length windows, shifted corrected two-pass."""
    n = x.shape[0]
    if not abs(cx) < np.inf:
        cx = x[n - 1]
    if not abs(cy) < np.inf:
        cy = y[n - 1]
    sx0 = 0.0
    sy0 = 0.0
    xx0 = 0.0
    xy0 = 0.0
    yy0 = 0.0
    sx1 = 0.0
    sy1 = 0.0
    xx1 = 0.0
    xy1 = 0.0
    yy1 = 0.0
    i = 0
    while i + 2 <= n:
        dx0 = x[i] - cx
        dy0 = y[i] - cy
        dx1 = x[i + 1] - cx
        dy1 = y[i + 1] - cy
        sx0 += dx0
        sy0 += dy0
        xx0 += dx0 * dx0
        xy0 += dx0 * dy0
        yy0 += dy0 * dy0
        sx1 += dx1
        sy1 += dy1
        xx1 += dx1 * dx1
        xy1 += dx1 * dy1
        yy1 += dy1 * dy1
        i += 2
    if i < n:
        dx0 = x[i] - cx
        dy0 = y[i] - cy
        sx0 += dx0
        sy0 += dy0
        xx0 += dx0 * dx0
        xy0 += dx0 * dy0
        yy0 += dy0 * dy0
    sx = sx0 + sx1
    sy = sy0 + sy1
    xx = xx0 + xx1
    xy = xy0 + xy1
    yy = yy0 + yy1
    sxx = xx - sx * sx / n
    syy = yy - sy * sy / n
    if sxx < 0.0:
        sxx = 0.0
    if syy < 0.0:
        syy = 0.0
    return cx + sx / n, cy + sy / n, sxx, xy - sx * sy / n, syy


@njit(cache=True, error_model="numpy")
def _select(a: np.ndarray, n: int, k: int) -> float:
    """Quickselect: rearrange ``a[:n]`` so ``a[k]`` is its k-th smallest value and return it.

    Median-of-three pivot, branch-free Lomuto partition. The value returned does not depend on the
    pivot choices, so the result is deterministic.
    """
    lo = 0
    hi = n - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        x = a[lo]
        y = a[mid]
        z = a[hi]
        if x < y:
            if y < z:
                p = mid
            elif x < z:
                p = hi
            else:
                p = lo
        elif x < z:
            p = lo
        elif y < z:
            p = hi
        else:
            p = mid
        pv = a[p]
        a[p] = a[hi]
        a[hi] = pv
        j = lo
        for i in range(lo, hi):
            v = a[i]
            a[i] = a[j]
            a[j] = v
            j += 1 if v < pv else 0
        a[hi] = a[j]
        a[j] = pv
        if j == k:
            return pv
        if j < k:
            lo = j + 1
        else:
            hi = j - 1
    return a[k]


@njit(cache=True, error_model="numpy")
def _median_inplace(a: np.ndarray, n: int) -> float:
    """Median of ``a[:n]`` (mean of the two middle values for even n, as numpy); reorders ``a``."""
    h = n >> 1
    hi = _select(a, n, h)
    if n & 1:
        return hi
    lo = a[0]
    for i in range(1, h):
        if a[i] > lo:
            lo = a[i]
    return (lo + hi) / 2.0


@njit(cache=True, error_model="numpy")
def _median_banded(
    v: np.ndarray, n: int, guess: float, half_width: float, buf: np.ndarray
) -> float:
    """Exact median of ``v[:n]`` (not reordered) using ``buf`` (>= n) as scratch.

    Only the values in ``[guess - half_width, guess + half_width]`` are selected among when that band
    holds the middle order statistics; otherwise the whole window is.
    """
    k1 = (n - 1) >> 1
    k2 = n >> 1
    if half_width > 0.0 and abs(guess) < np.inf:
        lo = guess - half_width
        hi = guess + half_width
        below = 0
        m = 0
        for i in range(n):
            x = v[i]
            below += 1 if x < lo else 0
            buf[m] = x
            m += 1 if (x >= lo and x <= hi) else 0
        if below <= k1 and k2 < below + m:
            top = _select(buf, m, k2 - below)
            if k1 == k2:
                return top
            low = buf[0]
            for i in range(1, k2 - below):
                if buf[i] > low:
                    low = buf[i]
            return (low + top) / 2.0
    for i in range(n):
        buf[i] = v[i]
    return _median_inplace(buf, n)


@njit(cache=True, error_model="numpy")
def _window(rb: np.ndarray, r: int, cnt: int, cap: int, w: int) -> np.ndarray:
    """View of the last ``w`` values of ring ``r`` (oldest first); requires ``cnt >= w``."""
    end = (cnt - 1) % cap + cap + 1
    return rb[r, end - w : end]


@njit(cache=True, error_model="numpy")
def _last(rb: np.ndarray, r: int, cnt: int, cap: int, lag: int) -> float:
    """Value ``lag`` steps back in ring ``r`` (lag 0 = newest)."""
    return rb[r, (cnt - 1) % cap + cap - lag]


@njit(cache=True, error_model="numpy")
def _push(rb: np.ndarray, r: int, cnt: int, cap: int, v: float) -> int:
    pos = cnt % cap
    rb[r, pos] = v
    rb[r, pos + cap] = v
    return cnt + 1


@njit(cache=True, error_model="numpy")
def _lower_bound(arr: np.ndarray, m: int, v: float) -> int:
    """First index ``i`` in sorted ``arr[:m]`` with ``arr[i] >= v`` (branch-free halving)."""
    if m == 0:
        return 0
    base = 0
    n = m
    while n > 1:
        half = n >> 1
        base = base + half if arr[base + half] < v else base
        n -= half
    return base + (1 if arr[base] < v else 0)


@njit(cache=True, error_model="numpy")
def _upper_bound(arr: np.ndarray, m: int, v: float) -> int:
    """First index ``i`` in sorted ``arr[:m]`` with ``arr[i] > v`` (branch-free halving)."""
    if m == 0:
        return 0
    base = 0
    n = m
    while n > 1:
        half = n >> 1
        base = base + half if arr[base + half] <= v else base
        n -= half
    return base + (1 if arr[base] <= v else 0)


@njit(cache=True, error_model="numpy")
def _sorted_push(sw: np.ndarray, row: int, cnt: int, old: float, has_old: bool, new: float) -> None:
    """Sorted window ``sw[row, :cnt]``: replace one ``old`` by ``new`` (or insert ``new``)."""
    arr = sw[row]
    if not has_old:
        j = _upper_bound(arr, cnt, new)
        for k in range(cnt, j, -1):
            arr[k] = arr[k - 1]
        arr[j] = new
        return
    i = _lower_bound(arr, cnt, old)  # arr[i] == old
    if new >= old:
        # slide arr[i+1 .. j-1] (all <= new) one step left, place new at j-1
        j = _upper_bound(arr, cnt, new)
        for k in range(i, j - 1):
            arr[k] = arr[k + 1]
        arr[j - 1] = new
    else:
        # slide arr[j .. i-1] (all > new) one step right, place new at j
        j = _upper_bound(arr, i, new)
        for k in range(i, j, -1):
            arr[k] = arr[k - 1]
        arr[j] = new


@njit(cache=True, error_model="numpy")
def _sorted_median(sw: np.ndarray, row: int, n: int) -> float:
    h = n >> 1
    if n & 1:
        return sw[row, h]
    return (sw[row, h - 1] + sw[row, h]) / 2.0


@njit(cache=True, error_model="numpy")
def _slope_index(y: np.ndarray) -> float:
    """OLS slope of ``y`` on 0..n-1: ``sum((i - (n-1)/2) (y_i - y_last)) / (n (n^2-1) / 12)``.

    ``sum(i - (n-1)/2) = 0`` exactly, so subtracting the last value only removes the level.
    """
    n = y.shape[0]
    c = y[n - 1]
    mx = (n - 1) / 2.0
    sxy = 0.0
    for i in range(n):
        sxy += (i - mx) * (y[i] - c)
    return sxy / (n * (n * n - 1.0) / 12.0)


@njit(cache=True, error_model="numpy")
def _huber_rho(z: float, t: float) -> float:
    az = abs(z)
    if az <= t:
        return 0.5 * z * z
    return az * t - 0.5 * t * t


# ----------------------------------------------------------------------------- window beta (raw)
@njit(cache=True, error_model="numpy")
def _switch_screen(e: np.ndarray, n: int, guess: float, delta: float, theta: float) -> int:
    """Decide the Huber switch from a median guess in one counting pass, when that is conclusive.

    If at most ``(n-1)//2`` values lie below ``guess - delta`` and at most ``n - 1 - n//2`` above
    ``guess + delta``, the middle order statistics (hence the median ``m``) lie within ``delta`` of
    ``guess``, so ``|e - m|`` is within ``delta`` of ``|e - guess|``. Counting ``|e - guess|``
    against ``theta -/+ delta`` (with the switch margin) then bounds the number of deviations
    ``|e - m|`` below ``theta`` from both sides. Returns 1 (MAD < theta: switch), 0 (MAD > theta:
    no switch) or -1 (inconclusive: compute the median and the MAD exactly).
    """
    if not (abs(guess) < np.inf and delta > 0.0):
        return -1
    lo = guess - delta
    hi = guess + delta
    t_fire = theta * (1.0 - _SWITCH_MARGIN) - delta
    t_keep = theta * (1.0 + _SWITCH_MARGIN) + delta
    below = 0
    above = 0
    n_fire = 0
    n_keep = 0
    for i in range(n):
        v = e[i]
        d = abs(v - guess)
        below += 1 if v < lo else 0
        above += 1 if v > hi else 0
        n_fire += 1 if d < t_fire else 0
        n_keep += 1 if d <= t_keep else 0
    if below > (n - 1) >> 1 or above > n - 1 - (n >> 1):
        return -1
    h = n >> 1
    if n_fire >= h + 1:
        return 1
    if n_keep <= (h if n & 1 else h - 1):
        return 0
    return -1


@njit(cache=True, error_model="numpy")
def _huber_switch(
    e: np.ndarray, n: int, med: float, std_e: float, thr: float, tmp: np.ndarray
) -> bool:
    """Exact value of ``std_e / (median(|e - med|) / MAD_NORMAL_C) > thr`` (counting, then exact)."""
    theta = std_e * MAD_NORMAL_C / thr
    t_lo = theta * (1.0 - _SWITCH_MARGIN)
    t_hi = theta * (1.0 + _SWITCH_MARGIN)
    n_lt = 0
    n_le = 0
    for i in range(n):
        d = abs(e[i] - med)
        n_lt += 1 if d < t_lo else 0
        n_le += 1 if d <= t_hi else 0
    h = n >> 1
    if n_lt >= h + 1:
        return True  # the upper middle order statistic (hence the MAD) is below theta
    if n & 1:
        if n_le <= h:
            return False
    elif n_le <= h - 1:
        return False
    for i in range(n):
        tmp[i] = abs(e[i] - med)
    mad = _median_inplace(tmp, n)
    if not mad > 0.0:
        return std_e > 0.0  # ratio = std/0: +inf if std > 0, undefined (no switch) if 0/0
    return std_e / (mad / MAD_NORMAL_C) > thr


@njit(cache=True, error_model="numpy")
def window_beta(
    x: np.ndarray,
    y: np.ndarray,
    cx: float,
    cy: float,
    med_guess: float,
    ratio_thr: float,
    huber_t: float,
    maxiter: int,
    tol: float,
    sc: np.ndarray,
) -> tuple[float, bool, float, float, float]:
    """Raw beta of ``y`` on ``x`` (with intercept) over one window, with the Huber switch.

    OLS first; if ``std(e, ddof=1) / (median(|e - median(e)|) / 0.67449) > ratio_thr`` the slope is
    re-estimated by Huber IRLS replicating ``statsmodels.RLM(y, [1, x], HuberT(huber_t)).fit(
    scale_est='mad', conv='dev', tol=tol, maxiter=maxiter)``. ``cx``, ``cy`` are shifts near the
    window means and ``med_guess`` a guess of the OLS residual median (the shifts only affect
    1e-16-level rounding, the guess only the speed; NaN = none). ``sc`` is scratch, shape (3, >= n).

    Returns (beta, huber_used, mean_x, mean_y, next median guess): the exact residual median when
    it had to be computed, else ``med_guess``. beta is NaN when ``x`` is constant.
    """
    n = x.shape[0]
    e = sc[0]
    w = sc[1]
    tmp = sc[2]
    mx, my, sxx, sxy, _syy = _comoments(x, y, cx, cy)
    if not sxx > 0.0:
        return np.nan, False, mx, my, med_guess
    b = sxy / sxx
    ss0 = 0.0
    ss1 = 0.0
    i = 0
    while i + 2 <= n:
        e0 = (y[i] - my) - b * (x[i] - mx)
        e1 = (y[i + 1] - my) - b * (x[i + 1] - mx)
        e[i] = e0
        e[i + 1] = e1
        ss0 += e0 * e0
        ss1 += e1 * e1
        i += 2
    if i < n:
        e0 = (y[i] - my) - b * (x[i] - mx)
        e[i] = e0
        ss0 += e0 * e0
    ss = ss0 + ss1
    std_e = math.sqrt(ss / (n - 1))
    screen = _switch_screen(e, n, med_guess, 0.1 * std_e, std_e * MAD_NORMAL_C / ratio_thr)
    if screen == 0:
        return b, False, mx, my, med_guess
    if screen < 0:
        med_guess = _median_banded(e, n, med_guess, 0.1 * std_e, tmp)
        if not _huber_switch(e, n, med_guess, std_e, ratio_thr, tmp):
            return b, False, mx, my, med_guess
    # ---- Huber IRLS, statsmodels RLM(HuberT(), scale_est='mad', conv='dev') semantics
    df = n - 2.0
    for i in range(n):
        tmp[i] = abs(e[i])
    scale = _median_inplace(tmp, n) / MAD_NORMAL_C  # robust.scale.mad(resid, center=0)
    s_wls = ss / df  # ``scale`` of the start (OLS) fit, used by RLM.deviance
    dev_prev = 0.0
    for i in range(n):
        dev_prev += _huber_rho(e[i] / s_wls, huber_t)
    it = 1
    while True:
        if scale == 0.0:
            break
        sw_ = 0.0
        swx = 0.0
        swy = 0.0
        for i in range(n):
            zi = abs(e[i] / scale)
            wi = 1.0 if zi <= huber_t else huber_t / zi
            w[i] = wi
            sw_ += wi
            swx += wi * x[i]
            swy += wi * y[i]
        mxw = swx / sw_
        myw = swy / sw_
        wxx = 0.0
        wxy = 0.0
        for i in range(n):
            dx = x[i] - mxw
            wxx += w[i] * dx * dx
            wxy += w[i] * dx * (y[i] - myw)
        b = wxy / wxx
        sse_w = 0.0
        for i in range(n):
            ei = (y[i] - myw) - b * (x[i] - mxw)
            e[i] = ei
            sse_w += w[i] * ei * ei
            tmp[i] = abs(ei)
        scale = _median_inplace(tmp, n) / MAD_NORMAL_C
        s_wls = sse_w / df
        dev = 0.0
        for i in range(n):
            dev += _huber_rho(e[i] / s_wls, huber_t)
        it += 1
        if not (abs(dev - dev_prev) > tol and it < maxiter):
            break
        dev_prev = dev
    return b, True, mx, my, med_guess


# ------------------------------------------------------------------------------ per-bar update
@njit(cache=True, error_model="numpy")
def _wilder(acc: float, x: float, k: int, period: int) -> float:
    """Wilder average of the k-th input (1-based): running sum while k < period, mean at k == period,
    then ``((period - 1) * prev + x) / period``."""
    if k < period:
        return acc + x
    if k == period:
        return (acc + x) / period
    return ((period - 1) * acc + x) / period


@njit(cache=True, error_model="numpy")
def update_bar(
    ip: np.ndarray,
    fp: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    rb: np.ndarray,
    sw: np.ndarray,
    sc: np.ndarray,
    oa: float,
    ha: float,
    la: float,
    ca: float,
    ob: float,
    hb: float,
    lb: float,
    cb: float,
    out: np.ndarray,
) -> int:
    """Consume one closed bar per leg and write the 21 features for it into ``out``.

    Returns 0, or 1 (leg A) / 2 (leg B) when a price is NaN, infinite or <= 0; the state is then left
    unchanged and ``out`` untouched.
    """
    if not (0.0 < oa < np.inf and 0.0 < ha < np.inf and 0.0 < la < np.inf and 0.0 < ca < np.inf):
        return 1
    if not (0.0 < ob < np.inf and 0.0 < hb < np.inf and 0.0 < lb < np.inf and 0.0 < cb < np.inf):
        return 2

    wb = ip[IP_WB]
    wz = ip[IP_WZ]
    wr = ip[IP_WR]
    ws = ip[IP_WS]
    natr = ip[IP_NATR]
    wmed = ip[IP_WMED]
    nrsi = ip[IP_NRSI]
    cap = ip[IP_C]

    for k in range(N_OUT):
        out[k] = np.nan

    nb = si[SI_NBARS]
    pa = math.log(ca)
    pb = math.log(cb)

    # ---- legs: log returns, true ranges, Wilder ATR and its median baseline
    if nb >= 1:
        nret = si[SI_NRET]
        _push(rb, R_RA, nret, cap, pa - sf[SF_PPA])
        si[SI_NRET] = _push(rb, R_RB, nret, cap, pb - sf[SF_PPB])
        pca = sf[SF_PCA]
        pcb = sf[SF_PCB]
        tra = max(ha - la, abs(ha - pca), abs(la - pca))
        trb = max(hb - lb, abs(hb - pcb), abs(lb - pcb))
        ntr = si[SI_NTR] + 1
        si[SI_NTR] = ntr
        sf[SF_ATRA] = _wilder(sf[SF_ATRA], tra, ntr, natr)
        sf[SF_ATRB] = _wilder(sf[SF_ATRB], trb, ntr, natr)
        if ntr >= natr:
            atra = sf[SF_ATRA]
            atrb = sf[SF_ATRB]
            cnt = si[SI_NATRL]
            has_old = cnt >= wmed
            old_a = _last(rb, R_ATRA, cnt, cap, wmed - 1) if has_old else 0.0
            old_b = _last(rb, R_ATRB, cnt, cap, wmed - 1) if has_old else 0.0
            fill = wmed if has_old else cnt
            _sorted_push(sw, 0, fill, old_a, has_old, atra)
            _sorted_push(sw, 1, fill, old_b, has_old, atrb)
            _push(rb, R_ATRA, cnt, cap, atra)
            cnt = _push(rb, R_ATRB, cnt, cap, atrb)
            si[SI_NATRL] = cnt
            out[O_ATRA] = atra
            out[O_ATRB] = atrb
            if cnt >= wmed:
                med_a = _sorted_median(sw, 0, wmed)
                med_b = _sorted_median(sw, 1, wmed)
                out[O_ATRRA] = atra / med_a if med_a > 0.0 else np.nan
                out[O_ATRRB] = atrb / med_b if med_b > 0.0 else np.nan
    sf[SF_PCA] = ca
    sf[SF_PCB] = cb
    sf[SF_PPA] = pa
    sf[SF_PPB] = pb
    _push(rb, R_PA, nb, cap, pa)
    nb = _push(rb, R_PB, nb, cap, pb)
    si[SI_NBARS] = nb

    # ---- rho over the last wr log returns, and its variance over wr rho values
    nret = si[SI_NRET]
    if nret >= wr:
        xa = _window(rb, R_RA, nret, cap, wr)
        xb = _window(rb, R_RB, nret, cap, wr)
        ma, mb, saa, sab, sbb = _comoments(xa, xb, sf[SF_MRA], sf[SF_MRB])
        sf[SF_MRA] = ma
        sf[SF_MRB] = mb
        rho = sab / math.sqrt(saa * sbb) if (saa > 0.0 and sbb > 0.0) else np.nan
        out[O_RHO] = rho
        nrho = _push(rb, R_RHO, si[SI_NRHO], cap, rho)
        si[SI_NRHO] = nrho
        if nrho >= wr:
            m, css = _moments(_window(rb, R_RHO, nrho, cap, wr), sf[SF_MRHO])
            sf[SF_MRHO] = m
            out[O_CSTAB] = css / (wr - 1)

    # ---- raw beta over the last wb bars, EMA-smoothed (seeded with the first finite raw beta)
    if nb >= wb:
        braw, hub, mpb, mpa, med = window_beta(
            _window(rb, R_PB, nb, cap, wb),
            _window(rb, R_PA, nb, cap, wb),
            sf[SF_MPB],
            sf[SF_MPA],
            sf[SF_EMED],
            fp[FP_HRATIO],
            fp[FP_HT],
            ip[IP_MAXIT],
            fp[FP_HTOL],
            sc,
        )
        sf[SF_MPB] = mpb
        sf[SF_MPA] = mpa
        sf[SF_EMED] = med
        if hub:
            si[SI_NHUBER] += 1
        if braw == braw:
            if sf[SF_BETA] == sf[SF_BETA]:
                ab = fp[FP_ABETA]
                sf[SF_BETA] = (1.0 - ab) * sf[SF_BETA] + ab * braw
            else:
                sf[SF_BETA] = braw
    beta = sf[SF_BETA]
    if beta == beta:
        out[O_BETA] = beta
        s = pa - beta * pb
        out[O_SPREAD] = s
        ns = si[SI_NS]
        _push(rb, R_BETA, ns, cap, beta)
        ns = _push(rb, R_S, ns, cap, s)
        si[SI_NS] = ns
        # beta_stability over wb smoothed betas
        if ns >= wb:
            m, css = _moments(_window(rb, R_BETA, ns, cap, wb), sf[SF_MBETA])
            sf[SF_MBETA] = m
            out[O_BSTAB] = math.sqrt(css / (wb - 1)) / (abs(m) + fp[FP_BEPS])
        # EMA fast/slow of S (MACD convention, seeded with the first S)
        if ns == 1:
            sf[SF_EMAF] = s
            sf[SF_EMAS] = s
        else:
            af = fp[FP_AFAST]
            asl = fp[FP_ASLOW]
            sf[SF_EMAF] = (1.0 - af) * sf[SF_EMAF] + af * s
            sf[SF_EMAS] = (1.0 - asl) * sf[SF_EMAS] + asl * s
        out[O_EMAGAP] = sf[SF_EMAF] - sf[SF_EMAS]
        # |dS|, spread ATR (close-only TR = |dS|) and RSI, both Wilder
        if ns >= 2:
            ds = s - _last(rb, R_S, ns, cap, 1)
            tr = abs(ds)
            out[O_ADS] = tr
            nds = ns - 1
            sf[SF_ATRS] = _wilder(sf[SF_ATRS], tr, nds, natr)
            if nds >= natr:
                atrs = sf[SF_ATRS]
                out[O_ATRS] = atrs
                cnt = si[SI_NATRS]
                has_old = cnt >= wmed
                old_s = _last(rb, R_ATRS, cnt, cap, wmed - 1) if has_old else 0.0
                _sorted_push(sw, 2, wmed if has_old else cnt, old_s, has_old, atrs)
                cnt = _push(rb, R_ATRS, cnt, cap, atrs)
                si[SI_NATRS] = cnt
                if cnt >= wmed:
                    med_s = _sorted_median(sw, 2, wmed)
                    out[O_VOLR] = atrs / med_s if med_s > 0.0 else np.nan
            sf[SF_RSIG] = _wilder(sf[SF_RSIG], ds if ds > 0.0 else 0.0, nds, nrsi)
            sf[SF_RSIL] = _wilder(sf[SF_RSIL], -ds if ds < 0.0 else 0.0, nds, nrsi)
            if nds >= nrsi:
                avl = sf[SF_RSIL]
                if avl > 0.0:
                    out[O_RSI] = 100.0 - 100.0 / (1.0 + sf[SF_RSIG] / avl)
                else:
                    out[O_RSI] = 100.0
        # half-life: OLS dS_t = a + b S_{t-1} over the last wz pairs
        if ns >= wz + 1:
            v = _window(rb, R_S, ns, cap, wz + 1)
            c = sf[SF_MHL]
            if not abs(c) < np.inf:
                c = v[wz - 1]
            dmean = (v[wz] - v[0]) / wz  # mean of the dS (telescoping); used only as a shift
            sx = 0.0
            sy = 0.0
            sxx = 0.0
            sxy = 0.0
            for i in range(wz):
                dx = v[i] - c
                dy = (v[i + 1] - v[i]) - dmean
                sx += dx
                sy += dy
                sxx += dx * dx
                sxy += dx * dy
            sf[SF_MHL] = c + sx / wz
            sxx -= sx * sx / wz
            sxy -= sx * sy / wz
            if sxx > 0.0:
                hl = math.log(2.0) / abs(sxy / sxx)
                out[O_HL] = min(max(hl, fp[FP_HLLO]), fp[FP_HLHI])
        # z over the historical spread; std_S also scales slope_spread
        sd_s = np.nan
        if ns >= wz:
            m, css = _moments(_window(rb, R_S, ns, cap, wz), sf[SF_MS])
            sf[SF_MS] = m
            sd_s = math.sqrt(css / (wz - 1))
            zc = fp[FP_ZCLIP]
            z = min(max((s - m) / sd_s, -zc), zc) if sd_s > 0.0 else np.nan
            out[O_Z] = z
            nz = _push(rb, R_Z, si[SI_NZ], cap, z)
            si[SI_NZ] = nz
            if z == z:
                if sf[SF_ZEMA] == sf[SF_ZEMA]:
                    az = fp[FP_AZ]
                    sf[SF_ZEMA] = (1.0 - az) * sf[SF_ZEMA] + az * z
                else:
                    sf[SF_ZEMA] = z
            out[O_ZEMA] = sf[SF_ZEMA]
            if nz >= 2:
                dz = z - _last(rb, R_Z, nz, cap, 1)
                out[O_DZ] = dz
                out[O_ADZ] = abs(dz)
            if nz >= ws:
                out[O_SLOPEZ] = _slope_index(_window(rb, R_Z, nz, cap, ws))
        if ns >= ws and sd_s > 0.0:
            out[O_SLOPES] = _slope_index(_window(rb, R_S, ns, cap, ws)) / sd_s

    if nb <= ip[IP_WARM]:
        for k in range(N_OUT):
            out[k] = np.nan
    return 0


@njit(cache=True, error_model="numpy")
def run_batch(
    ip: np.ndarray,
    fp: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    rb: np.ndarray,
    sw: np.ndarray,
    sc: np.ndarray,
    ohlc_a: np.ndarray,
    ohlc_b: np.ndarray,
    out: np.ndarray,
) -> int:
    """Loop :func:`update_bar` over aligned (n, 4) OHLC arrays; returns the first bad row or -1."""
    n = ohlc_a.shape[0]
    for t in range(n):
        st = update_bar(
            ip, fp, si, sf, rb, sw, sc,
            ohlc_a[t, 0], ohlc_a[t, 1], ohlc_a[t, 2], ohlc_a[t, 3],
            ohlc_b[t, 0], ohlc_b[t, 1], ohlc_b[t, 2], ohlc_b[t, 3],
            out[t],
        )  # fmt: skip
        if st != 0:
            return t
    return -1


@njit(cache=True, error_model="numpy")
def rolling_window_beta(
    x: np.ndarray,
    y: np.ndarray,
    w: int,
    ratio_thr: float,
    huber_t: float,
    maxiter: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw window beta of ``y`` on ``x`` for every full window of length ``w`` (NaN before).

    Chains the shifts and the median guess exactly as :func:`update_bar` does, so the values are
    bit-identical to the raw betas behind the features.
    """
    n = x.shape[0]
    beta = np.full(n, np.nan)
    used = np.zeros(n, dtype=np.bool_)
    sc = np.empty((3, w))
    cx = np.nan
    cy = np.nan
    med = np.nan
    for t in range(w - 1, n):
        b, h, cx, cy, med = window_beta(
            x[t - w + 1 : t + 1],
            y[t - w + 1 : t + 1],
            cx,
            cy,
            med,
            ratio_thr,
            huber_t,
            maxiter,
            tol,
            sc,
        )
        beta[t] = b
        used[t] = h
    return beta, used


def new_state(ip: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fresh (si, sf, rb, sw, sc) arrays for the parameters ``ip``."""
    cap = int(ip[IP_C])
    si = np.zeros(N_SI, dtype=np.int64)
    sf = np.zeros(N_SF, dtype=np.float64)
    for k in (
        SF_BETA,
        SF_ZEMA,
        SF_MPA,
        SF_MPB,
        SF_MRA,
        SF_MRB,
        SF_MRHO,
        SF_MBETA,
        SF_MS,
        SF_MHL,
        SF_EMED,
    ):
        sf[k] = np.nan
    rb = np.zeros((N_RINGS, 2 * cap), dtype=np.float64)
    sw = np.zeros((3, int(ip[IP_WMED])), dtype=np.float64)
    sc = np.zeros((3, int(ip[IP_WB])), dtype=np.float64)
    return si, sf, rb, sw, sc
