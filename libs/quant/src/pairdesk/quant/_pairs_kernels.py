"""Numba kernels of the pair scan (private; the public façade is :mod:`pairdesk.quant.pairs`).

Everything a pair needs is computed in one compiled pass per pair, pairs one after the other:
alignment on common rows, the Engle–Granger first stage for both orderings, the augmented
Dickey–Fuller lag search of ``statsmodels.tsa.stattools.adfuller`` (``autolag="aic"``), Johansen's
trace statistic (``det_order=0``, ``k_ar_diff=1``) and the spread statistics. See
``docs/quant-contracts.md`` §Pair discovery.

Compilation: the pair loop is serial (no ``parallel=True``): the parallel version cost ~1.5-2 s
more cold JIT time (parfor passes, a gufunc, the threading layer) for a scan that takes 0.8 s
serially on 378 pairs x 12k bars (``benchmarks/scan.py``, target < 10 s). The ADF helpers have
explicit signatures (see ``_SIG_GRAM``). ``benchmarks/compile.py`` measures the cold compile.

Numerics of the ADF lag search
------------------------------
``adfuller`` fits ``maxlag + 1`` nested OLS regressions of ``Δx_t`` on ``[const?, x_{t-1},
Δx_{t-1}, …, Δx_{t-l}]`` over the common sample ``t = maxlag … N-1`` and keeps the lag with the
smallest AIC, then refits the chosen lag on its own (longer) sample. Here the Gram matrix of
``[const?, level, lags 1..q, Δx_t]`` for any sample start ``s ≥ q`` is assembled from
*full-series lag products* ``Σ_u Δx_u Δx_{u-h}`` and ``Σ_t x_t Δx_{t-j}`` (O(N·maxlag) once per
series) minus O(maxlag) head/tail terms per entry, so no lag matrix is ever built. One Cholesky
factor of the augmented Gram matrix (dependent variable last) gives every nested regression's
residual sum of squares: ``SSR_k = L_yy² + Σ_{c ≥ k} L_yc²`` (sum of non-negative terms, no
cancellation). For the final fit the level column is put last among the regressors, so its
t-statistic is ``L_{y,level} / sqrt(SSR / (nobs - k))``. The regressors are weakly correlated
(levels of a mean-zero residual and its lagged changes), so the normal equations lose nothing
measurable: the statistics agree with statsmodels' pinv-based OLS to ~1e-12 (tests).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Output columns of :func:`scan_kernel`, in order.
OUT_COLUMNS: tuple[str, ...] = (
    "n_bars",
    "eg_stat_ab",
    "eg_lag_ab",
    "eg_stat_ba",
    "eg_lag_ba",
    "johansen_trace",
    "johansen_max_eig",
    "hedge_ratio",
    "intercept",
    "adf_stat",
    "adf_lag",
    "kappa",
    "half_life_bars",
    "hurst",
    "corr_returns",
    "zero_crossings",
    "years",
    "spread_sigma",
    "r2",
    "status",
)
N_OUT = len(OUT_COLUMNS)

#: Status codes written to the ``status`` column.
ST_OK = 0
ST_FEW_BARS = 1
ST_CONST_A = 2
ST_CONST_B = 3
ST_COLLINEAR = 4
ST_NUMERIC = 5

_LOG_2PI = math.log(2.0 * math.pi)
#: statsmodels ``coint``: the EG test is skipped (stat -inf) when R² ≥ 1 - 100·sqrt(eps).
R2_COLLINEAR = 1.0 - 100.0 * math.sqrt(np.finfo(np.float64).eps)
_NS_PER_YEAR = 365.25 * 86400.0 * 1e9


#: Explicit signatures (compiled eagerly at import, i.e. loaded from the cache when warm) for the
#: ADF helpers: :func:`_pair_stats` calls them with constant ``kc``/``level_last`` arguments, which
#: numba types as *literals* and would otherwise compile one specialisation per value (2 of
#: ``adf_autolag``, 6 of ``_adf_gram``; measured in ``benchmarks/compile.py``).
_SIG_MAXLAG = "int64(int64, int64)"
_SIG_GRAM = "(float64[::1], float64[::1], float64[::1], float64[::1], float64, float64, float64, int64, int64, int64, boolean)"
_SIG_AUTOLAG = "(float64[::1], int64)"


@njit(_SIG_MAXLAG, cache=True)
def adf_maxlag(nobs: int, ntrend: int) -> int:
    """statsmodels' default ``maxlag`` (Schwert 1989): ``min(nobs//2 - ntrend - 1,
    ceil(12 (nobs/100)^{1/4}))``."""
    m = int(np.ceil(12.0 * np.power(nobs / 100.0, 1 / 4.0)))
    return min(nobs // 2 - ntrend - 1, m)


@njit(cache=True)
def _lag_sums(
    x: np.ndarray, p: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, float]:
    """Differences and full-series lag products of a level series ``x`` (length n).

    Returns ``d`` (length N = n-1), ``sdd[h] = Σ_{u=h}^{N-1} d_u d_{u-h}``,
    ``sxd[j] = Σ_{t=j}^{N-1} x_t d_{t-j}`` (h, j = 0..p), ``Σ_{t<N} x_t²``, ``Σ_{t<N} x_t``,
    ``Σ d``."""
    n = x.size
    nd = n - 1
    d = np.empty(nd)
    for u in range(nd):
        d[u] = x[u + 1] - x[u]
    sdd = np.zeros(p + 1)
    sxd = np.zeros(p + 1)
    for h in range(p + 1):
        acc = 0.0
        for u in range(h, nd):
            acc += d[u] * d[u - h]
        sdd[h] = acc
        acc = 0.0
        for t in range(h, nd):
            acc += x[t] * d[t - h]
        sxd[h] = acc
    sxx = 0.0
    sx = 0.0
    sd = 0.0
    for t in range(nd):
        sxx += x[t] * x[t]
        sx += x[t]
        sd += d[t]
    return d, sdd, sxd, sxx, sx, sd


@njit(_SIG_GRAM, cache=True)
def _adf_gram(
    x: np.ndarray,
    d: np.ndarray,
    sdd: np.ndarray,
    sxd: np.ndarray,
    sxx: float,
    sx: float,
    sd: float,
    q: int,
    s: int,
    kc: int,
    level_last: bool,
) -> np.ndarray:
    """Gram matrix of ``[const (if kc), level x_t, d_{t-1}..d_{t-q}, y = d_t]`` over
    ``t = s..N-1`` (``s ≥ q``). With ``level_last`` the level column is moved after the lags
    (still before y)."""
    nd = d.size
    m = kc + q + 2
    g = np.empty((m, m))
    lv = kc + q if level_last else kc
    yc = m - 1
    # column of lag j (j = 0 is y)
    cols = np.empty(q + 1, dtype=np.int64)
    cols[0] = yc
    for j in range(1, q + 1):
        cols[j] = kc + j - 1 if level_last else kc + j
    v = sxx
    for t in range(s):
        v -= x[t] * x[t]
    g[lv, lv] = v
    for j in range(q + 1):
        v = sxd[j]
        for t in range(j, s):
            v -= x[t] * d[t - j]
        c = cols[j]
        g[lv, c] = v
        g[c, lv] = v
    for i in range(q + 1):
        for j in range(i, q + 1):
            h = j - i
            v = sdd[h]
            for u in range(h, s - i):
                v -= d[u] * d[u - h]
            for u in range(nd - i, nd):
                v -= d[u] * d[u - h]
            ci = cols[i]
            cj = cols[j]
            g[ci, cj] = v
            g[cj, ci] = v
    if kc == 1:
        g[0, 0] = float(nd - s)
        v = sx
        for t in range(s):
            v -= x[t]
        g[0, lv] = v
        g[lv, 0] = v
        for j in range(q + 1):
            v = sd
            for u in range(0, s - j):
                v -= d[u]
            for u in range(nd - j, nd):
                v -= d[u]
            c = cols[j]
            g[0, c] = v
            g[c, 0] = v
    return g


@njit(cache=True)
def _cholesky(g: np.ndarray) -> tuple[np.ndarray, bool]:
    """Lower Cholesky factor of a symmetric matrix; ``ok = False`` if not positive definite."""
    m = g.shape[0]
    lo = np.zeros((m, m))
    for j in range(m):
        acc = g[j, j]
        for k in range(j):
            acc -= lo[j, k] * lo[j, k]
        if not acc > 0.0:
            return lo, False
        ljj = math.sqrt(acc)
        lo[j, j] = ljj
        for i in range(j + 1, m):
            acc = g[i, j]
            for k in range(j):
                acc -= lo[i, k] * lo[j, k]
            lo[i, j] = acc / ljj
    return lo, True


@njit(_SIG_AUTOLAG, cache=True)
def adf_autolag(x: np.ndarray, kc: int) -> tuple[float, int, int, float]:
    """ADF t-statistic with AIC lag selection, as ``adfuller(x, regression="n"|"c",
    autolag="aic", maxlag=None)``.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Level series.
    kc : int
        1 for ``regression="c"``, 0 for ``"n"``.

    Returns
    -------
    (stat, usedlag, nobs, icbest); stat is NaN when the regression cannot be fitted.
    """
    n = x.size
    p = adf_maxlag(n, kc)
    if p < 0 or n - 1 - p < kc + p + 2:
        return np.nan, -1, 0, np.nan
    if kc == 1:
        # with a constant the statistic is invariant to shifting x; centring keeps the Gram
        # matrix well conditioned for series far from zero (e.g. log prices)
        x = x - x.mean()
    d, sdd, sxd, sxx, sx, sd = _lag_sums(x, p)
    nd = d.size
    g = _adf_gram(x, d, sdd, sxd, sxx, sx, sd, p, p, kc, False)
    lo, ok = _cholesky(g)
    if not ok:
        return np.nan, -1, 0, np.nan
    m = g.shape[0]
    yc = m - 1
    nobs = float(nd - p)
    best_ic = np.inf
    best_lag = 0
    tail = lo[yc, yc] * lo[yc, yc]
    ics = np.empty(p + 1)
    # SSR of the regression on the first k columns, k = kc + 1 + lag (largest k first)
    for lag in range(p, -1, -1):
        k = kc + 1 + lag
        if lag < p:
            tail += lo[yc, k] * lo[yc, k]
        ics[lag] = nobs * _LOG_2PI + nobs * np.log(tail / nobs) + nobs + 2.0 * k
    for lag in range(p + 1):
        if ics[lag] < best_ic:
            best_ic = ics[lag]
            best_lag = lag
    q = best_lag
    g2 = _adf_gram(x, d, sdd, sxd, sxx, sx, sd, q, q, kc, True)
    l2, ok2 = _cholesky(g2)
    if not ok2:
        return np.nan, -1, 0, np.nan
    m2 = g2.shape[0]
    k2 = m2 - 1
    nobs2 = nd - q
    ssr = l2[m2 - 1, m2 - 1] * l2[m2 - 1, m2 - 1]
    sigma = math.sqrt(ssr / (nobs2 - k2))
    stat = l2[m2 - 1, m2 - 2] / sigma
    return stat, q, nobs2, best_ic


@njit(cache=True)
def johansen_2x2(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Johansen trace (r = 0) and max-eigenvalue statistics of (a, b), det_order 0, k_ar_diff 1."""
    n = a.size
    tt = n - 2
    if tt < 8:
        return np.nan, np.nan
    # v_r = [dA_{r+1}, dB_{r+1}, dA_r, dB_r, A_{r+1}, B_{r+1}], r = 0..tt-1
    mean = np.zeros(6)
    v = np.empty(6)
    for r in range(tt):
        mean[0] += a[r + 2] - a[r + 1]
        mean[1] += b[r + 2] - b[r + 1]
        mean[2] += a[r + 1] - a[r]
        mean[3] += b[r + 1] - b[r]
        mean[4] += a[r + 1]
        mean[5] += b[r + 1]
    for i in range(6):
        mean[i] /= tt
    c = np.zeros((6, 6))
    for r in range(tt):
        v[0] = a[r + 2] - a[r + 1] - mean[0]
        v[1] = b[r + 2] - b[r + 1] - mean[1]
        v[2] = a[r + 1] - a[r] - mean[2]
        v[3] = b[r + 1] - b[r] - mean[3]
        v[4] = a[r + 1] - mean[4]
        v[5] = b[r + 1] - mean[5]
        for i in range(6):
            for j in range(i, 6):
                c[i, j] += v[i] * v[j]
    for i in range(6):
        for j in range(i):
            c[i, j] = c[j, i]
    czz = c[2:4, 2:4]
    det_z = czz[0, 0] * czz[1, 1] - czz[0, 1] * czz[1, 0]
    if not det_z > 0.0:
        return np.nan, np.nan
    izz = np.empty((2, 2))
    izz[0, 0] = czz[1, 1] / det_z
    izz[1, 1] = czz[0, 0] / det_z
    izz[0, 1] = -czz[0, 1] / det_z
    izz[1, 0] = -czz[1, 0] / det_z
    cdz = np.ascontiguousarray(c[0:2, 2:4])
    clz = np.ascontiguousarray(c[4:6, 2:4])
    czd = np.ascontiguousarray(cdz.T)
    czl = np.ascontiguousarray(clz.T)
    s00 = (c[0:2, 0:2] - cdz @ izz @ czd) / tt
    skk = (c[4:6, 4:6] - clz @ izz @ czl) / tt
    sk0 = (c[4:6, 0:2] - clz @ izz @ czd) / tt
    d00 = s00[0, 0] * s00[1, 1] - s00[0, 1] * s00[1, 0]
    dkk = skk[0, 0] * skk[1, 1] - skk[0, 1] * skk[1, 0]
    if not (d00 > 0.0 and dkk > 0.0):
        return np.nan, np.nan
    i00 = np.empty((2, 2))
    i00[0, 0] = s00[1, 1] / d00
    i00[1, 1] = s00[0, 0] / d00
    i00[0, 1] = -s00[0, 1] / d00
    i00[1, 0] = -s00[1, 0] / d00
    ikk = np.empty((2, 2))
    ikk[0, 0] = skk[1, 1] / dkk
    ikk[1, 1] = skk[0, 0] / dkk
    ikk[0, 1] = -skk[0, 1] / dkk
    ikk[1, 0] = -skk[1, 0] / dkk
    mm = ikk @ (sk0 @ i00 @ np.ascontiguousarray(sk0.T))
    det_i_m = (1.0 - mm[0, 0]) * (1.0 - mm[1, 1]) - mm[0, 1] * mm[1, 0]
    tr = mm[0, 0] + mm[1, 1]
    det_m = mm[0, 0] * mm[1, 1] - mm[0, 1] * mm[1, 0]
    disc = tr * tr - 4.0 * det_m
    lam_max = 0.5 * (tr + math.sqrt(max(disc, 0.0)))
    trace = -tt * math.log(det_i_m)
    max_eig = -tt * math.log(1.0 - lam_max)
    return trace, max_eig


@njit(cache=True)
def hurst_lagged_diff(s: np.ndarray, lags: np.ndarray) -> float:
    """Slope of log std(s_{t+τ} - s_t) on log τ over the given lags (variance-of-lagged-differences
    Hurst estimator). NaN if fewer than 3 usable lags."""
    n = s.size
    xs = np.empty(lags.size)
    ys = np.empty(lags.size)
    k = 0
    for li in range(lags.size):
        tau = lags[li]
        m = n - tau
        if m < 2:
            continue
        acc = 0.0
        for t in range(m):
            acc += s[t + tau] - s[t]
        mu = acc / m
        acc = 0.0
        for t in range(m):
            e = s[t + tau] - s[t] - mu
            acc += e * e
        sd = math.sqrt(acc / m)
        if not sd > 0.0:
            continue
        xs[k] = math.log(tau)
        ys[k] = math.log(sd)
        k += 1
    if k < 3:
        return np.nan
    mx = 0.0
    my = 0.0
    for i in range(k):
        mx += xs[i]
        my += ys[i]
    mx /= k
    my /= k
    sxy = 0.0
    sxx = 0.0
    for i in range(k):
        sxy += (xs[i] - mx) * (ys[i] - my)
        sxx += (xs[i] - mx) * (xs[i] - mx)
    return sxy / sxx


@njit(cache=True)
def half_life_ar1(s: np.ndarray) -> tuple[float, float]:
    """(κ per bar, half-life in bars) of the AR(1) fit ``Δs_t = c + b s_{t-1} + e``:
    ``φ = 1 + b``, ``κ = -ln φ``, half-life ``ln 2 / κ``. ``φ ≥ 1`` → κ ≤ 0, half-life inf;
    ``φ ≤ 0`` → κ = inf, half-life 0; NaN when s is constant or has < 3 points."""
    m = s.size - 1
    if m < 2:
        return np.nan, np.nan
    mx = 0.0
    my = 0.0
    for t in range(m):
        mx += s[t]
        my += s[t + 1] - s[t]
    mx /= m
    my /= m
    sxx = 0.0
    sxy = 0.0
    for t in range(m):
        ex = s[t] - mx
        sxx += ex * ex
        sxy += ex * (s[t + 1] - s[t] - my)
    if not sxx > 0.0:
        return np.nan, np.nan
    phi = 1.0 + sxy / sxx
    if phi <= 0.0:
        return np.inf, 0.0
    kappa = -math.log(phi)
    if kappa <= 0.0:
        return kappa, np.inf
    return kappa, math.log(2.0) / kappa


@njit(cache=True)
def _pair_stats(
    a: np.ndarray, b: np.ndarray, ts: np.ndarray, min_bars: int, lags: np.ndarray, out: np.ndarray
) -> None:
    """All statistics of one aligned pair of log-price arrays; fills ``out`` (see OUT_COLUMNS)."""
    n = a.size
    out[:] = np.nan
    out[0] = n
    if n < min_bars:
        out[N_OUT - 1] = ST_FEW_BARS
        return
    ma = 0.0
    mb = 0.0
    for t in range(n):
        ma += a[t]
        mb += b[t]
    ma /= n
    mb /= n
    saa = 0.0
    sbb = 0.0
    sab = 0.0
    for t in range(n):
        da = a[t] - ma
        db = b[t] - mb
        saa += da * da
        sbb += db * db
        sab += da * db
    amin = a.min()
    amax = a.max()
    bmin = b.min()
    bmax = b.max()
    if amin == amax:
        out[N_OUT - 1] = ST_CONST_A
        return
    if bmin == bmax:
        out[N_OUT - 1] = ST_CONST_B
        return
    status = ST_OK
    r2 = sab * sab / (saa * sbb)
    beta_ab = sab / sbb
    beta_ba = sab / saa
    out[7] = beta_ab
    out[8] = ma - beta_ab * mb
    out[18] = r2
    res_ab = np.empty(n)
    res_ba = np.empty(n)
    for t in range(n):
        res_ab[t] = (a[t] - ma) - beta_ab * (b[t] - mb)
        res_ba[t] = (b[t] - mb) - beta_ba * (a[t] - ma)
    if r2 < R2_COLLINEAR:
        st, lag, _, _ = adf_autolag(res_ab, 0)
        out[1] = st
        out[2] = lag
        st, lag, _, _ = adf_autolag(res_ba, 0)
        out[3] = st
        out[4] = lag
        if np.isnan(out[1]) or np.isnan(out[3]):
            status = ST_NUMERIC
    else:
        out[1] = -np.inf
        out[3] = -np.inf
        status = ST_COLLINEAR
    tr, me = johansen_2x2(a, b)
    out[5] = tr
    out[6] = me
    st, lag, _, _ = adf_autolag(res_ab, 1)
    out[9] = st
    out[10] = lag
    out[11], out[12] = half_life_ar1(res_ab)
    m = n - 1
    out[13] = hurst_lagged_diff(res_ab, lags)
    # correlation of per-bar log returns
    mra = 0.0
    mrb = 0.0
    for t in range(m):
        mra += a[t + 1] - a[t]
        mrb += b[t + 1] - b[t]
    mra /= m
    mrb /= m
    s11 = 0.0
    s22 = 0.0
    s12 = 0.0
    for t in range(m):
        ra = a[t + 1] - a[t] - mra
        rb = b[t + 1] - b[t] - mrb
        s11 += ra * ra
        s22 += rb * rb
        s12 += ra * rb
    if s11 > 0.0 and s22 > 0.0:
        out[14] = s12 / math.sqrt(s11 * s22)
    # zero crossings of the demeaned spread (res_ab has mean 0 by construction)
    cross = 0
    prev = 0
    for t in range(n):
        sg = 1 if res_ab[t] > 0.0 else (-1 if res_ab[t] < 0.0 else 0)
        if sg != 0:
            if prev != 0 and sg != prev:
                cross += 1
            prev = sg
    out[15] = cross
    out[16] = (ts[n - 1] - ts[0]) / _NS_PER_YEAR
    ss = 0.0
    for t in range(n):
        ss += res_ab[t] * res_ab[t]
    out[17] = math.sqrt(ss / (n - 1))
    out[N_OUT - 1] = status


@njit(cache=True)
def scan_kernel(
    logp: np.ndarray, ts: np.ndarray, pairs: np.ndarray, min_bars: int, lags: np.ndarray
) -> np.ndarray:
    """Statistics of every pair.

    Parameters
    ----------
    logp : ndarray, shape (T, S)
        Log closes on the union of timestamps, NaN where a symbol has no usable bar.
    ts : ndarray of int64, shape (T,)
        Bar-open times (ns since the epoch, UTC).
    pairs : ndarray of int64, shape (P, 2)
        Column indices (A, B) of each pair.
    min_bars : int
        Fewer common bars → status ``ST_FEW_BARS``.
    lags : ndarray of int64
        Hurst lags (bars).

    Returns
    -------
    ndarray, shape (P, N_OUT)
    """
    npairs = pairs.shape[0]
    out = np.empty((npairs, N_OUT))
    nt = logp.shape[0]
    for k in range(npairs):
        ia = pairs[k, 0]
        ib = pairs[k, 1]
        cnt = 0
        for t in range(nt):
            if not (np.isnan(logp[t, ia]) or np.isnan(logp[t, ib])):
                cnt += 1
        a = np.empty(cnt)
        b = np.empty(cnt)
        tsk = np.empty(cnt)
        j = 0
        for t in range(nt):
            if not (np.isnan(logp[t, ia]) or np.isnan(logp[t, ib])):
                a[j] = logp[t, ia]
                b[j] = logp[t, ib]
                tsk[j] = ts[t]
                j += 1
        row = np.empty(N_OUT)
        if cnt < 2:
            row[:] = np.nan
            row[0] = cnt
            row[N_OUT - 1] = ST_FEW_BARS
        else:
            _pair_stats(a, b, tsk, min_bars, lags, row)
        out[k, :] = row
    return out
