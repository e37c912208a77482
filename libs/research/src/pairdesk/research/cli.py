"""The ``pairdesk`` and ``bt`` command lines (DESIGN.md §3, spec 004 §backtest-assets-engine API/CLI).

``pairdesk ingest`` · ``pairdesk demo`` · ``bt train`` · ``bt run``. Every known failure prints one
line ``error: …`` on stderr and exits with status 2; outputs are written to a temporary folder and
moved into place only when complete, so a failed command leaves nothing half-written. The platform
commands ``pairdesk up`` · ``users`` · ``token`` · ``models`` live in :mod:`pairdesk.research.platform`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pairdesk.research import platform
from pairdesk.research.config import CONFIG_DIR, REPO_ROOT, ConfigError
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="Pairdesk research pipeline on canonical bars.", no_args_is_help=True, add_completion=False)
bt_app = typer.Typer(help="Train models and run backtests (spec 004 §backtest CLI).", no_args_is_help=True,
                     add_completion=False)
app.add_typer(bt_app, name="bt")
console = Console(soft_wrap=True)  # paths and one-line messages are never wrapped
err_console = Console(stderr=True)

T = TypeVar("T")


def _fail(msg: str) -> NoReturn:
    err_console.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; turn expected failures into a one-line error and exit status 2."""
    try:
        return fn()
    except typer.Exit:
        raise
    except (ValueError, KeyError, FileNotFoundError, ConfigError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail(text.strip("'\""))


class _Bars:
    """rich progress bars keyed by step name, as a ``Progress`` callback."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(step, total=total)
        self.progress.update(self.tasks[step], completed=done, total=total)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=False)


@app.command()
def ingest(
    path: Annotated[Path, typer.Option("--path", help="File-drop folder of <SYMBOL>_<tf>.csv[.gz]|.parquet")],
    store: Annotated[Path, typer.Option("--store", help="Parquet store root")],
    timeframe: Annotated[str, typer.Option("--timeframe")] = "1h",
    symbols: Annotated[str | None, typer.Option("--symbols", help="Comma-separated, e.g. XAUUSD,XAGUSD")] = None,
    source: Annotated[str, typer.Option("--source", help="Only 'file' here")] = "file",
    universe: Annotated[Path, typer.Option("--universe", help="Trading hours per symbol")] = CONFIG_DIR / "universe.yaml",
) -> None:
    """Canonicalise, DQ-check and store a file drop (spec 004 §data-assets-pipeline 仕様 v1)."""
    from pairdesk.research.pipeline import run_ingest

    if source != "file":
        _fail(f"unsupported --source {source!r}: only 'file' is available")
    syms = [s.strip().upper() for s in symbols.split(",") if s.strip()] if symbols else None
    report = _guard(lambda: run_ingest(path=path, store=store, timeframe=timeframe, symbols=syms, universe=universe))
    for line in report.lines():
        console.print(line, markup=False, highlight=False)


@bt_app.command("train")
def bt_train(
    universe: Annotated[Path, typer.Option("--universe")],
    period: Annotated[str, typer.Option("--period", help="e.g. 2018-04:2023-12")],
    out: Annotated[Path, typer.Option("--out", help="Model version directory, e.g. models/v1")],
    timeframe: Annotated[str, typer.Option("--timeframe")] = "1h",
    store: Annotated[Path, typer.Option("--store")] = Path("store"),
    pairs: Annotated[str | None, typer.Option("--pairs", help="Subset of pair ids")] = None,
    cost: Annotated[Path, typer.Option("--cost")] = CONFIG_DIR / "cost_table.yaml",
) -> None:
    """Train AI1/AI2 with purged CV + walk-forward and choose θ1/θ2 on out-of-sample predictions."""
    from pairdesk.research.pipeline import run_train

    pair_ids = [p.strip() for p in pairs.split(",")] if pairs else None
    with _progress() as prog:
        summary = _guard(lambda: run_train(universe=universe, period=period, timeframe=timeframe, store=store,
                                           out=out, pair_ids=pair_ids, cost=cost, progress=_Bars(prog)))
    console.print(f"models written to {out}")
    console.print(summary)
    _warn_infeasible(summary)


def _warn_infeasible(summary: dict[str, Any]) -> None:
    """Loud warning when ``bt train``'s θ grid had no feasible cell (params.yaml ``feasible: false``)."""
    theta = summary.get("theta", {})
    if not theta.get("feasible", True):
        err_console.print(
            f"WARNING: no θ cell met the hard constraints (MaxDD / trades per year) on the out-of-sample "
            f"predictions; θ1={theta.get('theta1')} θ2={theta.get('theta2')} is only the best infeasible score "
            f"(params.yaml feasible: false)",
            style="bold red", markup=False, highlight=False,
        )


@bt_app.command("run")
def bt_run(
    universe: Annotated[Path, typer.Option("--universe")],
    period: Annotated[str, typer.Option("--period", help="e.g. 2024-01:2026-05")],
    model_dir: Annotated[Path, typer.Option("--model-dir")],
    out: Annotated[Path, typer.Option("--out")],
    timeframe: Annotated[str, typer.Option("--timeframe")] = "1h",
    cost: Annotated[Path, typer.Option("--cost")] = CONFIG_DIR / "cost_table.yaml",
    store: Annotated[Path, typer.Option("--store")] = Path("store"),
    theta1: Annotated[float | None, typer.Option("--theta1", help="Override θ1 (default: params.yaml)")] = None,
    theta2: Annotated[float | None, typer.Option("--theta2", help="Override θ2 (default: params.yaml)")] = None,
    latency_bars: Annotated[int | None, typer.Option("--latency-bars", help="Fill N bars after the signal bar")] = None,
    pairs: Annotated[str | None, typer.Option("--pairs")] = None,
    allow_in_sample: Annotated[bool, typer.Option(
        "--allow-in-sample",
        help="Run a period overlapping the model's training period (widened by M bars); outputs stamped IN-SAMPLE",
    )] = False,
) -> None:
    """Backtest the combined AI1/AI2 rule with costs on every pair and their portfolio; write bt_* tables
    and report.html. Refuses a period overlapping the model's training period unless --allow-in-sample."""
    from pairdesk.research.pipeline import run_backtest_cli

    pair_ids = [p.strip() for p in pairs.split(",")] if pairs else None
    result = _guard(lambda: run_backtest_cli(universe=universe, period=period, timeframe=timeframe, model_dir=model_dir,
                                             cost=cost, store=store, out=out, theta1=theta1, theta2=theta2,
                                             latency_bars=latency_bars, pair_ids=pair_ids,
                                             allow_in_sample=allow_in_sample))
    print_kpis(result)


@bt_app.command("scan")
def bt_scan(
    period: Annotated[str, typer.Option("--period", help="Formation period, e.g. 2024-10:2025-09")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (candidates.*, universe.yaml)")],
    store: Annotated[Path, typer.Option("--store")] = Path("store"),
    timeframe: Annotated[str, typer.Option("--timeframe")] = "1h",
    symbols: Annotated[str | None, typer.Option("--symbols", help="Comma-separated, e.g. BTCUSDT,ETHUSDT")] = None,
    universe: Annotated[Path | None, typer.Option("--universe", help="Pair up this file's symbols")] = None,
    cost: Annotated[Path, typer.Option("--cost")] = CONFIG_DIR / "cost_table.yaml",
    policy: Annotated[Path, typer.Option("--policy", help="Policy with the scan: section")] = (
        CONFIG_DIR / "backtest_policy.yaml"),
    alpha: Annotated[float | None, typer.Option("--alpha", help="FDR level (default: policy)")] = None,
    max_half_life: Annotated[float | None, typer.Option("--max-half-life", help="Bars (default: policy)")] = None,
    cost_multiple: Annotated[float | None, typer.Option("--cost-multiple", help="k in σ > k × cost")] = None,
    top: Annotated[int, typer.Option("--top", help="Rows of the printed table")] = 15,
) -> None:
    """Pair discovery: Engle–Granger (both orderings), Johansen, half-life, Hurst and costs for every
    pair over the formation period; BH-controlled selection written as a universe.yaml."""
    from pairdesk.research.scan import run_scan

    syms = [s.strip() for s in symbols.split(",")] if symbols is not None else None
    over = {k: v for k, v in (("alpha", alpha), ("half_life_max_bars", max_half_life),
                              ("cost_multiple", cost_multiple)) if v is not None}
    # transient bars: a failure then prints nothing but its one error line
    bars = Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True)
    with bars as prog:
        res = _guard(lambda: run_scan(store=store, timeframe=timeframe, period=period, out=out, symbols=syms,
                                      universe=universe, policy=policy, cost=cost, overrides=over,
                                      progress=_Bars(prog)))
    print_scan(res, timeframe, top)


def print_scan(res: Any, timeframe: str, top: int = 15) -> None:
    """Print ``bt scan``'s ranked table (top ``top`` rows), missing symbols and the selection line."""
    cand = res.candidates
    p = res.params
    table = Table(title=f"bt scan {res.period} {timeframe}: top {min(top, len(cand))} of {len(cand)} pairs",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for c in ("#", "pair", "bars", "EG p", "q", "Joh", "β", "HL", "H", "σbps", "cost", "sel"):
        table.add_column(c, justify="left" if c == "pair" else "right", no_wrap=True)
    for r in cand.head(max(0, top)).to_dict("records"):
        def num(x: Any, fmt: str) -> str:
            return "–" if not isinstance(x, int | float) or x != x else format(x, fmt)
        table.add_row(str(r["rank"]), str(r["pair_id"]), str(r["n_bars"]), num(r["eg_pvalue"], ".3f"),
                      num(r["qvalue"], ".3f"), num(r["johansen_trace"], ".1f"), num(r["hedge_ratio"], ".2f"),
                      num(r["half_life_bars"], ".0f"), num(r["hurst"], ".2f"), num(r["spread_sigma_bps"], ".0f"),
                      num(r["round_trip_cost_bps"], ".0f"), "yes" if r["selected"] else (r["reason"] and "n/a") or "no")
    Console(width=max(console.width, 120), soft_wrap=True).print(table)  # never truncate columns
    for sym, why in res.missing.items():
        console.print(f"warning: {sym}: {why}", markup=False, highlight=False)
    console.print(f"{res.n_selected} of {len(cand)} pairs selected (BH q ≤ {p.alpha:g}, half-life "
                  f"{p.half_life_min_bars:g}..{p.half_life_max_bars:g} bars, σ > {p.cost_multiple:g} × round-trip cost)",
                  markup=False, highlight=False)
    console.print(f"outputs: {res.out} (candidates.parquet, candidates.csv, universe.yaml, scan_meta.json)",
                  markup=False, highlight=False)


def _print_funnel_adoption(res: dict[str, Any], scope: str) -> None:
    f = res["funnel"]
    console.print(
        f"signal funnel ({scope}): {f['candidates']} AI1 candidate bars (|z| ≥ z_entry) → {f['passed_theta1']} with "
        f"return_prob > θ1 (max return_prob {f['max_return_prob']:.3f}) → {f['vetoed_by_ai2']} vetoed by AI2 "
        f"(risk ≥ θ2) → {f['blocked']} blocked by the DD policy, {f['refused']} refused by caps/margin → "
        f"{f['entries']} entries"
    )
    adopt = res["adoption"]
    verdict = "PASS" if adopt["passed"] else "FAIL"
    parts = [f"{k} {v['value']:.3f} vs {v['threshold']} {'ok' if v['pass'] else 'FAIL'}"
             for k, v in adopt.items() if isinstance(v, dict)]
    console.print(f"adoption rule (spec 004 §採用判定) on the {scope}: {verdict}  — " + "; ".join(parts))


def print_kpis(result: dict[str, Any]) -> None:
    """Print the portfolio KPI table (value and block-bootstrap 95% CI), the per-pair table, the
    signal funnel, drawdown events, ruin and the adoption rule on the portfolio."""
    tag = "IN-SAMPLE  " if result.get("in_sample") else ""
    for w in result.get("warnings", []):
        err_console.print(f"WARNING: {w}", style="bold red", markup=False, highlight=False)
    port = result["portfolio"]
    n = port["n_pairs"]
    scope = "portfolio" if n > 1 else "pair"
    name = f"portfolio of {n} pairs" if n > 1 else next(iter(result["pairs"]))
    table = Table(title=f"{tag}{name}  {result['period']}  θ1={port['theta1']} θ2={port['theta2']}")
    for c in ("KPI", "value", "95% CI low", "95% CI high"):
        table.add_column(c, justify="right" if c != "KPI" else "left")
    for row in port["kpi_rows"]:
        table.add_row(row["kpi"], f"{row['value']:.4f}", f"{row['ci_low']:.4f}", f"{row['ci_high']:.4f}")
    console.print(table)
    if n > 1:
        pt = Table(title=f"{tag}per pair (diagnostics; KPIs on E_0 + the pair's daily PnL)")
        cols = ("pair", "trades", "net PnL USD", "ann. return", "Sharpe", "MaxDD", "win rate", "halt rate", "adoption")
        for c in cols:
            pt.add_column(c, justify="left" if c == "pair" else "right")
        for pid, res in result["pairs"].items():
            k = {r["kpi"]: r["value"] for r in res["kpi_rows"]}
            pt.add_row(pid, str(res["trades"]), f"{res['total_pnl']:,.2f}", f"{k['ann_return']:.4f}",
                       f"{k['sharpe']:.3f}", f"{k['max_dd']:.4f}", f"{k['win_rate']:.3f}", f"{k['halt_rate']:.3f}",
                       "PASS" if res["adoption"]["passed"] else "FAIL")
        # rich caps print(width=) at the console's width (80 on a pipe): a wider console for this table
        # so pair ids and PnL are never truncated
        Console(width=max(console.width, 140), soft_wrap=True).print(pt)
    events = port["dd_events"]
    if events:
        for ev in events:
            console.print(f"drawdown event: {ev['ts']} {ev['scope']} → {ev['level']} (dd {ev['dd']:.2%} of E_0)")
    else:
        console.print("drawdown events: none (no dd_policy level change)")
    console.print(f"ruin: {port['ruin']} (account liquidated)" if port["ruin"] else "ruin: none")
    _print_funnel_adoption(port, scope)
    console.print(f"outputs: {result['out']}")
    console.print(f"report: {result['report']}")


#: The main job's data and periods (README "Results on the shipped data"). Formation, training and
#: backtest periods follow each other; training ends two days before the backtest starts, so the
#: backtest lies outside the training period widened by M = 48 hourly bars (the in-sample guard).
DEMO_DATA = "mt5_andre_h1"
DEMO_UNIVERSE = "universe_fx.yaml"
DEMO_FORMATION = "2015-01:2017-12"
DEMO_TRAIN = "2018-01:2020-12-29"
DEMO_RUN = "2021-01:2023-09"


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Working folder")] = Path("demo_out"),
) -> None:
    """The main job on the shipped real data: ingest the 15 FX/metal instruments of one MT5 broker (1h)
    → bt scan on the formation years → bt train on the selected pairs → portfolio bt run on the later
    years, printing the scan table, the portfolio KPIs with CIs, the per-pair table and the report path."""
    from pairdesk.research.pipeline import run_backtest_cli, run_ingest, run_train
    from pairdesk.research.scan import run_scan

    universe = CONFIG_DIR / DEMO_UNIVERSE
    data_dir = REPO_ROOT / "data" / DEMO_DATA
    store, scan_dir, models = out / "store", out / "scan", out / "models" / "v1"
    cost = CONFIG_DIR / "cost_table.yaml"
    console.print(f"[bold]1/4 ingest[/bold] {data_dir} → {store}")
    report = _guard(lambda: run_ingest(path=data_dir, store=store, timeframe="1h", symbols=None, universe=universe))
    for line in report.lines():
        console.print(line, markup=False, highlight=False)
    console.print(f"[bold]2/4 bt scan[/bold] --period {DEMO_FORMATION} (every pair of the {DEMO_UNIVERSE} symbols)")
    with _progress() as prog:
        scan = _guard(lambda: run_scan(store=store, timeframe="1h", period=DEMO_FORMATION, out=scan_dir, symbols=None,
                                       universe=universe, policy=CONFIG_DIR / "backtest_policy.yaml", cost=cost,
                                       overrides={}, progress=_Bars(prog)))
    print_scan(scan, "1h")
    if scan.n_selected == 0:
        _fail(f"bt scan selected no pair over {DEMO_FORMATION}: nothing to train (see {scan_dir / 'candidates.csv'})")
    selected = scan_dir / "universe.yaml"
    console.print(f"[bold]3/4 bt train[/bold] --universe {selected} --period {DEMO_TRAIN}")
    with _progress() as prog:
        summary = _guard(lambda: run_train(universe=selected, period=DEMO_TRAIN, timeframe="1h", store=store,
                                           out=models, pair_ids=None, cost=cost, progress=_Bars(prog)))
    console.print(summary)
    _warn_infeasible(summary)
    console.print(f"[bold]4/4 bt run[/bold] --period {DEMO_RUN} (portfolio of the selected pairs)")
    result = _guard(lambda: run_backtest_cli(universe=selected, period=DEMO_RUN, timeframe="1h", model_dir=models,
                                             cost=cost, store=store, out=out / "bt_out", theta1=None, theta2=None,
                                             latency_bars=None, pair_ids=None))
    print_kpis(result)


# Platform commands (DESIGN.md §3 "Platform, embedded default"): pairdesk up / users / token / models.
app.command("up")(platform.up)
app.add_typer(platform.users_app, name="users")
app.add_typer(platform.token_app, name="token")
app.add_typer(platform.models_app, name="models")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

