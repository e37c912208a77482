"""Each numba dispatcher of the quant kernels compiles exactly one specialisation.

A dispatcher compiles (and caches) one machine-code copy per distinct argument *type*: Python int
vs ``np.int64``, a literal constant passed from another kernel, C-contiguous vs strided arrays,
pandas' read-only views. Every extra copy costs seconds of cold JIT time on a fresh clone
(``benchmarks/compile.py``). This test calls the public API with ndarray, pandas and read-only
inputs in a fresh interpreter (so no other test's calls are counted) and checks that every
dispatcher of the features, pair-scan, labels, DQ, metrics and bootstrap modules that was used has
exactly one signature.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import pandas as pd
    from numba.core.registry import CPUDispatcher
    from pairdesk.quant import dq, features, incremental, labels, metrics, pairs, stats
    from pairdesk.quant import _feature_kernels, _pairs_kernels
    from pairdesk.quant.sessions import default_calendar

    rng = np.random.default_rng(7)
    n = 700
    idx = pd.date_range("2024-01-01 00:00", periods=n, freq="h", tz="UTC", name="ts_utc")
    common = np.cumsum(rng.normal(0, 0.002, n))

    def bars(level, noise):
        c = level * np.exp(common + np.cumsum(rng.normal(0, noise, n)))
        o = np.r_[c[0], c[:-1]]
        hi = np.maximum(o, c) * (1 + rng.uniform(0, 1e-3, n))
        lo = np.minimum(o, c) * (1 - rng.uniform(0, 1e-3, n))
        return pd.DataFrame({"open": o, "high": hi, "low": lo, "close": c}, index=idx)

    a, b = bars(2000.0, 0.001), bars(25.0, 0.001)
    # features: plain frames, a read-only copy, and the live state
    f = features.compute_features(a, b)
    ro_a = pd.DataFrame({k: np.asarray(v).copy() for k, v in a.items()}, index=idx)
    for col in ro_a:
        ro_a[col].to_numpy().setflags(write=False)
    features.compute_features(ro_a, b)
    st = incremental.PairFeatureState()
    for t in range(3):
        st.update_array(idx[t], tuple(a.iloc[t, :4]), tuple(b.iloc[t, :4]))

    # pair scan: frame, ndarray, Series and read-only inputs
    la, lb = np.log(a["close"]), np.log(b["close"])
    pairs.scan_pairs(pd.DataFrame({"A": la, "B": lb, "C": la * 0.5 + lb}),
                     pairs.ScanParams(min_bars=300))
    ro = la.to_numpy().copy()
    ro.setflags(write=False)
    for x, y in ((la, lb), (la.to_numpy(), lb.to_numpy()), (ro, lb.to_numpy())):
        pairs.adf_test(x, "c")
        pairs.adf_test(x, "n")
        pairs.engle_granger(x, y)
        pairs.johansen_trace(x, y)
        pairs.half_life(np.asarray(x) - np.asarray(y))
        pairs.hurst_exponent(np.asarray(x) - np.asarray(y))

    # labels on the computed features (pandas columns) and on a plain frame
    ff = f.dropna()
    lp = labels.LabelParams(z_entry=1.0, z_exit=0.3, M=5, speed_k=2, theta_speed=10.0)
    labels.label_ai1(ff, lp)
    labels.label_ai1(pd.DataFrame(ff.to_numpy().copy(), index=ff.index, columns=ff.columns), lp)
    ret = labels.hedged_spread_return(ff, a["close"].loc[ff.index], b["close"].loc[ff.index])
    labels.label_ai2(ff, labels.RiskLabelParams(), ret)
    labels.label_ai2(ff, labels.RiskLabelParams(), pd.Series(ret, index=ff.index))

    # DQ
    raw = a.reset_index()
    dq.apply_dq(raw, default_calendar("XAUUSD"), "1h")

    # metrics and bootstrap: ndarray, Series and list inputs
    eq = 1e5 + np.cumsum(rng.normal(0, 10, n))
    pnl = np.diff(np.r_[1e5, eq])
    tp, tr = rng.normal(0, 50, 30), rng.normal(0, 1e-3, 30)
    ex = np.sort(rng.choice(n, 30, replace=False))
    metrics.compute_kpis(idx, eq, tp, tr, initial_capital=1e5)
    metrics.compute_kpis(pd.Series(idx), pd.Series(eq), list(tp), list(tr), initial_capital=1e5)
    stats.bootstrap_kpis(pnl, idx, ex, tp, tr, initial_capital=1e5, n_samples=20)
    stats.bootstrap_kpis(pd.Series(pnl), pd.Series(idx), list(ex), pd.Series(tp), list(tr),
                         initial_capital=1e5, n_samples=20)

    out = {}
    for mod in (_feature_kernels, _pairs_kernels, labels, dq, metrics, stats):
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod.__name__:
                out[f"{mod.__name__}.{name}"] = [str(s) for s in obj.signatures]
    json.dump(out, sys.stdout)
    """
)


def test_each_dispatcher_compiles_one_specialisation() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sigs: dict[str, list[str]] = json.loads(proc.stdout.strip().splitlines()[-1])
    used = {k: v for k, v in sigs.items() if v}
    # the probe reaches every family: features loop, scan kernel, labels, DQ, KPIs, bootstrap
    for key in (
        "pairdesk.quant._feature_kernels.run_bars",
        "pairdesk.quant._pairs_kernels.scan_kernel",
        "pairdesk.quant._pairs_kernels.adf_autolag",
        "pairdesk.quant.labels._ai1_outcomes",
        "pairdesk.quant.labels._ema_halflife",
        "pairdesk.quant.dq._outlier_kernel",
        "pairdesk.quant.metrics._kpi_core_nb",
        "pairdesk.quant.stats._bootstrap_nb",
    ):
        assert key in used, f"{key} was not compiled by the probe"
    multi = {k: v for k, v in used.items() if len(v) != 1}
    assert not multi, f"dispatchers with more than one specialisation: {multi}"
