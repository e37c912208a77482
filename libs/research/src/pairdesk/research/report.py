"""Self-contained HTML backtest reports (spec 004 §ml-assets-analytics レポーティング,
§backtest-assets-engine 出力): :func:`render_report` per pair (KPI table with 95% CIs, adoption
check, equity, drawdown, z-score with entries/exits, trade-return histogram, model outputs) and
:func:`render_portfolio_report` for the portfolio of a ``bt run`` (portfolio KPIs, equity and
drawdown, PnL by pair, per-pair table, funnel, drawdown events, ruin, the ``bt scan`` table);
charts are embedded as PNG."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
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


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_portfolio_report(
    path: Path,
    *,
    title: str,
    in_sample: bool,
    kpi_rows: Sequence[Mapping[str, Any]],
    adoption: Mapping[str, Any],
    stamps: Mapping[str, Any],
    daily_equity: pd.DataFrame,
    pair_daily_equity: Mapping[str, pd.DataFrame],
    pair_rows: Sequence[Mapping[str, Any]],
    funnel: Mapping[str, Any],
    dd_events: Sequence[Mapping[str, Any]],
    ruin_ts: str | None,
    warnings: list[str],
    candidates: pd.DataFrame | None = None,
) -> Path:
    """Write the portfolio ``report.html`` of ``bt run`` at ``path`` (self-contained, PNG charts).

    Sections: an IN-SAMPLE banner (when ``in_sample``) and the run's warnings; portfolio KPIs
    with block-bootstrap 95% CIs and the adoption rule on the portfolio; charts of the portfolio
    equity with each pair's equity contribution, the portfolio drawdown and the PnL by pair (bar
    chart); the per-pair table; the signal funnel; drawdown events against ``dd_policy`` levels
    and ruin; the ``bt scan`` chosen pairs (``candidates``, when the universe has a sibling
    ``candidates.csv``); provenance.

    Parameters
    ----------
    kpi_rows : rows ``kpi, value, ci_low, ci_high`` (fractions, not percent).
    adoption : criterion → ``{"value", "threshold", "pass"}`` plus ``"passed"``.
    stamps : provenance shown verbatim.
    daily_equity : portfolio ``date, equity, dd`` (USD, fraction).
    pair_daily_equity : pair id → that pair's ``date, equity, dd`` (each on the shared capital).
    pair_rows : per pair ``pair_id`` + the columns of the per-pair table (``total_pnl`` USD).
    funnel : summed ``candidates, passed_theta1, vetoed_by_ai2, entries``.
    dd_events : drawdown-level changes of the simulation (``ts`` UTC ISO, ``scope`` = ``PORTFOLIO``
        or a pair id, ``level`` normal/warn/halt/flatten, ``dd`` fraction of ``E_0``;
        :attr:`pairdesk.quant.portfolio.PortfolioResult.dd_events`).
    ruin_ts : close time (UTC ISO) of the ruin step (account liquidated) or None.
    warnings : one-line warnings of the run (infeasible θ, in-sample …).
    candidates : the scan's ``candidates.csv``; its ``selected`` rows (all rows without that
        column) are shown, first 50.
    """
    charts: list[tuple[str, str]] = []
    dates = pd.to_datetime(daily_equity["date"])

    fig, ax = plt.subplots(figsize=(10, 3.4))
    ax.plot(dates, daily_equity["equity"], lw=1.6, color="#1f4e79", label="portfolio")
    for pid, deq in pair_daily_equity.items():
        ax.plot(pd.to_datetime(deq["date"]), deq["equity"], lw=0.8, alpha=0.7, label=pid)
    ax.set_ylabel("equity (USD)")
    ax.set_title("Portfolio equity (daily, UTC close) and each pair's equity on the shared capital")
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    charts.append(("Portfolio equity", _png(fig)))

    fig, ax = plt.subplots(figsize=(10, 2.6))
    ax.fill_between(dates, -daily_equity["dd"], 0, color="#b03a2e", alpha=0.6)
    for ev in dd_events:
        if ev["scope"] == "PORTFOLIO" and ev["level"] != "normal":
            ax.axvline(pd.Timestamp(str(ev["ts"])).tz_localize(None), color="k", ls=":", lw=0.8)  # type: ignore[arg-type]
    ax.set_ylabel("drawdown (fraction)")
    ax.set_title("Portfolio drawdown, fraction of E_0 (dotted: portfolio dd_policy level changes)")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    charts.append(("Portfolio drawdown", _png(fig)))

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(pair_rows) + 2), 3.0))
    names = [str(r["pair_id"]) for r in pair_rows]
    pnl = [float(r["total_pnl"]) for r in pair_rows]
    ax.bar(names, pnl, color=["#1e8449" if v >= 0 else "#b03a2e" for v in pnl])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("net PnL (USD)")
    ax.set_title("PnL by pair (contribution to the portfolio)")
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    charts.append(("PnL by pair", _png(fig)))

    kpi_html = _table(["KPI", "value", "CI low", "CI high"],
                      [[r["kpi"], r["value"], r.get("ci_low", ""), r.get("ci_high", "")] for r in kpi_rows])
    adopt_html = _table(["criterion", "value", "threshold", "result"],
                        [[k, v["value"], v["threshold"], "PASS" if v["pass"] else "FAIL"]
                         for k, v in adoption.items() if isinstance(v, Mapping)])
    pair_cols = [c for c in (pair_rows[0].keys() if pair_rows else []) if c != "pair_id"]
    pair_html = _table(["pair_id", *pair_cols], [[r["pair_id"], *[r[c] for c in pair_cols]] for r in pair_rows])
    funnel_html = _table(["AI1 candidate bars", "return_prob > θ1", "vetoed by AI2", "blocked by DD policy",
                          "refused by caps/margin", "entries"],
                         [[funnel["candidates"], funnel["passed_theta1"], funnel["vetoed_by_ai2"], funnel["blocked"],
                           funnel["refused"], funnel["entries"]]])
    if dd_events:
        dd_html = _table(["time (UTC)", "scope", "level", "drawdown (fraction of E_0)"],
                         [[e["ts"], e["scope"], e["level"], e["dd"]] for e in dd_events])
    else:
        dd_html = "<p>No drawdown level change (dd_policy) during the run.</p>"
    ruin_html = (f"<p><b>RUIN</b> at {html.escape(ruin_ts)} (equity at the maintenance margin; account "
                 "liquidated)</p>") if ruin_ts else "<p>Ruin: none.</p>"
    scan_html = ""
    if candidates is not None:
        chosen = candidates
        if "selected" in candidates.columns:
            chosen = candidates[candidates["selected"].astype(str).str.lower().isin({"true", "1"})]
        shown = chosen.head(50)
        scan_html = (f"<h2 id='scan'>Pairs chosen by bt scan ({len(chosen)} of {len(candidates)} candidates in "
                     "candidates.csv)</h2>"
                     + _table([str(c) for c in shown.columns], shown.astype(object).values.tolist()))
    stamp_html = "".join(f"<tr><td>{_fmt(k)}</td><td><code>{_fmt(v)}</code></td></tr>" for k, v in stamps.items())
    imgs = "".join(f"<h3>{html.escape(t)}</h3><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'/>"
                   for t, b in charts)
    banner = ("<p style='background:#b03a2e;color:#fff;padding:8px;font-weight:bold'>IN-SAMPLE: the period overlaps "
              "the model's training period; these KPIs are not out-of-sample.</p>") if in_sample else ""
    warn_html = "".join(f"<p style='color:#b03a2e'><b>warning:</b> {html.escape(w)}</p>" for w in warnings)
    verdict = "PASS" if adoption.get("passed") else "FAIL"
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>{banner}{warn_html}
<h2 id='portfolio-kpis'>Portfolio KPIs (block-bootstrap 95% CI)</h2>{kpi_html}
<h2 id='adoption'>Adoption rule on the portfolio (spec 004 §採用判定): {verdict}</h2>{adopt_html}
<h2 id='charts'>Portfolio equity, drawdown and PnL by pair</h2>{imgs}
<h2 id='pairs'>Per-pair results (diagnostics)</h2>{pair_html}
<h2 id='funnel'>Signal funnel (all pairs)</h2>{funnel_html}
<h2 id='dd-events'>Drawdown events (dd_policy levels, portfolio and pairs)</h2>{dd_html}{ruin_html}
{scan_html}
<h2>Provenance</h2><table>{stamp_html}</table></body></html>"""
    path.write_text(doc, encoding="utf-8")
    return path
