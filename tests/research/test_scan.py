"""``bt scan`` end to end on the shipped Binance data (ingested into a temporary store): outputs,
the written universe loads, look-ahead (bars after the formation period change nothing), rows that
cannot be tested, and one-line errors that leave previous outputs untouched.

The drop holds the real BTCUSDT/ETHUSDT 1h bars of 2025-01..2025-06 plus PLANTUSDT, a planted
partner of ETHUSDT (ETH × exp(AR(1) noise, φ = 0.95)), so the scan has a pair it must select.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pairdesk.research.cli import app
from pairdesk.research.scan import run_scan
from pairdesk.research.store import load_pair
from pairdesk.research.universe import load_universe
from statsmodels.tsa.stattools import coint
from typer.testing import CliRunner, Result

runner = CliRunner()
PERIOD = "2025-01:2025-04"
END = pd.Timestamp("2025-05-01", tz="UTC")
SYMS = "BTCUSDT,ETHUSDT,PLANTUSDT"


def _invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _planted(eth: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    u = np.zeros(len(eth))
    e = rng.normal(0, 0.01, len(eth))
    for t in range(1, len(u)):
        u[t] = 0.95 * u[t - 1] + e[t]
    close = np.round(eth["close"].to_numpy() * 0.05 * np.exp(u), 4)
    return pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": eth["volume"]},
        index=eth.index,
    )


def _write_drop(dest: Path, frames: dict[str, pd.DataFrame]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for sym, df in frames.items():
        out = df.reset_index()
        out["ts_utc"] = out["ts_utc"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.to_csv(dest / f"{sym}_1h.csv", index=False)
    return dest


def _ingest(drop: Path, store: Path) -> None:
    r = _invoke(
        "ingest",
        "--source",
        "file",
        "--path",
        drop,
        "--timeframe",
        "1h",
        "--universe",
        "config/universe_crypto.yaml",
        "--store",
        store,
    )
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module")
def frames(crypto_2025: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    btc, eth = crypto_2025
    return {"BTCUSDT": btc, "ETHUSDT": eth, "PLANTUSDT": _planted(eth)}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, frames: dict[str, pd.DataFrame]) -> Path:
    root = tmp_path_factory.mktemp("scan")
    _ingest(_write_drop(root / "drop", frames), root / "store")
    return root / "store"


@pytest.fixture(scope="module")
def scanned(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scan_out") / "cands"
    r = _invoke(
        "bt",
        "scan",
        "--store",
        store,
        "--timeframe",
        "1h",
        "--symbols",
        SYMS,
        "--period",
        PERIOD,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    assert "1 of 3 pairs selected" in r.stdout
    assert "ETHUSDT_PLANTUSDT" in r.stdout
    return out


def test_cli_writes_ranked_candidates_and_a_loadable_universe(scanned: Path, store: Path) -> None:
    pq = pd.read_parquet(scanned / "candidates.parquet")
    csv = pd.read_csv(scanned / "candidates.csv")
    for col in (
        "pair_id",
        "leg_A",
        "leg_B",
        "n_bars",
        "eg_pvalue_ab",
        "eg_pvalue_ba",
        "eg_pvalue",
        "johansen_trace",
        "hedge_ratio",
        "half_life_bars",
        "kappa",
        "hurst",
        "corr_returns",
        "zero_crossings_per_year",
        "spread_sigma_bps",
        "round_trip_cost_bps",
        "qvalue",
        "selected",
        "reason",
    ):
        assert col in pq.columns, col
    assert list(csv["pair_id"]) == list(pq["pair_id"])
    assert np.allclose(csv["eg_pvalue"], pq["eg_pvalue"], rtol=1e-9)
    assert list(pq["rank"]) == [1, 2, 3]
    assert pq["pair_id"].iloc[0] == "ETHUSDT_PLANTUSDT"
    assert list(pq["selected"]) == [True, False, False]
    # the formation window only: no bar at or after the period end
    assert (pd.to_datetime(pq["end"], utc=True) < END).all()
    # the p-value equals statsmodels coint on the same stored, aligned window (the quant tests
    # check every statistic; one call here because coint takes ~1 s on 2.9k bars)
    a, b = load_pair(store, "ETHUSDT", "PLANTUSDT", "1h", "2025-01-01", END)
    rec = pq.iloc[0]
    assert rec["n_bars"] == len(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_ab = coint(np.log(a["close"]), np.log(b["close"]))[1]
    assert rec["eg_pvalue_ab"] == pytest.approx(p_ab, rel=1e-9, abs=1e-15)
    pairs = load_universe(scanned / "universe.yaml")
    assert [p.pair_id for p in pairs] == ["ETHUSDT_PLANTUSDT"]
    assert (pairs[0].leg_a.symbol, pairs[0].leg_b.symbol) == ("ETHUSDT", "PLANTUSDT")
    assert pairs[0].allowed_timeframes == ("1h",)
    doc = yaml.safe_load((scanned / "universe.yaml").read_text())
    assert doc["pairs"][0]["group"] == "scan"
    assert doc["pairs"][0]["leg_B"]["tick_size"] == pytest.approx(1e-4)  # from the stored prices
    meta = (scanned / "scan_meta.json").read_text()
    assert '"n_selected": 1' in meta


def test_universe_input_copies_legs_and_constraints(store: Path, tmp_path: Path) -> None:
    crypto = yaml.safe_load(Path("config/universe_crypto.yaml").read_text())
    plant = {
        **crypto["pairs"][0]["leg_B"],
        "canonical_symbol": "PLANTUSDT",
        "broker_symbol": "PLANT",
        "tick_size": 0.0001,
        "price_precision": 4,
    }
    crypto["pairs"].append(
        {
            "pair_id": "ETHUSDT_PLANTUSDT",
            "group": "test",
            "leg_A": crypto["pairs"][0]["leg_B"],
            "leg_B": plant,
            "constraints": {"min_notional_usd": 25.0, "allowed_timeframes": ["1h", "4h"]},
        }
    )
    uni = tmp_path / "u.yaml"
    uni.write_text(yaml.safe_dump(crypto))
    res = run_scan(store=store, timeframe="1h", period=PERIOD, out=tmp_path / "o", universe=uni)
    assert res.n_selected == 1
    pairs = load_universe(tmp_path / "o" / "universe.yaml")
    assert pairs[0].pair_id == "ETHUSDT_PLANTUSDT"
    assert pairs[0].min_notional_usd == 25.0
    assert pairs[0].allowed_timeframes == ("1h", "4h")
    assert pairs[0].leg_b.spec.tick_size == 0.0001
    assert pairs[0].leg_a.spec.min_lot == crypto["pairs"][0]["leg_B"]["min_lot"]


def test_bars_after_the_formation_period_change_nothing(
    frames: dict[str, pd.DataFrame], scanned: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)

    def perturbed(after: bool) -> dict[str, pd.DataFrame]:
        out = {}
        for sym, df in frames.items():
            df = df.copy()
            mask = (
                (df.index >= END)
                if after
                else (df.index == pd.Timestamp("2025-03-03 10:00", tz="UTC"))
            )
            scale = np.exp(rng.normal(0, 0.2, int(mask.sum())))
            for c in ("open", "high", "low", "close"):
                df.loc[mask, c] = df.loc[mask, c] * scale
            out[sym] = df
        return out

    base = pd.read_parquet(scanned / "candidates.parquet")
    for after in (True, False):
        root = tmp_path / ("after" if after else "inside")
        _ingest(_write_drop(root / "drop", perturbed(after)), root / "store")
        res = run_scan(
            store=root / "store",
            timeframe="1h",
            period=PERIOD,
            out=root / "o",
            symbols=SYMS.split(","),
        )
        got = pd.read_parquet(root / "o" / "candidates.parquet")
        if after:
            pd.testing.assert_frame_equal(got, base)
        else:  # the test has teeth: a bar inside the window does change the statistics
            assert not np.allclose(got["eg_stat_ab"], base["eg_stat_ab"], rtol=0, atol=1e-12)
        assert res.n_selected == 1


def test_rows_without_enough_bars_or_data_carry_a_reason(store: Path, tmp_path: Path) -> None:
    # 2025-04-25..30: ~144 common bars < min_bars 250; GHOSTUSDT has no stored bars at all
    res = run_scan(
        store=store,
        timeframe="1h",
        period="2025-04-25:2025-04-30",
        out=tmp_path / "o",
        symbols=["BTCUSDT", "ETHUSDT", "GHOSTUSDT"],
    )
    why = dict(zip(res.candidates["pair_id"], res.candidates["reason"], strict=True))
    assert re.fullmatch(r"too few common bars \(1\d\d < min_bars 250\)", why["BTCUSDT_ETHUSDT"])
    assert why["BTCUSDT_GHOSTUSDT"].startswith("GHOSTUSDT: no stored 1h bars")
    assert not res.candidates["selected"].any()
    assert "GHOSTUSDT" in res.missing


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (
            ["--symbols", SYMS, "--universe", "config/universe_crypto.yaml"],
            "exactly one of --symbols or --universe",
        ),
        ([], "exactly one of --symbols or --universe"),
        (["--symbols", "BTCUSDT"], "at least 2 symbols"),
        (["--symbols", "BTCUSDT,BTCUSDT"], "duplicate symbol"),
        (["--symbols", SYMS, "--alpha", "1.5"], "alpha must be in"),
        (["--symbols", "BTCUSDT,NOPEUSDT"], "fewer than 2 symbols have usable 1h bars"),
    ],
)
def test_bad_input_one_line_error_and_previous_output_kept(
    store: Path, tmp_path: Path, args: list[str], pattern: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")
    r = _invoke(
        "bt", "scan", "--store", store, "--timeframe", "1h", "--period", PERIOD, "--out", out, *args
    )
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: "), err
    assert "\n" not in err, err
    assert re.search(pattern, err), err
    assert (out / "keep.txt").read_text() == "previous run"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--period", "2025-13:2025-14"], "month must be in 1..12"),
        (["--period", PERIOD, "--timeframe", "2h"], "timeframe '2h' not in"),
    ],
)
def test_bad_period_or_timeframe(
    store: Path, tmp_path: Path, extra: list[str], pattern: str
) -> None:
    r = _invoke("bt", "scan", "--store", store, "--symbols", SYMS, "--out", tmp_path / "o", *extra)
    assert r.exit_code == 2, r.output
    assert re.search(pattern, r.stderr), r.stderr
    assert not (tmp_path / "o").exists()


def test_scan_of_the_shipped_binance_folder(tmp_path: Path) -> None:
    """The README flow on the shipped folder as is: ingest data/binance_spot_1h, scan BTC/ETH."""
    store = tmp_path / "store"
    _ingest(Path("data/binance_spot_1h"), store)
    out = tmp_path / "o"
    r = _invoke(
        "bt",
        "scan",
        "--store",
        store,
        "--timeframe",
        "1h",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--period",
        "2024-10:2025-09",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    row = pd.read_parquet(out / "candidates.parquet").iloc[0]
    a, _ = load_pair(store, "BTCUSDT", "ETHUSDT", "1h", "2024-10-01", "2025-10-01")
    assert row["n_bars"] == len(a)
    assert row["reason"] == ""
    assert 0.0 <= row["eg_pvalue"] <= 1.0
    assert row["hedge_ratio"] > 0  # BTC and ETH move together
    assert row["corr_returns"] > 0.5
    assert row["round_trip_cost_bps"] == pytest.approx(2 * 20.5 * (1 + row["hedge_ratio"]))
