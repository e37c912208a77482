"""Numba kernels for features v1 (spec 004 §特徴量仕様 v1): one per-bar update shared by batch and live.

This module is private. :func:`run_bars` loops :func:`update_bar` over aligned OHLC rows;
:func:`pairdesk.quant.features.compute_features` calls it on the whole history and
:class:`pairdesk.quant.incremental.PairFeatureState` on one bar at a time, so batch and live run the
same compiled code and agree bit for bit. Work per bar is bounded by the window sizes (O(1) for the
moments, O(w) simple vector passes for the medians and the Huber screen), independent of the
history length, and no feature at bar t reads anything after t.

Numerics
--------
**Rolling moments** (rho, corr_stability, the OLS part of beta, beta_stability, the z window of the
log prices ``(p_B, p_A)`` and the half-life regression: lagged log prices against log returns, four
cross products plus the lagged prices' own moments, combined under today's beta) are *running shifted sums with an exact recompute*. An accumulator keeps, for
the last ``w`` values (or pairs), ``sum(d)``, ``sum(d^2)`` (and ``sum(dx dy)``, ``sum(dy^2)`` for
pairs) with ``d = v - c`` around a shift ``c``: each bar adds the new value and subtracts the one
leaving the window (O(1)), and the centred sums follow as ``css = sum(d^2) - sum(d)^2 / n`` (the
corrected two-pass formula). The sums are recomputed exactly from the window buffer, around a new
shift equal to the current mean, on the first full window, every ``w`` updates, and as soon as the
mean has drifted from the shift by more than half a window standard deviation. The rounding error
of an update is ~1e-16 of ``sum(d^2) = css + sum(d)^2 / n``, so this keeps it at the 1e-16 level of
``css`` and stops it from accumulating beyond one window: measured against long-double direct
computations the features stay within ~1e-14 (beta_stability), far inside the 1e-9 contract.
Combining the log-price moments under beta (``v_A - 2 beta c_AB + beta^2 v_B``) cancels the common
level: the spread variance is a few percent of the legs' on XAU/XAG, so z and the half-life lose
one or two digits of the ~1e-16 relative accuracy of the centred sums (tested against direct
numpy window computations to 1e-9 on every bar). Exactly constant windows are detected exactly (run length of identical trailing values),
so their variance is exactly 0 and the dependent feature is NaN, as with a direct computation. The
corr_stability accumulator counts NaN rho values (a NaN in the window gives a NaN output).

**Medians** are exact order statistics (numpy's definition: mean of the two middle values for an
even count). The ATR medians keep a *sorted window array*: the positions of the leaving and of the
new value are counted in one vectorised pass, then the elements between them are shifted by one (a
``memmove``-like loop on unsigned indices). For a 180-bar window this simple O(w) vector work is
faster than O(log w) binary searches, heaps or skip lists with their dependent, scattered accesses.

**Huber switch.** ``std(e)/(MAD(e)/0.67449) > ratio`` is equivalent to
``MAD < theta = std * 0.67449 / ratio``. One vectorised pass computes the OLS residuals ``e`` (slope
from the running moments) and ``e^2`` (summed in a fixed order), a second, integer-only pass the
counts of a screen around a guess ``g`` of the residual median: when the band ``g +- delta`` provably
holds the median, counting ``|e - g|`` against ``theta -+ delta`` (with a 1e-9 relative margin)
settles the inequality. When the screen is inconclusive, the exact median (quickselect restricted
to the band, or the whole window) and the exact MAD are computed and the formula itself is
evaluated. The decision is therefore always that of the exact formula; the guess only changes the
speed. After a conclusive screen the guess moves to the median position interpolated linearly
within the band (a tracking step; the next exact median replaces it).

**Kalman hedge ratio** (``IP_METHOD == METHOD_KALMAN``): :func:`_kalman_init` collects the first
``W_b`` bars in the beta accumulator and starts the filter from their OLS fit; :func:`_kalman_step`
is the scalar-observation, two-state update written out (``R = P + W``, ``Q = x'Rx + V_e``,
``K = Rx/Q``, ``P = R - (Rx)(Rx)'/Q``), returning the standardised innovation. No window beta is
estimated under this method.

**Huber IRLS** (on the windows where the switch fires; statsmodels' own iteration often runs to its
50-iteration cap there) replicates ``statsmodels.RLM(HuberT(), scale_est='mad')``: per iteration an
element-wise pass for the Huber rho (deviance) and the next weights, one pass of weighted sums
around the OLS means, an element-wise residual pass, and the median of ``|e|`` selected within a
band around the previous one that provably holds it (no residual moved by more than the bound
computed from the change of the fit).

Compilation
-----------
Everything is ``cache=True`` (numba writes the compiled code under ``__pycache__`` in the
directory :mod:`pairdesk.quant` names after the hash of all its modules, and keys each entry by a
hash of this file's contents: an edit invalidates it, a mere change of timestamp does not; several
processes, e.g. xdist workers, may compile and write it at once: numba writes each entry to a
temporary file and renames it) and uses numba's numpy error model (a division by zero yields
inf/NaN rather than raising; degenerate windows are turned into NaN features explicitly). The
per-bar helpers are marked ``forceinline`` (LLVM ``alwaysinline``), so the loop of
:func:`run_bars` has no calls on its hot path; the rare paths (exact recomputes, exact medians,
Huber IRLS) stay calls. :func:`run_bars` is compiled with ``_nrt=False`` (inherited by the helpers
compiled for it): it allocates nothing, and without numba's runtime no atomic reference counting
of the state arrays is emitted, about a third of the per-bar time otherwise. The hot path also
indexes the state arrays directly rather than through array views.

The layout constants are numpy ``int64`` (``_I``), not Python ints: numba types a Python int
global passed to a jitted function as a *literal* and compiles one specialisation of the callee
per value, so every accumulator and ring helper was compiled once per row it was called with
(10 copies of ``_acc_due``, 11 of ``_push``). Each helper now compiles once. Cold compile of
``compute_features`` (fresh cache, idle 2-core machine): ~8.6 s (was ~13 s); a later process
loads the cache in ~0.7 s. Of the cold time, ``update_bar`` and the loop take ~4 s, the Huber
machinery ~2.5 s, the small helpers ~1.5 s (numba compiles every helper on its own before LLVM
inlines it).

Layout
------
``ip`` (int64 parameters), ``fp`` (float64 parameters): see the ``IP_*`` / ``FP_*`` indices.
``si`` (int64 counters) and ``sf`` (float64 scalars): see ``SI_*`` / ``SF_*``.
``rb`` (float64, shape (N_RINGS, 2*C)): ring buffers. Each value is written twice, at ``pos`` and
``pos + C``, so the last ``w <= C`` values are always the contiguous slice ending at
``(cnt - 1) % C + C`` (oldest first). ``C`` is a power of two (positions are bit masks, no integer
division) of at least the longest window + 2, so the value leaving a window (and the lagged log
price leaving the half-life window) is still in the ring.
``sw`` (float64, shape (3, W_med)): sorted windows of the last ``W_med`` ATR values (legs A, B,
hedged spread; rows ``SW_*``).
``sc`` (float64, shape (N_SC, W_beta)): scratch rows for the beta window (see ``SC_*``).
``af`` (float64, shape (N_M, N_AF)) and ``ai`` (int64, shape (N_M, N_AI)): rolling-moment
accumulators, one row per ``M_*`` statistic (columns ``AF_*`` / ``AI_*``).
``out`` (float64, shape (N_OUT, n)): feature-major output, column ``t`` for bar ``t``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

#: Integer constants (layout indices, sizes, method codes) are numpy int64 rather than Python ints:
#: numba types a Python int global passed to a jitted function as a literal and compiles one
#: specialisation of the callee per value (10 copies of each accumulator helper, one per row),
#: which multiplied the cold compile time; an int64 global is folded all the same after inlining.
_I = np.int64

#: Options of every kernel: cached on disk, numpy error model (x/0 gives inf/NaN, never raises).
_OPTS: dict[str, Any] = {"cache": True, "error_model": "numpy"}
#: Per-bar helpers: marked ``alwaysinline`` for LLVM, so the loop has no calls (and no argument
#: passing of the state arrays) on its hot path.
_INLINE: dict[str, Any] = {**_OPTS, "forceinline": True}
#: The per-bar loop, compiled without numba's runtime (inherited by the helpers compiled for it): it
#: allocates nothing, and without the runtime no atomic reference counting of the state arrays is
#: emitted, about a third of the time per bar otherwise.
_NO_NRT: dict[str, Any] = {**_OPTS, "_nrt": False}

# ---- int parameters (ip)
IP_WB = _I(0)  # beta window (bars)
IP_WZ = _I(1)  # z window (bars); also the half-life and std_S windows
IP_WR = _I(2)  # rho window (log returns)
IP_WS = _I(3)  # slope window (bars)
IP_NATR = _I(4)  # Wilder ATR period
IP_WMED = _I(5)  # ATR median baseline window (bars)
IP_NRSI = _I(6)  # Wilder RSI period
IP_MAXIT = _I(7)  # Huber IRLS maxiter (statsmodels semantics)
IP_C = _I(8)  # ring capacity: a power of two >= longest window + 2
IP_WARM = _I(9)  # warm-up bars: rows with bar index < this are all-NaN
IP_METHOD = _I(10)  # hedge ratio: METHOD_OLS or METHOD_KALMAN
N_IP = _I(11)

METHOD_OLS = _I(0)  # rolling OLS/Huber window beta, EMA-smoothed
METHOD_KALMAN = _I(1)  # Kalman filter on (alpha, beta), random-walk state

# ---- float parameters (fp)
FP_ABETA = _I(0)  # EMA alpha for beta
FP_HRATIO = _I(1)  # Huber switch threshold on std(e)/(MAD(e)/0.67449)
FP_HT = _I(2)  # Huber t
FP_ZCLIP = _I(3)
FP_AZ = _I(4)  # EMA alpha for z_ema
FP_HLLO = _I(5)
FP_HLHI = _I(6)
FP_AFAST = _I(7)
FP_ASLOW = _I(8)
FP_HTOL = _I(9)  # Huber IRLS tolerance on the deviance
FP_BEPS = _I(10)  # epsilon in beta_stability denominator
FP_KQ = _I(11)  # Kalman: state noise variance per unit observation variance, delta / (1 - delta)
FP_KVE = _I(
    12
)  # Kalman: observation variance (NaN = the OLS residual variance of the first window)
N_FP = _I(13)

# ---- int state (si)
SI_NBARS = _I(0)
SI_NRET = _I(1)  # log returns pushed
SI_NS = _I(2)  # hedged-spread values pushed (== hedge-ratio values pushed)
SI_NZ = _I(3)  # z values pushed
SI_NRHO = _I(4)  # rho values pushed
SI_NTR = _I(5)  # leg true ranges seen
SI_NATRL = _I(6)  # leg ATR values pushed
SI_NATRS = _I(7)  # spread ATR values pushed
SI_NHUBER = _I(8)  # windows where the Huber re-estimate fired (diagnostic)
N_SI = _I(9)

# ---- float state (sf)
SF_PCA = _I(0)  # previous close A
SF_PCB = _I(1)
SF_PPA = _I(2)  # previous log close A
SF_PPB = _I(3)
SF_BETA = _I(4)  # smoothed beta (NaN until seeded)
SF_EMAF = _I(5)
SF_EMAS = _I(6)
SF_ZEMA = _I(7)
SF_ATRA = _I(8)  # running sum during seeding, then Wilder ATR
SF_ATRB = _I(9)
SF_ATRS = _I(10)
SF_RSIG = _I(11)
SF_RSIL = _I(12)
SF_EMED = _I(13)  # guess of the OLS residual median (NaN = none yet)
SF_H = _I(14)  # hedged spread H (sum of hedged returns since the first hedge ratio)
SF_KA = _I(15)  # Kalman state: intercept alpha
SF_KP11 = _I(16)  # Kalman state covariance (alpha, alpha)
SF_KP12 = _I(17)  # (alpha, beta)
SF_KP22 = _I(18)  # (beta, beta)
SF_KVE = _I(19)  # Kalman observation variance in use
N_SF = _I(20)

# ---- rings (rb rows)
R_PA = _I(0)
R_PB = _I(1)
R_RA = _I(2)
R_RB = _I(3)
R_BETA = _I(4)
R_H = _I(5)  # hedged spread H
R_Z = _I(6)
R_RHO = _I(7)
R_ATRA = _I(8)
R_ATRB = _I(9)
R_ATRS = _I(10)
N_RINGS = _I(11)

# ---- rolling-moment accumulators (af / ai rows); single series use y == 0
M_RHO = _I(0)  # (r_A, r_B) over W_r log returns
M_BETA = _I(1)  # (p_B, p_A) over W_b bars: x = p_B, y = p_A
M_LP = _I(2)  # (p_B,u-1, p_A,u-1) over the W_z half-life pairs (lagged log prices)
M_CST = _I(3)  # rho over W_r values (NaN-aware)
M_BST = _I(4)  # hedge ratio over W_b values
M_PZ = _I(5)  # (p_B, p_A) over W_z bars: the z window
M_LAA = _I(6)  # (p_A,u-1, r_A,u) over W_z pairs
M_LBA = _I(7)  # (p_B,u-1, r_A,u)
M_LAB = _I(8)  # (p_A,u-1, r_B,u)
M_LBB = _I(9)  # (p_B,u-1, r_B,u)
N_M = _I(10)
# af columns: shifts, shifted sums, last values pushed
AF_CX = _I(0)
AF_CY = _I(1)
AF_SX = _I(2)
AF_SY = _I(3)
AF_SXX = _I(4)
AF_SXY = _I(5)
AF_SYY = _I(6)
AF_PX = _I(7)
AF_PY = _I(8)
N_AF = _I(9)
# ai columns
AI_CNT = _I(0)  # values in the window (<= w)
AI_AGE = _I(1)  # updates since the last exact recompute
AI_RLX = _I(2)  # run length of identical trailing x values
AI_RLY = _I(3)
AI_NAN = _I(4)  # pairs in the window with a NaN
N_AI = _I(5)

# ---- scratch rows (sc)
SC_E = _I(0)  # residuals
SC_W = _I(1)  # IRLS weights
SC_ABS = _I(2)  # |e| (selection is done in place here)
SC_BUF = _I(3)  # band buffer of the banded median
SC_DX = _I(4)  # x - mean(x)
SC_DY = _I(5)  # y - mean(y)
SC_TMP = _I(6)  # element-wise terms summed by the IRLS (Huber rho, weighted squared residuals)
N_SC = _I(7)

# ---- sorted-window rows (sw)
SW_A = _I(0)  # ATR of leg A
SW_B = _I(1)  # ATR of leg B
SW_S = _I(2)  # ATR of the hedged spread

# ---- other non-literal constants passed to helpers (see _I)
SRC_X = _I(0)  # x row of a two-row source array (rolling_window_beta, _switch_screen)
SRC_Y = _I(1)  # y row
_LAG1 = _I(1)  # one step back in a ring
_PAIR = np.bool_(True)  # _acc_refresh: paired accumulator
_SINGLE = np.bool_(False)  # _acc_refresh: single series

# ---- output columns (same order as features.FEATURE_COLUMNS)
O_BETA = _I(0)
O_SPREAD = _I(1)
O_Z = _I(2)
O_DZ = _I(3)
O_ZEMA = _I(4)
O_ATRS = _I(5)
O_VOLR = _I(6)
O_HL = _I(7)
O_RHO = _I(8)
O_CSTAB = _I(9)
O_BSTAB = _I(10)
O_ATRA = _I(11)
O_ATRB = _I(12)
O_ATRRA = _I(13)
O_ATRRB = _I(14)
O_EMAGAP = _I(15)
O_SLOPES = _I(16)
O_RSI = _I(17)
O_ADS = _I(18)
O_ADZ = _I(19)
O_SLOPEZ = _I(20)
O_KAPPA = _I(21)  # extra output (features.EXTRA_COLUMNS)
N_OUT = _I(22)

#: Phi^-1(3/4): the MAD of a standard normal (statsmodels ``Gaussian.ppf(3/4)``); MAD/this = sigma.
MAD_NORMAL_C = 0.6744897501960817
#: Relative margin of the counting decision of the Huber switch (exact MAD evaluated inside it).
_SWITCH_MARGIN = 1e-9
#: Half-width of the screen band around the residual-median guess, in residual standard deviations.
_SCREEN_BAND = 0.07
#: Squared drift (in window standard deviations) of a window mean from its accumulator shift that
#: triggers an exact recompute of the running sums.
_DRIFT2 = 0.25
#: A spread variance (under one hedge ratio) at or below this fraction of the variance scale it is
#: computed from, ``Syy + beta^2 Sxx``, is rounding noise of the centred combination: treated as 0.
_VAR_REL = 1e-12

_U1 = np.uint64(1)


# --------------------------------------------------------------------------------------- helpers
@njit(**_OPTS)
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


@njit(**_OPTS)
def _middle_inplace(a: np.ndarray, n: int) -> tuple[float, float]:
    """The two middle order statistics ``(a_(k1), a_(k2))``, ``k1 = (n-1)//2``, ``k2 = n//2``, of
    ``a[:n]`` (equal for odd n); reorders ``a``."""
    h = n >> 1
    hi = _select(a, n, h)
    if n & 1:
        return hi, hi
    lo = a[0]
    for i in range(1, h):
        if a[i] > lo:
            lo = a[i]
    return lo, hi


@njit(**_OPTS)
def _median_inplace(a: np.ndarray, n: int) -> float:
    """Median of ``a[:n]`` (mean of the two middle values for even n, as numpy); reorders ``a``."""
    lo, hi = _middle_inplace(a, n)
    return hi if n & 1 else (lo + hi) / 2.0


@njit(**_OPTS)
def _middle_banded(
    v: np.ndarray, n: int, guess: float, half_width: float, buf: np.ndarray
) -> tuple[float, float]:
    """The two middle order statistics of ``v[:n]`` (not reordered), ``buf`` (>= n) as scratch.

    Only the values in ``[guess - half_width, guess + half_width]`` are selected among when that band
    holds the middle order statistics (counted in the same pass); otherwise the whole window is.
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
            top = _select(buf, _I(m), k2 - below)  # _I: no literal-0 specialisation
            if k1 == k2:
                return top, top
            low = buf[0]
            for i in range(1, k2 - below):
                if buf[i] > low:
                    low = buf[i]
            return low, top
    for i in range(n):
        buf[i] = v[i]
    return _middle_inplace(buf, n)


@njit(**_OPTS)
def _median_banded(
    v: np.ndarray, n: int, guess: float, half_width: float, buf: np.ndarray
) -> float:
    """Exact median of ``v[:n]`` (not reordered) using ``buf`` (>= n) as scratch.

    Only the values in ``[guess - half_width, guess + half_width]`` are selected among when that band
    holds the middle order statistics; otherwise the whole window is.
    """
    lo, hi = _middle_banded(v, n, guess, half_width, buf)
    return hi if n & 1 else (lo + hi) / 2.0


@njit(**_INLINE)
def _end(cnt: int, cap: int) -> int:
    """One past the newest value of a ring holding ``cnt >= 1`` values: the window of the last
    ``w <= cap`` values is ``rb[r, end - w : end]`` (oldest first)."""
    return ((cnt - 1) & (cap - 1)) + cap + 1


@njit(**_INLINE)
def _last(rb: np.ndarray, r: int, cnt: int, cap: int, lag: int) -> float:
    """Value ``lag`` steps back in ring ``r`` (lag 0 = newest; ``lag < cap``)."""
    return rb[r, ((cnt - 1) & (cap - 1)) + cap - lag]


@njit(**_INLINE)
def _push(rb: np.ndarray, r: int, cnt: int, cap: int, v: float) -> int:
    pos = cnt & (cap - 1)
    rb[r, pos] = v
    rb[r, pos + cap] = v
    return cnt + 1


# ------------------------------------------------------------------ rolling-moment accumulators
@njit(**_INLINE)
def _acc_push(
    af: np.ndarray, ai: np.ndarray, k: int, x: float, y: float, xo: float, yo: float, w: int
) -> None:
    """Add the pair ``(x, y)`` to accumulator ``k``; drop ``(xo, yo)`` once it holds ``w`` pairs.

    ``(xo, yo)`` must be the pair pushed ``w`` updates earlier (ignored while filling). Pairs with a
    NaN are counted in ``AI_NAN`` and left out of the sums. Single series pass ``y = yo = 0``.
    """
    cx = af[k, AF_CX]
    cy = af[k, AF_CY]
    ai[k, AI_RLX] = ai[k, AI_RLX] + 1 if x == af[k, AF_PX] else 1
    ai[k, AI_RLY] = ai[k, AI_RLY] + 1 if y == af[k, AF_PY] else 1
    af[k, AF_PX] = x
    af[k, AF_PY] = y
    if x == x and y == y:
        dx = x - cx
        dy = y - cy
        af[k, AF_SX] += dx
        af[k, AF_SY] += dy
        af[k, AF_SXX] += dx * dx
        af[k, AF_SXY] += dx * dy
        af[k, AF_SYY] += dy * dy
    else:
        ai[k, AI_NAN] += 1
    if ai[k, AI_CNT] == w:
        if xo == xo and yo == yo:
            dx = xo - cx
            dy = yo - cy
            af[k, AF_SX] -= dx
            af[k, AF_SY] -= dy
            af[k, AF_SXX] -= dx * dx
            af[k, AF_SXY] -= dx * dy
            af[k, AF_SYY] -= dy * dy
        else:
            ai[k, AI_NAN] -= 1
    else:
        ai[k, AI_CNT] += 1
    ai[k, AI_AGE] += 1


@njit(**_INLINE)
def _acc_due(af: np.ndarray, ai: np.ndarray, k: int, w: int) -> bool:
    """True when the full accumulator ``k`` is due for its exact recompute.

    Due every ``w`` updates, and as soon as a window mean has drifted from its shift by more than
    ``sqrt(_DRIFT2)`` window standard deviations (``sum(d)^2 / n > _DRIFT2 * css``, for x or y):
    the rounding error of the add/subtract updates grows with ``sum(d^2) = css + sum(d)^2 / n``, so
    this keeps it within a small multiple of the rounding of ``css`` itself. Never while the window
    holds a NaN (the sums exclude it; the recompute waits until it has left).
    """
    if ai[k, AI_CNT] != w or ai[k, AI_NAN] != 0:
        return False
    if ai[k, AI_AGE] >= w:
        return True
    sx = af[k, AF_SX]
    sy = af[k, AF_SY]
    return (1.0 + _DRIFT2) * sx * sx > _DRIFT2 * w * af[k, AF_SXX] or (
        1.0 + _DRIFT2
    ) * sy * sy > _DRIFT2 * w * af[k, AF_SYY]


@njit(**_OPTS)
def _acc_refresh(
    af: np.ndarray,
    ai: np.ndarray,
    k: int,
    src: np.ndarray,
    rx: int,
    x0: int,
    ry: int,
    y0: int,
    n: int,
    pair: bool,
) -> None:
    """Recompute the sums of accumulator ``k`` exactly from its window.

    The window is ``src[rx, x0 : x0 + n]`` (and ``src[ry, y0 : y0 + n]`` when ``pair``). The new
    shifts are the current window means (from the running sums, accurate to rounding), so the
    shifted sums start near zero again. Only valid when the window holds no NaN.
    """
    cx = af[k, AF_CX] + af[k, AF_SX] / n
    cy = af[k, AF_CY] + af[k, AF_SY] / n if pair else 0.0
    sx0 = 0.0
    sx1 = 0.0
    xx0 = 0.0
    xx1 = 0.0
    sy0 = 0.0
    sy1 = 0.0
    xy0 = 0.0
    xy1 = 0.0
    yy0 = 0.0
    yy1 = 0.0
    i = 0
    while i + 2 <= n:
        dx0 = src[rx, x0 + i] - cx
        dx1 = src[rx, x0 + i + 1] - cx
        sx0 += dx0
        sx1 += dx1
        xx0 += dx0 * dx0
        xx1 += dx1 * dx1
        if pair:
            dy0 = src[ry, y0 + i] - cy
            dy1 = src[ry, y0 + i + 1] - cy
            sy0 += dy0
            sy1 += dy1
            xy0 += dx0 * dy0
            xy1 += dx1 * dy1
            yy0 += dy0 * dy0
            yy1 += dy1 * dy1
        i += 2
    if i < n:
        dx0 = src[rx, x0 + i] - cx
        sx0 += dx0
        xx0 += dx0 * dx0
        if pair:
            dy0 = src[ry, y0 + i] - cy
            sy0 += dy0
            xy0 += dx0 * dy0
            yy0 += dy0 * dy0
    af[k, AF_CX] = cx
    af[k, AF_CY] = cy
    af[k, AF_SX] = sx0 + sx1
    af[k, AF_SY] = sy0 + sy1
    af[k, AF_SXX] = xx0 + xx1
    af[k, AF_SXY] = xy0 + xy1
    af[k, AF_SYY] = yy0 + yy1
    ai[k, AI_AGE] = 0


@njit(**_INLINE)
def _acc_stats(af: np.ndarray, ai: np.ndarray, k: int) -> tuple[float, float, float, float, float]:
    """(mean_x, mean_y, Sxx, Sxy, Syy) of the window of accumulator ``k`` (centred sums).

    A window of identical x (or y) values gives exactly ``Sxx = Sxy = 0`` (``Syy = Sxy = 0``) and
    the mean equal to that value.
    """
    n = ai[k, AI_CNT]
    sx = af[k, AF_SX]
    sy = af[k, AF_SY]
    mx = af[k, AF_CX] + sx / n
    my = af[k, AF_CY] + sy / n
    sxx = af[k, AF_SXX] - sx * sx / n
    syy = af[k, AF_SYY] - sy * sy / n
    sxy = af[k, AF_SXY] - sx * sy / n
    if sxx < 0.0:
        sxx = 0.0
    if syy < 0.0:
        syy = 0.0
    if ai[k, AI_RLX] >= n:
        mx = af[k, AF_PX]
        sxx = 0.0
        sxy = 0.0
    if ai[k, AI_RLY] >= n:
        my = af[k, AF_PY]
        syy = 0.0
        sxy = 0.0
    return mx, my, sxx, sxy, syy


# ---------------------------------------------------------------------- sorted window (medians)
@njit(**_INLINE)
def _sorted_push(sw: np.ndarray, row: int, cnt: int, old: float, has_old: bool, new: float) -> None:
    """Sorted window ``sw[row, :cnt]``: replace one ``old`` by ``new`` (or insert ``new``).

    Sorted-array insertion/deletion: the position ``i`` of ``old`` (= number of values < old) and
    the insertion point of ``new`` (= number of values <= new) are counted in one integer-only pass
    (vectorised; faster than two latency-bound binary searches at these sizes), then the elements
    between the two positions are shifted by one. The shift loops run on unsigned indices, so numba
    emits no negative-index wraparound test and LLVM turns them into vector moves.
    """
    r = np.uint64(row)
    n_lt_old = 0
    n_le_new = 0
    for q in range(cnt):
        v = sw[row, q]
        n_lt_old += v < old
        n_le_new += v <= new
    if not has_old:
        # insert: slide row[j .. cnt-1] (all > new) one step right, place new at j
        j = np.uint64(n_le_new)
        k = np.uint64(cnt)
        while k > j:
            sw[r, k] = sw[r, k - _U1]
            k -= _U1
        sw[r, j] = new
        return
    i = np.uint64(n_lt_old)  # sw[row, i] == old
    if new >= old:
        # slide row[i+1 .. j] (all <= new) one step left, place new at j
        j = np.uint64(n_le_new) - _U1
        k = i
        while k < j:
            sw[r, k] = sw[r, k + _U1]
            k += _U1
    else:
        # slide row[j .. i-1] (all > new) one step right, place new at j
        j = np.uint64(n_le_new)
        k = i
        while k > j:
            sw[r, k] = sw[r, k - _U1]
            k -= _U1
    sw[r, j] = new


@njit(**_INLINE)
def _sorted_median(sw: np.ndarray, row: int, n: int) -> float:
    h = n >> 1
    if n & 1:
        return sw[row, h]
    return (sw[row, h - 1] + sw[row, h]) / 2.0


@njit(**_INLINE)
def _slope_index(src: np.ndarray, r: int, start: int, n: int) -> float:
    """OLS slope of ``y = src[r, start : start + n]`` on 0..n-1.

    ``sum((i - (n-1)/2) (y_i - y_last)) / (n (n^2-1) / 12)``: ``sum(i - (n-1)/2) = 0`` exactly, so
    subtracting the last value only removes the level. Two partial sums shorten the dependency
    chain.
    """
    c = src[r, start + n - 1]
    mx = (n - 1) / 2.0
    s0 = 0.0
    s1 = 0.0
    i = 0
    while i + 2 <= n:
        s0 += (i - mx) * (src[r, start + i] - c)
        s1 += (i + 1 - mx) * (src[r, start + i + 1] - c)
        i += 2
    if i < n:
        s0 += (i - mx) * (src[r, start + i] - c)
    return (s0 + s1) / (n * (n * n - 1.0) / 12.0)


@njit(**_INLINE)
def _screen_decision(n: int, below: int, above: int, n_fire: int, n_keep: int) -> int:
    """Decision of the switch screen from its counts (see :func:`_switch_screen`): 1, 0 or -1."""
    if below > (n - 1) >> 1 or above > n - 1 - (n >> 1):
        return -1  # the band does not provably hold the median
    h = n >> 1
    if n_fire >= h + 1:
        return 1  # more than half the deviations are below theta: MAD < theta
    if n_keep <= (h if n & 1 else h - 1):
        return 0  # the upper middle deviation is above theta: MAD > theta
    return -1


@njit(**_INLINE)
def _screen_counts(
    e: np.ndarray, row: int, n: int, guess: float, delta: float, theta: float
) -> tuple[int, int, int]:
    """Screen of the Huber switch on ``e[row, :n]``: (decision, count below, count above the band).

    See :func:`_switch_screen` for the decision (1, 0 or -1); the counts are those of values below
    ``guess - delta`` and above ``guess + delta``. The counting loop is integer-only, so it compiles
    to vector code.
    """
    if not (abs(guess) < np.inf and delta > 0.0):
        return -1, 0, 0
    lo = guess - delta
    hi = guess + delta
    t_fire = theta * (1.0 - _SWITCH_MARGIN) - delta
    t_keep = theta * (1.0 + _SWITCH_MARGIN) + delta
    below = 0
    above = 0
    n_fire = 0
    n_keep = 0
    for i in range(n):
        v = e[row, i]
        d = abs(v - guess)
        below += 1 if v < lo else 0
        above += 1 if v > hi else 0
        n_fire += 1 if d < t_fire else 0
        n_keep += 1 if d <= t_keep else 0
    # _I(...): numba would otherwise also compile a copy for literal-0 counts (see compile notes)
    decision = _screen_decision(n, _I(below), _I(above), _I(n_fire), _I(n_keep))
    return decision, below, above


@njit(**_OPTS)
def _switch_screen(e: np.ndarray, n: int, guess: float, delta: float, theta: float) -> int:
    """Decide the Huber switch from a median guess in one counting pass, when that is conclusive.

    If at most ``(n-1)//2`` values lie below ``guess - delta`` and at most ``n - 1 - n//2`` above
    ``guess + delta``, the middle order statistics (hence the median ``m``) lie within ``delta`` of
    ``guess``, so ``|e - m|`` is within ``delta`` of ``|e - guess|``. Counting ``|e - guess|``
    against ``theta -/+ delta`` (with the switch margin) then bounds the number of deviations
    ``|e - m|`` below ``theta`` from both sides. Returns 1 (MAD < theta: switch), 0 (MAD > theta:
    no switch) or -1 (inconclusive: compute the median and the MAD exactly).
    """
    return _screen_counts(e.reshape((1, e.shape[0])), SRC_X, n, guess, delta, theta)[0]


@njit(**_INLINE)
def _sum_row(sc: np.ndarray, row: int, n: int) -> float:
    """``sum(sc[row, :n])`` with four partial sums (fixed order, so deterministic)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    i = 0
    while i + 4 <= n:
        s0 += sc[row, i]
        s1 += sc[row, i + 1]
        s2 += sc[row, i + 2]
        s3 += sc[row, i + 3]
        i += 4
    while i < n:
        s0 += sc[row, i]
        i += 1
    return (s0 + s1) + (s2 + s3)


@njit(**_INLINE)
def _residuals(
    src: np.ndarray,
    rx: int,
    ry: int,
    start: int,
    n: int,
    mx: float,
    my: float,
    b: float,
    sc: np.ndarray,
) -> float:
    """OLS residuals ``e_i = (y_i - my) - b (x_i - mx)`` into ``sc[SC_E]``; returns ``sum(e^2)``.

    ``x = src[rx, start : start + n]``, ``y = src[ry, ...]``. An element-wise pass (vectorised)
    stores ``e`` and ``e^2``, then :func:`_sum_row` adds the squares in a fixed order.
    """
    for i in range(n):
        ei = (src[ry, start + i] - my) - b * (src[rx, start + i] - mx)
        sc[SC_E, i] = ei
        sc[SC_TMP, i] = ei * ei
    return _sum_row(sc, SC_TMP, n)


@njit(**_OPTS)
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


@njit(**_INLINE)
def _weighted_sums(sc: np.ndarray, n: int) -> tuple[float, float, float, float, float]:
    """(sum w, sum w dx, sum w dy, sum w dx^2, sum w dx dy) over the IRLS scratch rows.

    Two interleaved partial sums per quantity (fixed order) shorten the dependency chains.
    """
    w0 = 0.0
    w1 = 0.0
    x0 = 0.0
    x1 = 0.0
    y0 = 0.0
    y1 = 0.0
    xx0 = 0.0
    xx1 = 0.0
    xy0 = 0.0
    xy1 = 0.0
    i = 0
    while i + 2 <= n:
        wa = sc[SC_W, i]
        wb = sc[SC_W, i + 1]
        dxa = sc[SC_DX, i]
        dxb = sc[SC_DX, i + 1]
        dya = sc[SC_DY, i]
        dyb = sc[SC_DY, i + 1]
        wdxa = wa * dxa
        wdxb = wb * dxb
        w0 += wa
        w1 += wb
        x0 += wdxa
        x1 += wdxb
        y0 += wa * dya
        y1 += wb * dyb
        xx0 += wdxa * dxa
        xx1 += wdxb * dxb
        xy0 += wdxa * dya
        xy1 += wdxb * dyb
        i += 2
    if i < n:
        wa = sc[SC_W, i]
        dxa = sc[SC_DX, i]
        dya = sc[SC_DY, i]
        wdxa = wa * dxa
        w0 += wa
        x0 += wdxa
        y0 += wa * dya
        xx0 += wdxa * dxa
        xy0 += wdxa * dya
    return w0 + w1, x0 + x1, y0 + y1, xx0 + xx1, xy0 + xy1


@njit(**_OPTS)
def _huber_irls(
    src: np.ndarray,
    rx: int,
    ry: int,
    start: int,
    n: int,
    mx: float,
    my: float,
    b: float,
    ss: float,
    huber_t: float,
    maxiter: int,
    tol: float,
    sc: np.ndarray,
) -> float:
    """Huber IRLS slope of ``y`` on ``x`` (windows as in :func:`_residuals`) from the OLS fit.

    ``b`` is the OLS slope, ``sc[SC_E]`` its residuals (sum of squares ``ss``), ``mx``, ``my`` the
    window means. Replicates ``statsmodels.RLM(y, [1, x], HuberT(huber_t)).fit(scale_est='mad',
    conv='dev', tol=tol, maxiter=maxiter)``: scale ``= median(|e|) / 0.67449`` re-estimated after
    every weighted fit, weights ``min(1, t / |e / scale|)``, stop when the deviance
    ``sum(rho(e / s_wls))`` (``s_wls`` = weighted residual variance ``sum(w e^2) / (n - 2)``) changes
    by ``<= tol`` or after ``maxiter`` fits counting the start (OLS) fit, or when the scale is 0.

    Per iteration (statsmodels often needs all 50 on these windows): an element-wise pass for the
    Huber rho of the current residuals and the next weights (no reduction, so it vectorises), one
    pass of weighted sums around the OLS means (corrected two-pass), an element-wise residual pass,
    and the median of ``|e|``, selected among the values within a band around the previous median:
    no residual moved by more than ``|d(b ax - ay)| + |db| max|dx|``, so neither did the two middle
    order statistics (the band is still checked, with the whole window as fallback).
    """
    df = n - 2.0
    t = huber_t
    half_t2 = 0.5 * t * t
    max_dx = 0.0
    for i in range(n):
        dxi = src[rx, start + i] - mx
        sc[SC_DX, i] = dxi
        sc[SC_DY, i] = src[ry, start + i] - my
        sc[SC_ABS, i] = abs(sc[SC_E, i])
        max_dx = max(max_dx, abs(dxi))
    mid_lo, mid_hi = _middle_inplace(sc[SC_ABS], n)
    med_abs = mid_hi if n & 1 else (mid_lo + mid_hi) / 2.0
    scale = med_abs / MAD_NORMAL_C  # robust.scale.mad(resid, center=0)
    s_wls = ss / df  # ``scale`` of the start (OLS) fit, used by RLM.deviance
    # the residuals are e_i = (dy_i - ay) - b (dx_i - ax); the OLS fit has ax = ay = 0
    b_prev = b
    ax_prev = 0.0
    ay_prev = 0.0
    it = 1
    dev_prev = 0.0
    while True:
        # rho(e / s_wls) of the current residuals (deviance) and the weights of the next fit
        inv_s = 1.0 / s_wls
        t_scale = t * scale
        for i in range(n):
            a = abs(sc[SC_E, i])
            z = a * inv_s
            sc[SC_TMP, i] = 0.5 * z * z if z <= t else z * t - half_t2
            sc[SC_W, i] = 1.0 if a <= t_scale else t_scale / a
        dev = _sum_row(sc, SC_TMP, n)
        if it > 1 and not (abs(dev - dev_prev) > tol and it < maxiter):
            break
        dev_prev = dev
        if scale == 0.0:
            break
        # weighted least squares: sums around the OLS means, then around the weighted means
        sw_, swx, swy, swxx, swxy = _weighted_sums(sc, n)
        ax = swx / sw_
        ay = swy / sw_
        b = (swxy - swx * ay) / (swxx - swx * ax)
        for i in range(n):
            ei = (sc[SC_DY, i] - ay) - b * (sc[SC_DX, i] - ax)
            sc[SC_E, i] = ei
            sc[SC_ABS, i] = abs(ei)
            sc[SC_TMP, i] = sc[SC_W, i] * ei * ei
        sse_w = _sum_row(sc, SC_TMP, n)
        # every residual moved by at most ``shift``, hence so did every order statistic of |e|:
        # the new middle order statistics lie within ``shift`` of the previous ones, i.e. within
        # ``shift + gap / 2`` of the previous median (plus a rounding margin)
        shift = abs((b * ax - b_prev * ax_prev) - (ay - ay_prev)) + abs(b - b_prev) * max_dx
        b_prev = b
        ax_prev = ax
        ay_prev = ay
        half_width = (shift + 0.5 * (mid_hi - mid_lo)) * (1.0 + 1e-9) + 1e-12 * med_abs
        mid_lo, mid_hi = _middle_banded(sc[SC_ABS], n, med_abs, half_width, sc[SC_BUF])
        med_abs = mid_hi if n & 1 else (mid_lo + mid_hi) / 2.0
        scale = med_abs / MAD_NORMAL_C
        s_wls = sse_w / df
        it += 1
    return b


@njit(**_INLINE)
def window_beta(
    src: np.ndarray,
    rx: int,
    ry: int,
    start: int,
    n: int,
    mx: float,
    my: float,
    sxx: float,
    sxy: float,
    syy: float,
    med_guess: float,
    ratio_thr: float,
    huber_t: float,
    maxiter: int,
    tol: float,
    sc: np.ndarray,
) -> tuple[float, bool, float]:
    """Raw beta of ``y`` on ``x`` (with intercept) over one window, with the Huber switch.

    ``x = src[rx, start : start + n]``, ``y = src[ry, ...]``. OLS from the window moments (``mx``,
    ``my`` means; ``sxx``, ``sxy``, ``syy`` centred sums); if
    ``std(e, ddof=1) / (median(|e - median(e)|) / 0.67449) > ratio_thr`` the slope is re-estimated
    by Huber IRLS (:func:`_huber_irls`). ``med_guess`` is a guess of the OLS residual median (it
    only affects the speed; NaN = none). ``sc`` is scratch, shape (N_SC, >= n).

    Returns (beta, huber_used, next median guess): the exact residual median when it had to be
    computed, else the guess moved by the screen's interpolation. beta is NaN when ``x`` is constant.
    """
    if not sxx > 0.0:
        return np.nan, False, med_guess
    b = sxy / sxx
    ss = _residuals(src, rx, ry, start, n, mx, my, b, sc)
    std_e = math.sqrt(ss / (n - 1))
    delta = _SCREEN_BAND * std_e
    screen, below, above = _screen_counts(
        sc, SC_E, n, med_guess, delta, std_e * MAD_NORMAL_C / ratio_thr
    )
    if screen >= 0:
        # the band holds the median: move the guess to its linear interpolation in the band
        inside = n - below - above
        if inside > 0:
            med_guess = (med_guess - delta) + 2.0 * delta * (0.5 * n - below) / inside
        if screen == 0:
            return b, False, med_guess
    else:
        e = sc[SC_E]
        med_guess = _median_banded(e, n, med_guess, delta, sc[SC_BUF])
        if not _huber_switch(e, n, med_guess, std_e, ratio_thr, sc[SC_ABS]):
            return b, False, med_guess
    b = _huber_irls(src, rx, ry, start, n, mx, my, b, ss, huber_t, maxiter, tol, sc)
    return b, True, med_guess


@njit(**_INLINE)
def _beta_update(
    af: np.ndarray,
    ai: np.ndarray,
    src: np.ndarray,
    rx: int,
    ry: int,
    end: int,
    x_new: float,
    y_new: float,
    x_old: float,
    y_old: float,
    w: int,
    med_guess: float,
    ratio_thr: float,
    huber_t: float,
    maxiter: int,
    tol: float,
    sc: np.ndarray,
) -> tuple[float, bool, float]:
    """Push one bar into the beta accumulator and estimate the raw beta once the window is full.

    The window is ``src[rx, end - w : end]`` (x) and ``src[ry, ...]`` (y), including the new values
    (only read once full); ``x_old`` and ``y_old`` are the values leaving it. Shared by
    :func:`update_bar` and :func:`rolling_window_beta`, which therefore give bit-identical raw
    betas. Returns (beta or NaN while filling, huber_used, next median guess).
    """
    _acc_push(af, ai, M_BETA, x_new, y_new, x_old, y_old, w)
    if ai[M_BETA, AI_CNT] < w:
        return np.nan, False, med_guess
    if _acc_due(af, ai, M_BETA, w):
        _acc_refresh(af, ai, M_BETA, src, rx, end - w, ry, end - w, w, _PAIR)
    mx, my, sxx, sxy, syy = _acc_stats(af, ai, M_BETA)
    return window_beta(
        src, rx, ry, end - w, w, mx, my, sxx, sxy, syy,
        med_guess, ratio_thr, huber_t, maxiter, tol, sc,
    )  # fmt: skip


@njit(**_OPTS)
def _kalman_init(
    af: np.ndarray,
    ai: np.ndarray,
    rb: np.ndarray,
    sf: np.ndarray,
    fp: np.ndarray,
    nb: int,
    cap: int,
    wb: int,
    pa: float,
    pb: float,
) -> None:
    """Kalman hedge ratio before its start: collect the first ``wb`` bars, then initialise.

    The state mean is the OLS fit ``p_A = alpha + beta p_B`` over the first ``wb`` bars, its
    covariance the OLS coefficient covariance ``s2 (X'X)^-1`` with ``s2`` the residual variance
    (ddof 2). The observation variance is ``fp[FP_KVE]``, or ``s2`` when that is NaN. Nothing is
    initialised while ``p_B`` is constant or the variance in use is not positive (it retries with
    the next window).
    """
    _acc_push(
        af, ai, M_BETA, pb, pa, _last(rb, R_PB, nb, cap, wb), _last(rb, R_PA, nb, cap, wb), wb
    )
    if ai[M_BETA, AI_CNT] < wb:
        return
    if _acc_due(af, ai, M_BETA, wb):
        st = _end(nb, cap) - wb
        _acc_refresh(af, ai, M_BETA, rb, R_PB, st, R_PA, st, wb, _PAIR)
    mx, my, sxx, sxy, syy = _acc_stats(af, ai, M_BETA)
    if not sxx > 0.0:
        return
    b = sxy / sxx
    s2 = max(syy - b * sxy, 0.0) / (wb - 2.0)
    ve = fp[FP_KVE]
    if ve != ve:  # NaN: the residual variance of the first window
        ve = s2
    if not ve > 0.0:
        return
    sf[SF_BETA] = b
    sf[SF_KA] = my - b * mx
    sf[SF_KP11] = s2 * (1.0 / wb + mx * mx / sxx)
    sf[SF_KP12] = -s2 * mx / sxx
    sf[SF_KP22] = s2 / sxx
    sf[SF_KVE] = ve


@njit(**_INLINE)
def _kalman_step(sf: np.ndarray, fp: np.ndarray, pa: float, pb: float) -> float:
    """One Kalman filter step of the hedge ratio on bar ``(p_A, p_B)``; returns ``e / sqrt(Q)``.

    State ``(alpha, beta)`` is a random walk with covariance ``W = q ve I`` (``q = fp[FP_KQ] =
    delta / (1 - delta)``), observation ``p_A = alpha + beta p_B + eps``, ``var(eps) = ve``.
    Predict ``R = P + W``; innovation ``e = p_A - (alpha + beta p_B)`` with variance
    ``Q = x' R x + ve``, ``x = (1, p_B)``; gain ``K = R x / Q``; update ``(alpha, beta) += K e``,
    ``P = R - (R x)(R x)' / Q``.
    """
    ve = sf[SF_KVE]
    wq = fp[FP_KQ] * ve
    r11 = sf[SF_KP11] + wq
    r12 = sf[SF_KP12]
    r22 = sf[SF_KP22] + wq
    beta = sf[SF_BETA]
    e = pa - (sf[SF_KA] + beta * pb)
    g1 = r11 + r12 * pb
    g2 = r12 + r22 * pb
    q = g1 + g2 * pb + ve
    k1 = g1 / q
    k2 = g2 / q
    sf[SF_KA] += k1 * e
    sf[SF_BETA] = beta + k2 * e
    sf[SF_KP11] = r11 - k1 * g1
    sf[SF_KP12] = r12 - k1 * g2
    sf[SF_KP22] = r22 - k2 * g2
    return e / math.sqrt(q)


# ------------------------------------------------------------------------------ per-bar update
@njit(**_INLINE)
def _wilder(acc: float, x: float, k: int, period: int) -> float:
    """Wilder average of the k-th input (1-based): running sum while k < period, mean at k == period,
    then ``((period - 1) * prev + x) / period``."""
    if k < period:
        return acc + x
    if k == period:
        return (acc + x) / period
    return ((period - 1) * acc + x) / period


@njit(**_INLINE)
def update_bar(
    ip: np.ndarray,
    fp: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    rb: np.ndarray,
    sw: np.ndarray,
    sc: np.ndarray,
    af: np.ndarray,
    ai: np.ndarray,
    oa: float,
    ha: float,
    la: float,
    ca: float,
    ob: float,
    hb: float,
    lb: float,
    cb: float,
    out: np.ndarray,
    col: int,
) -> int:
    """Consume one closed bar per leg and write the 21 features for it into ``out[:, col]``.

    Returns 0, or 1 (leg A) / 2 (leg B) when a price is NaN, infinite or <= 0; the state is then left
    unchanged and ``out`` untouched. The hot path indexes the state arrays directly (no array views:
    each view would cost a reference-count round trip).
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
        out[k, col] = np.nan

    nb = si[SI_NBARS]
    pa = math.log(ca)
    pb = math.log(cb)

    # ---- legs: log returns, true ranges, Wilder ATR and its median baseline
    ra = 0.0
    rb_ = 0.0
    if nb >= 1:
        ra = pa - sf[SF_PPA]
        rb_ = pb - sf[SF_PPB]
        nret = si[SI_NRET]
        _push(rb, R_RA, nret, cap, ra)
        nret = _push(rb, R_RB, nret, cap, rb_)
        si[SI_NRET] = nret
        # rho over the last wr log returns (running moments)
        _acc_push(
            af, ai, M_RHO, ra, rb_,
            _last(rb, R_RA, nret, cap, wr), _last(rb, R_RB, nret, cap, wr), wr,
        )  # fmt: skip
        if nret >= wr:
            if _acc_due(af, ai, M_RHO, wr):
                st = _end(nret, cap) - wr
                _acc_refresh(af, ai, M_RHO, rb, R_RA, st, R_RB, st, wr, _PAIR)
            _ma, _mb, saa, sab, sbb = _acc_stats(af, ai, M_RHO)
            rho = sab / math.sqrt(saa * sbb) if (saa > 0.0 and sbb > 0.0) else np.nan
            out[O_RHO, col] = rho
            nrho = _push(rb, R_RHO, si[SI_NRHO], cap, rho)
            si[SI_NRHO] = nrho
            # corr_stability: variance of the last wr rho values (NaN while one is NaN)
            _acc_push(af, ai, M_CST, rho, 0.0, _last(rb, R_RHO, nrho, cap, wr), 0.0, wr)
            if nrho >= wr:
                if _acc_due(af, ai, M_CST, wr):
                    st = _end(nrho, cap) - wr
                    _acc_refresh(af, ai, M_CST, rb, R_RHO, st, R_RHO, st, wr, _SINGLE)
                if ai[M_CST, AI_NAN] == 0:
                    out[O_CSTAB, col] = _acc_stats(af, ai, M_CST)[2] / (wr - 1)
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
            _sorted_push(sw, SW_A, fill, old_a, has_old, atra)
            _sorted_push(sw, SW_B, fill, old_b, has_old, atrb)
            _push(rb, R_ATRA, cnt, cap, atra)
            cnt = _push(rb, R_ATRB, cnt, cap, atrb)
            si[SI_NATRL] = cnt
            out[O_ATRA, col] = atra
            out[O_ATRB, col] = atrb
            if cnt >= wmed:
                med_a = _sorted_median(sw, SW_A, wmed)
                med_b = _sorted_median(sw, SW_B, wmed)
                out[O_ATRRA, col] = atra / med_a if med_a > 0.0 else np.nan
                out[O_ATRRB, col] = atrb / med_b if med_b > 0.0 else np.nan
    sf[SF_PCA] = ca
    sf[SF_PCB] = cb
    pa_prev = sf[SF_PPA]
    pb_prev = sf[SF_PPB]
    sf[SF_PPA] = pa
    sf[SF_PPB] = pb
    _push(rb, R_PA, nb, cap, pa)
    nb = _push(rb, R_PB, nb, cap, pb)
    si[SI_NBARS] = nb

    # ---- window moments of the log prices (z) and of the half-life pairs (lagged price, return)
    _acc_push(af, ai, M_PZ, pb, pa, _last(rb, R_PB, nb, cap, wz), _last(rb, R_PA, nb, cap, wz), wz)
    if ai[M_PZ, AI_CNT] == wz and _acc_due(af, ai, M_PZ, wz):
        st = _end(nb, cap) - wz
        _acc_refresh(af, ai, M_PZ, rb, R_PB, st, R_PA, st, wz, _PAIR)
    if nb >= 2:
        nret = si[SI_NRET]
        olb = _last(rb, R_PB, nb, cap, wz + 1)  # lagged prices leaving the window
        ola = _last(rb, R_PA, nb, cap, wz + 1)
        ora = _last(rb, R_RA, nret, cap, wz)  # returns leaving the window
        orb = _last(rb, R_RB, nret, cap, wz)
        _acc_push(af, ai, M_LP, pb_prev, pa_prev, olb, ola, wz)
        _acc_push(af, ai, M_LAA, pa_prev, ra, ola, ora, wz)
        _acc_push(af, ai, M_LBA, pb_prev, ra, olb, ora, wz)
        _acc_push(af, ai, M_LAB, pa_prev, rb_, ola, orb, wz)
        _acc_push(af, ai, M_LBB, pb_prev, rb_, olb, orb, wz)
        if nret >= wz:
            stp = _end(nb, cap) - 1 - wz  # lagged prices p_{u-1}
            str_ = _end(nret, cap) - wz  # returns r_u
            if _acc_due(af, ai, M_LP, wz):
                _acc_refresh(af, ai, M_LP, rb, R_PB, stp, R_PA, stp, wz, _PAIR)
            if _acc_due(af, ai, M_LAA, wz):
                _acc_refresh(af, ai, M_LAA, rb, R_PA, stp, R_RA, str_, wz, _PAIR)
            if _acc_due(af, ai, M_LBA, wz):
                _acc_refresh(af, ai, M_LBA, rb, R_PB, stp, R_RA, str_, wz, _PAIR)
            if _acc_due(af, ai, M_LAB, wz):
                _acc_refresh(af, ai, M_LAB, rb, R_PA, stp, R_RB, str_, wz, _PAIR)
            if _acc_due(af, ai, M_LBB, wz):
                _acc_refresh(af, ai, M_LBB, rb, R_PB, stp, R_RB, str_, wz, _PAIR)

    # ---- hedge ratio beta_t (rolling OLS/Huber + EMA, or Kalman filter)
    beta_prev = sf[SF_BETA]
    z_kf = np.nan
    if ip[IP_METHOD] == METHOD_OLS:
        braw, hub, med = _beta_update(
            af, ai, rb, R_PB, R_PA, _end(nb, cap),
            pb, pa, _last(rb, R_PB, nb, cap, wb), _last(rb, R_PA, nb, cap, wb), wb,
            sf[SF_EMED], fp[FP_HRATIO], fp[FP_HT], ip[IP_MAXIT], fp[FP_HTOL], sc,
        )  # fmt: skip
        sf[SF_EMED] = med
        if hub:
            si[SI_NHUBER] += 1
        if braw == braw:
            if beta_prev == beta_prev:
                ab = fp[FP_ABETA]
                sf[SF_BETA] = (1.0 - ab) * beta_prev + ab * braw
            else:
                sf[SF_BETA] = braw
    elif beta_prev == beta_prev:
        z_kf = _kalman_step(sf, fp, pa, pb)
    else:
        _kalman_init(af, ai, rb, sf, fp, nb, cap, wb, pa, pb)
    beta = sf[SF_BETA]
    if beta == beta:
        out[O_BETA, col] = beta
        out[O_SPREAD, col] = pa - beta * pb
        # hedged spread: H = 0 at the first hedge ratio, then H_t = H_{t-1} + r_A - beta_{t-1} r_B
        hedged = beta_prev == beta_prev
        h = ra - beta_prev * rb_ if hedged else 0.0
        hs = sf[SF_H] + h if hedged else 0.0
        sf[SF_H] = hs
        ns = si[SI_NS]
        _push(rb, R_BETA, ns, cap, beta)
        ns = _push(rb, R_H, ns, cap, hs)
        si[SI_NS] = ns
        # beta_stability over wb hedge ratios
        _acc_push(af, ai, M_BST, beta, 0.0, _last(rb, R_BETA, ns, cap, wb), 0.0, wb)
        if ns >= wb:
            if _acc_due(af, ai, M_BST, wb):
                st = _end(ns, cap) - wb
                _acc_refresh(af, ai, M_BST, rb, R_BETA, st, R_BETA, st, wb, _SINGLE)
            m, _my, css, _sxy, _syy = _acc_stats(af, ai, M_BST)
            out[O_BSTAB, col] = math.sqrt(css / (wb - 1)) / (abs(m) + fp[FP_BEPS])
        # EMA fast/slow of H (MACD convention, seeded with the first H)
        if ns == 1:
            sf[SF_EMAF] = hs
            sf[SF_EMAS] = hs
        else:
            a_fast = fp[FP_AFAST]
            a_slow = fp[FP_ASLOW]
            sf[SF_EMAF] = (1.0 - a_fast) * sf[SF_EMAF] + a_fast * hs
            sf[SF_EMAS] = (1.0 - a_slow) * sf[SF_EMAS] + a_slow * hs
        out[O_EMAGAP, col] = sf[SF_EMAF] - sf[SF_EMAS]
        # |h|, spread ATR (close-only TR = |h|) and RSI on h, both Wilder
        if hedged:
            tr = abs(h)
            out[O_ADS, col] = tr
            nds = ns - 1
            sf[SF_ATRS] = _wilder(sf[SF_ATRS], tr, nds, natr)
            if nds >= natr:
                atrs = sf[SF_ATRS]
                out[O_ATRS, col] = atrs
                cnt = si[SI_NATRS]
                has_old = cnt >= wmed
                old_s = _last(rb, R_ATRS, cnt, cap, wmed - 1) if has_old else 0.0
                _sorted_push(sw, SW_S, wmed if has_old else cnt, old_s, has_old, atrs)
                cnt = _push(rb, R_ATRS, cnt, cap, atrs)
                si[SI_NATRS] = cnt
                if cnt >= wmed:
                    med_s = _sorted_median(sw, SW_S, wmed)
                    out[O_VOLR, col] = atrs / med_s if med_s > 0.0 else np.nan
            sf[SF_RSIG] = _wilder(sf[SF_RSIG], h if h > 0.0 else 0.0, nds, nrsi)
            sf[SF_RSIL] = _wilder(sf[SF_RSIL], -h if h < 0.0 else 0.0, nds, nrsi)
            if nds >= nrsi:
                avl = sf[SF_RSIL]
                if avl > 0.0:
                    out[O_RSI, col] = 100.0 - 100.0 / (1.0 + sf[SF_RSIG] / avl)
                else:
                    out[O_RSI, col] = 100.0
        # half-life: OLS dx_u = a + b x_{u-1} over the last wz bars, x_u = p_A,u - beta_t p_B,u
        if si[SI_NRET] >= wz:
            b2 = beta * beta
            _mx, _my, lxx, lxy, lyy = _acc_stats(af, ai, M_LP)
            den = lyy - 2.0 * beta * lxy + b2 * lxx
            if den > _VAR_REL * (lyy + b2 * lxx):
                num = (
                    _acc_stats(af, ai, M_LAA)[3]
                    - beta * (_acc_stats(af, ai, M_LBA)[3] + _acc_stats(af, ai, M_LAB)[3])
                    + b2 * _acc_stats(af, ai, M_LBB)[3]
                )
                kappa = -num / den
                out[O_KAPPA, col] = kappa
                hl_hi = fp[FP_HLHI]
                hl = math.log(2.0) / kappa if kappa > 0.0 else hl_hi
                out[O_HL, col] = min(max(hl, fp[FP_HLLO]), hl_hi)
        # z: the spread under today's beta against its own window mean and std (rolling OLS),
        # or the Kalman innovation over its predicted std; sd_x also scales slope_spread
        sd_x = np.nan
        if ai[M_PZ, AI_CNT] == wz:
            mb, ma, sbb, sab, saa = _acc_stats(af, ai, M_PZ)
            b2 = beta * beta
            var_x = saa - 2.0 * beta * sab + b2 * sbb
            if var_x > _VAR_REL * (saa + b2 * sbb):
                sd_x = math.sqrt(var_x / (wz - 1))
        zc = fp[FP_ZCLIP]
        has_z = False
        z = np.nan
        if ip[IP_METHOD] == METHOD_OLS:
            if ai[M_PZ, AI_CNT] == wz:
                has_z = True
                if sd_x == sd_x:
                    z = min(max(((pa - ma) - beta * (pb - mb)) / sd_x, -zc), zc)
        elif hedged:
            has_z = True
            z = min(max(z_kf, -zc), zc)
        if has_z:
            out[O_Z, col] = z
            nz = _push(rb, R_Z, si[SI_NZ], cap, z)
            si[SI_NZ] = nz
            if z == z:
                if sf[SF_ZEMA] == sf[SF_ZEMA]:
                    az = fp[FP_AZ]
                    sf[SF_ZEMA] = (1.0 - az) * sf[SF_ZEMA] + az * z
                else:
                    sf[SF_ZEMA] = z
            out[O_ZEMA, col] = sf[SF_ZEMA]
            if nz >= 2:
                dz = z - _last(rb, R_Z, nz, cap, _LAG1)
                out[O_DZ, col] = dz
                out[O_ADZ, col] = abs(dz)
            if nz >= ws:
                out[O_SLOPEZ, col] = _slope_index(rb, R_Z, _end(nz, cap) - ws, ws)
        if ns >= ws and sd_x == sd_x:
            out[O_SLOPES, col] = _slope_index(rb, R_H, _end(ns, cap) - ws, ws) / sd_x
    if nb <= ip[IP_WARM]:
        for k in range(N_OUT):
            out[k, col] = np.nan
    return 0


@njit(**_NO_NRT)
def run_bars(
    ip: np.ndarray,
    fp: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    rb: np.ndarray,
    sw: np.ndarray,
    sc: np.ndarray,
    af: np.ndarray,
    ai: np.ndarray,
    ohlc_a: np.ndarray,
    ohlc_b: np.ndarray,
    out: np.ndarray,
) -> int:
    """Loop :func:`update_bar` over aligned (n, 4) OHLC arrays; returns the first bad row or -1.

    ``out`` is feature-major, shape (N_OUT, n): ``compute_features`` wraps its transpose in the
    DataFrame without a copy, and ``PairFeatureState`` calls this with n = 1, so batch and live run
    the very same compiled loop. Compiled without the NRT: nothing is allocated, and skipping the
    reference counting of the state arrays saves about a third of the time per bar.
    """
    n = ohlc_a.shape[0]
    for t in range(n):
        st = update_bar(
            ip, fp, si, sf, rb, sw, sc, af, ai,
            ohlc_a[t, 0], ohlc_a[t, 1], ohlc_a[t, 2], ohlc_a[t, 3],
            ohlc_b[t, 0], ohlc_b[t, 1], ohlc_b[t, 2], ohlc_b[t, 3],
            out, t,
        )  # fmt: skip
        if st != 0:
            return t
    return -1


@njit(**_NO_NRT)
def run_batch(
    ip: np.ndarray,
    fp: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    rb: np.ndarray,
    sw: np.ndarray,
    sc: np.ndarray,
    af: np.ndarray,
    ai: np.ndarray,
    ohlc_a: np.ndarray,
    ohlc_b: np.ndarray,
    out: np.ndarray,
) -> int:
    """:func:`run_bars` with a row-major ``out`` of shape (n, N_OUT) (any memory layout)."""
    return run_bars(ip, fp, si, sf, rb, sw, sc, af, ai, ohlc_a, ohlc_b, out.T)


@njit(**_OPTS)
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

    Runs the same accumulator and median-guess chain as :func:`update_bar` (through
    :func:`_beta_update`), so the values are bit-identical to the raw betas behind the features.
    """
    n = x.shape[0]
    beta = np.full(n, np.nan)
    used = np.zeros(n, dtype=np.bool_)
    src = np.empty((2, n))
    src[SRC_X] = x
    src[SRC_Y] = y
    sc = np.empty((N_SC, w))
    af = np.zeros((N_M, N_AF))
    ai = np.zeros((N_M, N_AI), dtype=np.int64)
    af[:, AF_PX] = np.nan
    af[:, AF_PY] = np.nan
    med = np.nan
    for t in range(n):
        old = t - w if t >= w else t
        b, h, med = _beta_update(
            af, ai, src, SRC_X, SRC_Y, t + 1, x[t], y[t], x[old], y[old], w,
            med, ratio_thr, huber_t, maxiter, tol, sc,
        )  # fmt: skip
        beta[t] = b
        used[t] = h
    return beta, used


@njit(**_OPTS)
def common_positions(ta: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the common values of two strictly increasing int64 arrays (merge, O(n_a + n_b))."""
    na = ta.shape[0]
    nb = tb.shape[0]
    ia = np.empty(min(na, nb), dtype=np.int64)
    ib = np.empty(min(na, nb), dtype=np.int64)
    i = 0
    j = 0
    m = 0
    while i < na and j < nb:
        u = ta[i]
        v = tb[j]
        if u == v:
            ia[m] = i
            ib[m] = j
            m += 1
            i += 1
            j += 1
        elif u < v:
            i += 1
        else:
            j += 1
    return ia[:m], ib[:m]


@njit(**_OPTS)
def gather_ohlc(
    o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, pos: np.ndarray
) -> tuple[np.ndarray, int, int]:
    """(n, 4) array of the rows ``pos`` of four price columns, and the first bad (row, column).

    A price is bad when it is NaN, infinite or <= 0; (-1, -1) when every price is usable.
    """
    n = pos.shape[0]
    arr = np.empty((n, 4))
    bad_row = -1
    bad_col = -1
    for t in range(n):
        p = pos[t]
        arr[t, 0] = o[p]
        arr[t, 1] = h[p]
        arr[t, 2] = lo[p]
        arr[t, 3] = c[p]
        if bad_row < 0:
            for j in range(4):
                v = arr[t, j]
                if not (0.0 < v < np.inf):
                    bad_row = t
                    bad_col = j
                    break
    return arr, bad_row, bad_col


def new_state(
    ip: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fresh (si, sf, rb, sw, sc, af, ai) arrays for the parameters ``ip``."""
    cap = int(ip[IP_C])
    si = np.zeros(N_SI, dtype=np.int64)
    sf = np.zeros(N_SF, dtype=np.float64)
    for k in (SF_BETA, SF_ZEMA, SF_EMED):
        sf[k] = np.nan
    rb = np.zeros((N_RINGS, 2 * cap), dtype=np.float64)
    sw = np.zeros((3, int(ip[IP_WMED])), dtype=np.float64)
    sc = np.zeros((N_SC, int(ip[IP_WB])), dtype=np.float64)
    af = np.zeros((N_M, N_AF), dtype=np.float64)
    af[:, AF_PX] = np.nan  # no previous value: the first push starts every run length at 1
    af[:, AF_PY] = np.nan
    ai = np.zeros((N_M, N_AI), dtype=np.int64)
    return si, sf, rb, sw, sc, af, ai
