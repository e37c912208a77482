"""Every dataset layout of the shared data folder ingests unchanged (spec 004 §data-assets-pipeline
仕様 v1; docs/quant-contracts.md §Bars and alignment).

Slices of each folder are committed under tests/data/<folder>/ (cut by tests/data/make_slices.py,
provenance in tests/data/README.md): each spans a DST change, weekends and, where the data has
one, an exchange holiday. The checks are independent of the code under test: grid positions are
read off New York wall clocks with ``zoneinfo``, trading days from ``exchange_calendars`` and the
hand-listed holiday dates.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd
import pytest
from pairdesk.quant.sessions import BarAnchor
from pairdesk.research import store as st
from pairdesk.research.cli import app
from pairdesk.research.ingest import IngestReport, ingest, read_file_drop
from pairdesk.research.settings import load_settings
from pairdesk.research.universe import universe_calendars
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
SLICES = REPO / "tests" / "data"
NY = ZoneInfo("America/New_York")
NY7 = BarAnchor("America/New_York", 7 * 60)

#: folder -> (timeframe, universe file, grid inferred from the data alone,
#:            {symbol: expected bars the data really lacks (real holes, listed in UTC)})
FOLDERS: dict[str, tuple[str, str, BarAnchor, dict[str, list[str]]]] = {
    # UKOIL: no bar at 21:00 London on Maundy Thursday 2024-03-28 (the Brent session closed early
    # before Good Friday; no holiday library lists that early close)
    "mt5_simom1_h1": ("1h", "universe.yaml", BarAnchor(), {"UKOIL": ["2024-03-28T21:00:00Z"]}),
    "mt5_simom1_h4": ("4h", "universe.yaml", NY7, {}),
    "mt5_simom1_d1": ("1d", "universe.yaml", NY7, {}),
    # GBPCAD: the 2019-12-12 23:00Z bar (UK election night) is absent from the source. 1h bars
    # of a whole-hour zone fit the UTC grid, which inference prefers (universe_fx.yaml declares
    # New York + 7h, the same 1h grid)
    "mt5_andre_h1": ("1h", "universe_fx.yaml", BarAnchor(), {"GBPCAD": ["2019-12-12T23:00:00Z"]}),
    "binance_spot_1h": ("1h", "universe.yaml", BarAnchor(), {}),
    "binance_spot_15m": ("15m", "universe.yaml", BarAnchor(), {}),
    "us_equities_daily_2013_2018": ("1d", "universe.yaml", BarAnchor(), {}),
    "pypi_arch_daily": ("1d", "universe.yaml", BarAnchor(), {}),
}


def _ingest(folder: str, store: Path) -> IngestReport:
    tf, universe, _, _ = FOLDERS[folder]
    cals = universe_calendars(REPO / "config" / universe)
    return ingest(SLICES / folder, tf, None, store, cals, load_settings(tf).dq)


def test_slices_are_the_committed_bytes() -> None:
    manifest = json.loads((SLICES / "manifest.json").read_text())
    assert {e["file"].split("/")[0] for e in manifest} == set(FOLDERS)
    for e in manifest:
        data = (SLICES / e["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"], e["file"]


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_folder_ingests_on_its_grid_without_spurious_missing(folder: str, tmp_path: Path) -> None:
    tf, _universe, grid, holes = FOLDERS[folder]
    frames = read_file_drop(SLICES / folder, tf)
    for df in frames.values():
        assert df.attrs["bar_anchor"] == grid
    rep = _ingest(folder, tmp_path / "store")
    assert {s.symbol for s in rep.symbols} == set(frames)
    for s in rep.symbols:
        assert s.rows_read == len(frames[s.symbol])
        assert s.expected > 0
        meta_files = sorted(st.symbol_dir(tmp_path / "store", tf, s.symbol).rglob("__meta.json"))
        missing = [t for m in meta_files for t in json.loads(m.read_text())["missing_ts"]]
        assert missing == holes.get(s.symbol, []), s.symbol
        assert s.quarantined_months == ()


def _utc_hours(index: pd.DatetimeIndex) -> set[int]:
    return set(pd.DatetimeIndex(index).tz_convert("UTC").hour)


def test_mt5_4h_bars_open_on_the_new_york_plus_7_grid_both_sides_of_dst(tmp_path: Path) -> None:
    _ingest("mt5_simom1_h4", tmp_path / "s")
    bars = st.load_bars(tmp_path / "s", "EURUSD", "4h")
    idx = pd.DatetimeIndex(bars.index)
    summer = idx[idx < pd.Timestamp("2018-10-26", tz="UTC")]  # US summer time
    winter = idx[idx > pd.Timestamp("2018-11-05", tz="UTC")]  # after the US change (2018-11-04)
    assert _utc_hours(summer) == {1, 5, 9, 13, 17, 21}
    assert _utc_hours(winter) == {2, 6, 10, 14, 18, 22}
    # every bar opens at server 00/04/08/... = New York wall + 7h on a 4h boundary
    for t in idx:
        wall = t.to_pydatetime().astimezone(NY)
        assert (wall.hour + 7) % 4 == 0
        assert wall.minute == 0


def test_mt5_daily_bars_open_at_new_york_17(tmp_path: Path) -> None:
    _ingest("mt5_simom1_d1", tmp_path / "s")
    idx = pd.DatetimeIndex(st.load_bars(tmp_path / "s", "XAUUSD", "1d").index)
    assert {t.to_pydatetime().astimezone(NY).hour for t in idx} == {17}
    assert _utc_hours(idx) == {21, 22}  # DST 2019-03-10 in between
    # Good Friday 2019-04-19: the bar opening Thursday 17:00 New York is absent and not expected
    assert pd.Timestamp("2019-04-18 21:00", tz="UTC") not in idx


def test_equity_daily_is_the_xnys_trading_date(tmp_path: Path) -> None:
    rep = _ingest("us_equities_daily_2013_2018", tmp_path / "s")
    xnys = xcals.get_calendar("XNYS", start="2016-10-01", end="2017-01-31")
    sessions = {d.date() for d in xnys.sessions_in_range("2016-10-17", "2017-01-13")}
    for s in rep.symbols:
        idx = pd.DatetimeIndex(st.load_bars(tmp_path / "s", s.symbol, "1d").index)
        assert {t.date() for t in idx} == sessions
        assert s.expected == len(sessions)
        assert date(2016, 11, 24) not in {t.date() for t in idx}  # Thanksgiving
    # CL is Colgate-Palmolive on XNYS (not crude oil): the calendar recorded in the partition
    meta = next(st.symbol_dir(tmp_path / "s", "1d", "CL").rglob("__meta.json"))
    cal = json.loads(meta.read_text())["calendar"]
    assert cal["asset_class"] == "equity"
    assert cal["holidays_calendar"] == "XNYS"


def test_symbols_outside_the_universe_get_asset_class_defaults(tmp_path: Path) -> None:
    rep = _ingest("mt5_andre_h1", tmp_path / "fx")  # EURUSD etc. are not in universe.yaml
    assert rep.symbols
    cals = universe_calendars(REPO / "config" / "universe.yaml")
    assert "NZDUSD" not in cals
    frames = ingest(
        SLICES / "mt5_simom1_h1",
        "1h",
        ["NZDUSD"],
        tmp_path / "s",
        cals,
        load_settings("1h").dq,
    )
    (nzd,) = frames.symbols
    assert nzd.missing == 0
    meta = next(st.symbol_dir(tmp_path / "s", "1h", "NZDUSD").rglob("__meta.json"))
    cal = json.loads(meta.read_text())["calendar"]
    assert (cal["asset_class"], cal["holidays_calendar"]) == ("fx", "fx")
    assert cal["week_open"] == {"day": "SUN", "time": "17:00"}


runner = CliRunner()


def test_cli_ingests_a_daily_long_format_drop_and_rejects_a_bad_file(tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        [
            "ingest",
            "--path",
            str(SLICES / "us_equities_daily_2013_2018"),
            "--timeframe",
            "1d",
            "--symbols",
            "KO,PEP",
            "--store",
            str(tmp_path / "s"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "KO: rows_read=62" in r.output
    assert "missing=0" in r.output
    # a 4h file whose bars fit no grid: one line, non-zero exit, nothing written
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "EURUSD_4h.csv").write_text(
        "ts_utc,open,high,low,close\n2024-01-02T00:00:00Z,1,1,1,1\n2024-01-02T01:00:00Z,1,1,1,1\n"
    )
    r = runner.invoke(
        app, ["ingest", "--path", str(bad), "--timeframe", "4h", "--store", str(tmp_path / "b")]
    )
    assert r.exit_code != 0
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.output
    assert "EURUSD_4h.csv" in lines[0]
    assert "not on the 4h grid" in lines[0]
    assert not (tmp_path / "b").exists()
