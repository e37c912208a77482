"""Self-contained HTML backtest report: KPI table with 95% CIs, adoption check, and four charts
(equity, drawdown, z-score with entries/exits, trade-return histogram) embedded as PNG
(spec 004 §ml-assets-analytics レポーティング, §backtest-assets-engine 出力)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4f}"
    return html.escape(str(v))


def render_report(
    path: Path,
    *,
    title: str,
    kpi_rows: list[Mapping[str, Any]],
    adoption: Mapping[str, Any],
    stamps: Mapping[str, Any],
    daily_equity: pd.DataFrame,
    trades: pd.DataFrame,
    z: pd.Series,
    signals: pd.DataFrame,
    thresholds: Mapping[str, float],
) -> Path:
    """Write ``report.html`` at ``path``.

    Parameters
    ----------
    kpi_rows : rows with keys ``kpi, value, ci_low, ci_high`` (fractions, not percent).
    adoption : criterion → ``{"value", "threshold", "pass"}`` plus ``"passed"`` overall.
    stamps : run_id, model_version, hashes, seed … shown verbatim.
    daily_equity : columns ``date, equity, dd`` (USD, fraction).
    trades : bt_trades frame (``timestamp_entry, timestamp_exit, return_on_capital``).
    z : z-score series indexed by UTC bar time over the backtest period.
    signals : ``return_prob`` (AI1, candidate bars only) and ``risk_score`` (AI2) per bar.
    thresholds : ``theta1``, ``theta2`` — drawn on the model-output histograms so a run with few
        or no trades shows why.
    """
    charts: list[tuple[str, str]] = []
    dates = pd.to_datetime(daily_equity["date"])

    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(dates, daily_equity["equity"], lw=1.2, color="#1f4e79")
    ax.set_ylabel("equity (USD)")
    ax.set_title("Equity (daily, UTC close)")
    ax.grid(alpha=0.3)
    charts.append(("Equity", _png(fig)))

    fig, ax = plt.subplots(figsize=(10, 2.6))
    ax.fill_between(dates, -daily_equity["dd"], 0, color="#b03a2e", alpha=0.6)
    ax.set_ylabel("drawdown (fraction)")
    ax.set_title("Drawdown")
    ax.grid(alpha=0.3)
    charts.append(("Drawdown", _png(fig)))

    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(z.index, z.to_numpy(), lw=0.5, color="#555")
    for lvl in (2.0, -2.0):
        ax.axhline(lvl, color="#999", ls="--", lw=0.8)
    if len(trades):
        te = pd.to_datetime(trades["timestamp_entry"])
        tx = pd.to_datetime(trades["timestamp_exit"])
        ax.scatter(te, trades["z_at_entry"], s=14, marker="^", color="#1e8449", label="entry", zorder=3)
        ax.scatter(tx, trades["z_at_exit"], s=14, marker="v", color="#b03a2e", label="exit", zorder=3)
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylabel("z")
    ax.set_title("Spread z-score with entries and exits")
    charts.append(("z-score and trades", _png(fig)))

    fig, ax = plt.subplots(figsize=(6, 3.2))
    if len(trades):
        ax.hist(trades["return_on_capital"] * 1e4, bins=40, color="#1f4e79", alpha=0.8)
    ax.set_xlabel("trade return on capital (bps)")
    ax.set_ylabel("trades")
    ax.set_title("Trade-return histogram")
    charts.append(("Trade returns", _png(fig)))

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.0))
    rp = signals["return_prob"].dropna()
    axes[0].hist(rp, bins=30, range=(0, 1), color="#1e8449", alpha=0.8)
    axes[0].axvline(thresholds["theta1"], color="k", ls="--", lw=1)
    axes[0].set_title(f"AI1 return_prob on {len(rp)} candidate bars (θ1 dashed)")
    axes[1].hist(signals["risk_score"].dropna(), bins=30, range=(0, 1), color="#b03a2e", alpha=0.8)
    axes[1].axvline(thresholds["theta2"], color="k", ls="--", lw=1)
    axes[1].set_title("AI2 risk_score, all bars (θ2 dashed)")
    charts.append(("Model outputs vs thresholds", _png(fig)))

    kpi_html = "".join(
        f"<tr><td>{_fmt(r['kpi'])}</td><td>{_fmt(r['value'])}</td><td>{_fmt(r.get('ci_low', ''))}</td>"
        f"<td>{_fmt(r.get('ci_high', ''))}</td></tr>"
        for r in kpi_rows
    )
    adopt_html = "".join(
        f"<tr><td>{_fmt(k)}</td><td>{_fmt(v['value'])}</td><td>{_fmt(v['threshold'])}</td>"
        f"<td>{'PASS' if v['pass'] else 'FAIL'}</td></tr>"
        for k, v in adoption.items()
        if isinstance(v, Mapping)
    )
    stamp_html = "".join(f"<tr><td>{_fmt(k)}</td><td><code>{_fmt(v)}</code></td></tr>" for k, v in stamps.items())
    imgs = "".join(f"<h3>{html.escape(t)}</h3><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'/>" for t, b in charts)
    verdict = "PASS" if adoption.get("passed") else "FAIL"
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>KPIs (block-bootstrap 95% CI)</h2><table><tr><th>KPI</th><th>value</th><th>CI low</th><th>CI high</th></tr>{kpi_html}</table>
<h2>Adoption rule (spec 004 §採用判定): {verdict}</h2>
<table><tr><th>criterion</th><th>value</th><th>threshold</th><th>result</th></tr>{adopt_html}</table>
<h2>Charts</h2>{imgs}
<h2>Provenance</h2><table>{stamp_html}</table></body></html>"""
    path.write_text(doc, encoding="utf-8")
    return path
