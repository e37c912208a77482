"""File-drop ingest and Parquet store (spec 004 §data-assets-pipeline, §監視・運用 隔離/セーフティ).

Real slices (XAUUSD/XAGUSD 2024 Q1, BTCUSDT/ETHUSDT 2025-01) written to tmp folders as file drops.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pairdesk.quant.dq import DQParams
from pairdesk.quant.sessions import BarAnchor, SessionCalendar
from pairdesk.research import store as st
from pairdesk.research.ingest import IngestError, ingest, read_file_drop
from pairdesk.research.store import StoreError, load_bars, load_pair

METALS = SessionCalendar.from_mapping(
    {
        "timezone": "America/New_York",
        "week_open": {"day": "SUN", "time": "18:00"},
        "week_close": {"day": "FRI", "time": "17:00"},
        "daily_breaks": [{"start": "17:00", "end": "18:00"}],
        "holidays_calendar": "metals_us",
    }
)
CRYPTO = SessionCalendar.from_mapping({"timezone": "UTC", "always_open": True})
CALS = {"XAUUSD": METALS, "XAGUSD": METALS, "BTCUSDT": CRYPTO, "ETHUSDT": CRYPTO}
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
COLS = ["open", "high", "low", "close", "volume"]


def write_drop(folder: Path, frames: dict[str, pd.DataFrame], suffix: str = ".csv.gz") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in frames.items():
        out = df.reset_index()
        out["ts_utc"] = pd.DatetimeIndex(out["ts_utc"]).strftime("%Y-%m-%dT%H:%M:%SZ")
        if suffix == ".parquet":
            out.to_parquet(folder / f"{name}{suffix}", index=False)
        else:
            out.to_csv(folder / f"{name}{suffix}", index=False)
    return folder


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def q1(metals_2024: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    xau, xag = metals_2024
    return {
        "XAUUSD": xau.loc["2024-01-01":"2024-03-31"].astype(float),
        "XAGUSD": xag.loc["2024-01-01":"2024-03-31"].astype(float),
    }


def drop_of(q1: dict[str, pd.DataFrame], folder: Path, **overrides: pd.DataFrame) -> Path:
    frames = {f"{s}_1h": overrides.get(s, df) for s, df in q1.items()}
    return write_drop(folder, frames)


# ---------------------------------------------------------------- reading
def test_read_file_drop_formats_and_timezones(tmp_path: Path, q1: dict[str, pd.DataFrame]) -> None:
    xau, xag = q1["XAUUSD"].iloc[:100], q1["XAGUSD"].iloc[:100]
    d = tmp_path / "drop"
    d.mkdir()
    # lower-case file name, upper-case column names, +01:00 offsets, an extra column
    t = xau.reset_index()
    t["ts_utc"] = (
        pd.DatetimeIndex(t["ts_utc"]).tz_convert("Etc/GMT-1").strftime("%Y-%m-%dT%H:%M:%S+01:00")
    )
    t["ts_broker"] = "x"
    t.rename(columns={"open": "Open", "close": " CLOSE "}).to_csv(d / "xauusd_1h.csv", index=False)
    # parquet with naive timestamps (read as UTC) and no volume column
    p = xag.reset_index().drop(columns=["volume"])
    p["ts_utc"] = pd.DatetimeIndex(p["ts_utc"]).tz_localize(None)
    p.to_parquet(d / "XAGUSD_1h.parquet", index=False)
    (d / "NOTES.txt").write_text("ignored")
    write_drop(d, {"XAUUSD_4h": xau.iloc[::4]}, ".csv")  # other timeframe: ignored
    got = read_file_drop(d, "1h", None)
    assert sorted(got) == ["XAGUSD", "XAUUSD"]
    pd.testing.assert_frame_equal(
        got["XAUUSD"], xau.set_axis(xau.index.as_unit("us").rename("ts_utc")), check_freq=False
    )
    pd.testing.assert_frame_equal(
        got["XAGUSD"][COLS[:4]],
        xag[COLS[:4]].set_axis(xag.index.as_unit("us").rename("ts_utc")),
        check_freq=False,
    )
    assert got["XAGUSD"]["volume"].isna().all()
    assert got["XAUUSD"].attrs == {
        "symbol": "XAUUSD",
        "files": ["xauusd_1h.csv"],
        "rows_read": 100,
        "dedupe_drops": 0,
        "bar_anchor": BarAnchor(),
        "bar_anchor_inferred": True,
    }
    assert list(read_file_drop(d, "1h", ["xagusd"])) == ["XAGUSD"]


def test_dedupe_latest_wins(tmp_path: Path, q1: dict[str, pd.DataFrame]) -> None:
    xau = q1["XAUUSD"].iloc[:50]
    later = xau.iloc[[10, 20]].copy()
    later["close"] = later["close"] + 1.0
    shuffled = pd.concat([xau.iloc[25:], xau.iloc[:25], later])  # out of order + duplicates last
    d = write_drop(tmp_path / "d", {"XAUUSD_1h": shuffled}, ".csv")
    # a second file of the same symbol read after the csv (name order) overrides bar 30
    write_drop(d, {"XAUUSD_1h": xau.iloc[[30]].assign(close=7.0)}, ".parquet")
    got = read_file_drop(d, "1h", ["XAUUSD"])["XAUUSD"]
    assert got.index.is_monotonic_increasing
    assert len(got) == 50
    assert got["close"].iloc[10] == xau["close"].iloc[10] + 1.0
    assert got["close"].iloc[20] == xau["close"].iloc[20] + 1.0
    assert got["close"].iloc[30] == 7.0
    assert got.attrs["rows_read"] == 53
    assert got.attrs["dedupe_drops"] == 3
    assert got.attrs["files"] == ["XAUUSD_1h.csv", "XAUUSD_1h.parquet"]


def _csv(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


GOOD_HEADER = "ts_utc,open,high,low,close,volume\n"
ROW1 = "2024-01-02T00:00:00Z,10,11,9,10.5,1\n"
ROW2 = "2024-01-02T01:00:00Z,10.5,11,10,10.7,1\n"


@pytest.mark.parametrize(
    ("files", "timeframe", "symbols", "match"),
    [
        (
            {"XAUUSD_1h.csv": "ts_utc,open,high,volume\n" + "2024-01-02T00:00:00Z,1,1,1\n"},
            "1h",
            None,
            r"XAUUSD_1h.csv: missing column\(s\) low, close",
        ),
        (
            {"XAUUSD_1h.csv": GOOD_HEADER + ROW1 + ROW2 + "2024-13-45T00:00:00Z,1,1,1,1,1\n"},
            "1h",
            None,
            r"unparsable ts_utc '2024-13-45T00:00:00Z' at data row 3",
        ),
        (
            {"XAUUSD_1h.csv": GOOD_HEADER + ROW1 + "2024-01-02T01:00:00Z,10,11,9,,1\n"},
            "1h",
            None,
            r"NaN close price at 2024-01-02T01:00:00Z \(data row 2\)",
        ),
        (
            {"XAUUSD_1h.csv": GOOD_HEADER + "2024-01-02T00:00:00Z,abc,11,9,10,1\n"},
            "1h",
            None,
            r"non-numeric open 'abc'",
        ),
        (
            {
                "XAUUSD_1h.csv": GOOD_HEADER
                + "2024-01-02T00:00:00Z,0,0,0,0,1\n2024-01-02T01:00:00Z,-1,1,-2,1,1\n"
            },
            "1h",
            None,
            "every row has a zero or negative price",
        ),
        ({"XAUUSD_1h.csv": GOOD_HEADER}, "1h", None, "XAUUSD_1h.csv: no data rows"),
        (
            {"XAUUSD_1h.csv": "ts_utc,open,high,low,close\n1704153600,1,1,1,1\n"},
            "1h",
            None,
            r"unparsable ts_utc '1704153600' at data row 1",
        ),
        (
            {"XAUUSD_4h.csv": GOOD_HEADER + ROW1 + ROW2},
            "4h",
            None,
            r"ts_utc 2024-01-02T01:00:00Z at data row 2 is not on the 4h grid",
        ),
        ({"XAUUSD_1h.csv": GOOD_HEADER + ROW1}, "1hour", None, "invalid timeframe '1hour'"),
        (
            {"XAUUSD_1h.csv": GOOD_HEADER + ROW1},
            "4h",
            None,
            r"no <SYMBOL>_4h.* files in .*\(files exist for timeframe\(s\) 1h\)",
        ),
        (
            {"XAUUSD_1h.csv": GOOD_HEADER + ROW1},
            "1h",
            ["XAUUSD", "eurusd"],
            r"unknown symbol\(s\) EURUSD: no EURUSD_1h.csv",
        ),
    ],
)
def test_read_errors(
    tmp_path: Path, files: dict[str, str], timeframe: str, symbols, match: str
) -> None:
    d = tmp_path / "drop"
    for name, text in files.items():
        _csv(d, name, text)
    with pytest.raises(IngestError, match=match):
        read_file_drop(d, timeframe, symbols)


def test_missing_folder_and_calendar_errors(tmp_path: Path) -> None:
    p = tmp_path / "pq"
    p.mkdir()
    pd.DataFrame(
        {"ts_utc": [1704153600], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]}
    ).to_parquet(p / "XAUUSD_1h.parquet")
    with pytest.raises(IngestError, match="ts_utc is numeric"):
        read_file_drop(p, "1h", None)
    with pytest.raises(IngestError, match="file-drop folder not found"):
        read_file_drop(tmp_path / "nope", "1h", None)
    # a declared bar grid that the data does not sit on: one clear line, nothing written
    d = _csv(tmp_path / "d", "XAUUSD_4h.csv", GOOD_HEADER + "2024-01-02T00:00:00Z,1,1,1,1,1\n")
    ny7 = replace(METALS, bar_anchor=BarAnchor("America/New_York", 420))
    with pytest.raises(
        IngestError,
        match=r"XAUUSD_4h.csv: ts_utc 2024-01-02T00:00:00Z at data row 1 is not on the 4h grid of bar_anchor America/New_York \+7h",
    ):
        ingest(d, "4h", None, tmp_path / "store", {"XAUUSD": ny7})
    assert not (tmp_path / "store").exists()  # nothing written


# ---------------------------------------------------------------- ingest
def test_ingest_layout_schema_and_roundtrip(tmp_path: Path, q1: dict[str, pd.DataFrame]) -> None:
    store = tmp_path / "store"
    rep = ingest(drop_of(q1, tmp_path / "drop"), "1h", None, store, CALS, DQParams(), now=NOW)
    assert rep.run_id.startswith("ing-")
    assert [s.symbol for s in rep.symbols] == ["XAGUSD", "XAUUSD"]
    for srep in rep.symbols:
        sym, src = srep.symbol, q1[srep.symbol]
        assert (srep.rows_read, srep.dedupe_drops, srep.replaced_stored) == (len(src), 0, 0)
        assert (srep.partitions_written, srep.partitions_unchanged, srep.quarantined_months) == (
            3,
            0,
            (),
        )
        assert (srep.missing, srep.imputed, srep.dropped_nonpositive) == (0, 0, 0)
        for m in ("2024-01", "2024-02", "2024-03"):
            f = store / "1h" / sym / "2024" / m / f"{sym}_{m}.parquet"
            assert f.is_file()
            meta = json.loads((f.parent / "__meta.json").read_text())
            assert meta["last_refreshed_ts"] == "2026-01-02T03:04:05Z"
            assert meta["window_params"] == DQParams().as_dict()
            assert meta["counts"]["absent"] == 0
            assert meta["dq"]["quarantined"] is False
            assert not (f.parent / "__quarantine.json").exists()
        assert pq.read_schema(f).equals(st.BAR_SCHEMA)
        wm = json.loads((store / "1h" / sym / "__watermark.json").read_text())
        assert wm == {
            "symbol": sym,
            "timeframe": "1h",
            "last_ts": src.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        # parquet rows == input rows (values exact), canonical fields filled
        rows = pd.concat(
            [st.read_partition(p) for p in sorted((store / "1h" / sym).rglob("*.parquet"))]
        )
        assert len(rows) == len(src)
        np.testing.assert_array_equal(rows[COLS].to_numpy(), src[COLS].to_numpy())
        assert set(rows["symbol"]) == {sym}
        assert set(rows["timeframe"]) == {"1h"}
        assert set(rows["source_id"]) == {"file"}
        assert set(rows["ingest_run_id"]) == {rep.run_id}
        assert str(rows["ts_utc"].dt.tz) == "UTC"
        # load_bars = usable rows (all but outlier-flagged ones) with the exact input values
        loaded = load_bars(store, sym.lower(), "1h")
        ok = rows.set_index("ts_utc")["quality_flag"] == "ok"
        assert (~ok).sum() == srep.outliers
        pd.testing.assert_frame_equal(
            loaded, src.loc[ok.to_numpy()].set_axis(loaded.index), check_freq=False
        )
    assert any("XAUUSD: rows_read=" in line for line in rep.lines())


def test_ingest_is_idempotent_byte_for_byte(tmp_path: Path, q1: dict[str, pd.DataFrame]) -> None:
    store, drop = tmp_path / "store", drop_of(q1, tmp_path / "drop")
    first = ingest(drop, "1h", None, store, CALS, now=NOW)
    before = snapshot(store)
    second = ingest(drop, "1h", None, store, CALS, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert snapshot(store) == before
    assert second.run_id == first.run_id
    for s in second.symbols:
        assert (s.partitions_written, s.partitions_unchanged) == (0, 3)
        assert s.replaced_stored == s.rows_read  # every row re-delivered: counted as dedupe drops
        assert s.dedupe_drops_total == s.rows_read


def test_incremental_ingest_equals_one_shot_and_loses_nothing(
    tmp_path: Path, q1: dict[str, pd.DataFrame]
) -> None:
    one = tmp_path / "one"
    ingest(drop_of(q1, tmp_path / "all"), "1h", None, one, CALS, now=NOW)
    inc = tmp_path / "inc"
    jan_feb = {s: df.loc[:"2024-02-29"] for s, df in q1.items()}
    mar = {s: df.loc["2024-03-01":] for s, df in q1.items()}
    ingest(drop_of(jan_feb, tmp_path / "a"), "1h", None, inc, CALS, now=NOW)
    rep = ingest(drop_of(mar, tmp_path / "b"), "1h", None, inc, CALS, now=NOW)
    for sym in q1:
        pd.testing.assert_frame_equal(load_bars(inc, sym, "1h"), load_bars(one, sym, "1h"))
        a = pd.concat([st.read_partition(p) for p in sorted((inc / "1h" / sym).rglob("*.parquet"))])
        b = pd.concat([st.read_partition(p) for p in sorted((one / "1h" / sym).rglob("*.parquet"))])
        cols = ["ts_utc", *COLS, "quality_flag", "imputed", "spike"]
        pd.testing.assert_frame_equal(
            a[cols].reset_index(drop=True), b[cols].reset_index(drop=True)
        )
        assert load_bars(inc, sym, "1h", "2024-01-01", "2024-02-01").index[0] == q1[sym].index[0]
    # March rows carry the second run's id, January keeps the first
    assert rep.symbols[0].partitions_written >= 1


def test_nonpositive_rows_are_counted_and_kept_across_runs(
    tmp_path: Path, q1: dict[str, pd.DataFrame]
) -> None:
    xau = q1["XAUUSD"].copy()
    bad_ts = xau.index[100]
    xau.loc[bad_ts, "low"] = 0.0
    store = tmp_path / "store"
    jan = {"XAUUSD": xau.loc[:"2024-01-31"]}
    rep = ingest(
        write_drop(tmp_path / "a", {"XAUUSD_1h": jan["XAUUSD"]}), "1h", None, store, CALS, now=NOW
    )
    assert rep.symbols[0].dropped_nonpositive == 1
    meta = json.loads((store / "1h/XAUUSD/2024/2024-01/__meta.json").read_text())
    assert meta["counts"]["dropped_nonpositive"] == 1
    assert meta["dropped_nonpositive_rows"][0]["ts_utc"] == bad_ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert meta["dropped_nonpositive_rows"][0]["low"] == 0.0
    # the dropped bar was a 1-bar hole inside a session -> imputed
    assert rep.symbols[0].imputed == 1
    # a later drop with other months does not forget the dropped row (lossless merge)
    rep2 = ingest(
        write_drop(tmp_path / "b", {"XAUUSD_1h": xau.loc["2024-02-01":]}),
        "1h",
        None,
        store,
        CALS,
        now=NOW,
    )
    assert rep2.symbols[0].dropped_nonpositive == 1
    assert rep2.symbols[0].imputed == 1


# ---------------------------------------------------------------- atomicity
def _failing_writer(fail_on: int):
    calls = {"n": 0}

    def write(fh, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == fail_on:
            fh.write(data[: len(data) // 2])
            raise OSError("simulated disk full")
        fh.write(data)

    return write


def test_failed_first_write_leaves_store_untouched(
    tmp_path: Path, q1: dict[str, pd.DataFrame], monkeypatch
) -> None:
    store = tmp_path / "store"
    ingest(drop_of(q1, tmp_path / "a"), "1h", None, store, CALS, now=NOW)
    before = snapshot(store)
    changed = {s: df.assign(close=df["close"] * 1.0001) for s, df in q1.items()}
    monkeypatch.setattr(st, "_write_all", _failing_writer(1))
    with pytest.raises(OSError, match="simulated disk full"):
        ingest(drop_of(changed, tmp_path / "b"), "1h", None, store, CALS, now=NOW)
    assert snapshot(store) == before
    assert not list(store.rglob("*.tmp"))


def test_failure_between_data_and_meta_is_detected_and_repaired(
    tmp_path: Path, q1: dict[str, pd.DataFrame], monkeypatch
) -> None:
    store = tmp_path / "store"
    ingest(drop_of(q1, tmp_path / "a"), "1h", None, store, CALS, now=NOW)
    before = snapshot(store)
    changed = {s: df.assign(close=df["close"] * 1.0001) for s, df in q1.items()}
    new_drop = drop_of(changed, tmp_path / "b")
    # XAGUSD 2024-01: call 1 replaces the parquet, call 2 (its __meta.json) fails half-way
    monkeypatch.setattr(st, "_write_all", _failing_writer(2))
    with pytest.raises(OSError, match="simulated disk full"):
        ingest(new_drop, "1h", None, store, CALS, now=NOW)
    assert not list(store.rglob("*.tmp"))
    after = snapshot(store)
    differing = sorted(k for k in before if after[k] != before[k])
    assert differing == ["1h/XAGUSD/2024/2024-01/XAGUSD_2024-01.parquet"]
    assert json.loads(after["1h/XAGUSD/2024/2024-01/__meta.json"]) == json.loads(
        before["1h/XAGUSD/2024/2024-01/__meta.json"]
    )
    with pytest.raises(StoreError, match=r"does not match its __meta\.json"):
        load_bars(store, "XAGUSD", "1h")
    load_bars(store, "XAUUSD", "1h")  # untouched symbol still loads
    monkeypatch.undo()
    ingest(new_drop, "1h", None, store, CALS, now=NOW)
    fresh = tmp_path / "fresh"
    ingest(new_drop, "1h", None, fresh, CALS, now=NOW)
    assert snapshot(store) == snapshot(fresh)


# ---------------------------------------------------------------- quarantine and loading
def test_quarantine_written_excluded_and_released(
    tmp_path: Path, q1: dict[str, pd.DataFrame]
) -> None:
    xau = q1["XAUUSD"]
    march = xau.index[(xau.index >= "2024-03-04") & (xau.index < "2024-03-28")]
    holes = [march[10 * k + j] for k in range(6) for j in range(5)]  # 6 runs of 5 bars
    store = tmp_path / "store"
    rep = ingest(
        drop_of(q1, tmp_path / "a", XAUUSD=xau.drop(holes)), "1h", None, store, CALS, now=NOW
    )
    xrep = next(s for s in rep.symbols if s.symbol == "XAUUSD")
    assert xrep.quarantined_months == ("2024-03",)
    assert xrep.missing == 30
    q = json.loads((store / "1h/XAUUSD/2024/2024-03/__quarantine.json").read_text())
    meta = json.loads((store / "1h/XAUUSD/2024/2024-03/__meta.json").read_text())
    expected = meta["counts"]["expected"]
    assert q["missing_rate"] == 30 / expected > 0.05
    assert q["reason"] == f"missing_rate {30 / expected:.4f} > 0.05"
    assert q["thresholds"] == {"missing_rate_max": 0.05, "outlier_rate_max": 0.08}
    assert q["time_range"] == {
        "start": "2024-03-01T00:00:00Z",
        "end": (xau.index[-1] + pd.Timedelta("1h")).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert meta["missing_ts"][0] == holes[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    loaded = load_bars(store, "XAUUSD", "1h")
    assert loaded.index.max() < pd.Timestamp("2024-03-01", tz="UTC")
    assert (
        len(load_bars(store, "XAUUSD", "1h", include_quarantined=True))
        == len(xau) - 30 - xrep.outliers
    )
    with pytest.raises(StoreError, match=r"1 quarantined month\(s\) skipped \(2024-03\)"):
        load_bars(store, "XAUUSD", "1h", "2024-03-01", "2024-04-01")
    # the pair drops March (one leg quarantined) via the inner join
    a, b = load_pair(store, "XAUUSD", "XAGUSD", "1h")
    assert a.index.equals(b.index)
    assert a.index.max() < pd.Timestamp("2024-03-01", tz="UTC")
    # re-delivering the complete month releases the quarantine (spec: 閾値クリアで自動解除)
    ingest(drop_of(q1, tmp_path / "b"), "1h", ["XAUUSD"], store, CALS, now=NOW)
    assert not (store / "1h/XAUUSD/2024/2024-03/__quarantine.json").exists()
    assert (
        load_bars(store, "XAUUSD", "1h", "2024-03-01", "2024-04-01").index[0]
        == xau.loc["2024-03-01":].index[0]
    )


def test_load_pair_inner_join_without_fill(tmp_path: Path, q1: dict[str, pd.DataFrame]) -> None:
    xau, xag = q1["XAUUSD"], q1["XAGUSD"]
    mid = xau.index[(xau.index >= "2024-02-06 13:00") & (xau.index < "2024-02-06 20:00")]
    xau_holes = list(mid[:3])  # 3-bar hole: excluded
    xag_holes = list(mid[4:6])  # 2-bar hole: imputed
    store = tmp_path / "store"
    ingest(
        drop_of(q1, tmp_path / "a", XAUUSD=xau.drop(xau_holes), XAGUSD=xag.drop(xag_holes)),
        "1h",
        None,
        store,
        CALS,
        now=NOW,
    )
    a, b = load_pair(store, "XAUUSD", "XAGUSD", "1h", "2024-02-01", "2024-03-01")
    assert a.index.equals(b.index)
    assert not set(xau_holes) & set(a.index)
    assert set(xag_holes) <= set(b.index)  # imputed rows are usable
    assert b.loc[xag_holes, "volume"].isna().all()
    assert a.index.min() >= pd.Timestamp("2024-02-01", tz="UTC")
    assert a.index.max() < pd.Timestamp("2024-03-01", tz="UTC")
    ai = load_bars(store, "XAUUSD", "1h", "2024-02-01", "2024-03-01").index
    bi = load_bars(store, "XAGUSD", "1h", "2024-02-01", "2024-03-01").index
    assert a.index.equals(ai.intersection(bi))


def test_load_errors(tmp_path: Path, q1: dict[str, pd.DataFrame], crypto_2025) -> None:
    store = tmp_path / "store"
    ingest(drop_of(q1, tmp_path / "a"), "1h", ["XAUUSD"], store, CALS, now=NOW)
    with pytest.raises(StoreError, match="no stored 1h bars for EURUSD"):
        load_bars(store, "EURUSD", "1h")
    with pytest.raises(StoreError, match=r"no usable 1h bars for XAUUSD in \[2025-01-01"):
        load_bars(store, "XAUUSD", "1h", "2025-01-01", "2025-02-01")
    btc = crypto_2025[0].loc["2025-01-01":"2025-01-31"]
    ingest(write_drop(tmp_path / "c", {"BTCUSDT_1h": btc}), "1h", None, store, CALS, now=NOW)
    with pytest.raises(StoreError, match="share no 1h bar"):
        load_pair(store, "XAUUSD", "BTCUSDT", "1h")


def test_crypto_24_7_path(tmp_path: Path, crypto_2025: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    btc, eth = (df.loc["2025-01-01":"2025-01-31"] for df in crypto_2025)
    store = tmp_path / "store"
    rep = ingest(
        write_drop(tmp_path / "d", {"BTCUSDT_1h": btc, "ETHUSDT_1h": eth}, ".parquet"),
        "1h",
        None,
        store,
        CALS,
        now=NOW,
    )
    for s in rep.symbols:
        assert (s.expected, s.missing, s.imputed, s.off_session, s.quarantined_months) == (
            744,
            0,
            0,
            0,
            (),
        )
    a, b = load_pair(store, "BTCUSDT", "ETHUSDT", "1h", "2025-01-01", "2025-02-01")
    ai, bi = (load_bars(store, s, "1h").index for s in ("BTCUSDT", "ETHUSDT"))
    assert len(ai) == 744 - rep.symbols[0].outliers
    assert len(bi) == 744 - rep.symbols[1].outliers
    assert a.index.equals(ai.intersection(bi))
    np.testing.assert_array_equal(a["close"].to_numpy(), btc.loc[a.index, "close"].to_numpy())
    np.testing.assert_array_equal(b["close"].to_numpy(), eth.loc[b.index, "close"].to_numpy())


# ---------------------------------------------------------------- layouts and grids
def test_long_format_file_split_filtered_and_checked(tmp_path: Path) -> None:
    d = _csv(
        tmp_path / "long",
        "prices_daily.csv",
        "ts_utc,symbol,open,high,low,close,volume\n"
        "2016-11-23,KO,41,42,40,41.5,10\n2016-11-23,PEP,100,101,99,100.5,20\n"
        "2016-11-25,KO,41.5,42,41,41.8,10\n2016-11-25,PEP,100.5,101,100,100.7,20\n",
    )
    got = read_file_drop(d, "1d")
    assert sorted(got) == ["KO", "PEP"]
    assert list(got["KO"]["close"]) == [41.5, 41.8]
    assert got["KO"].attrs["files"] == ["prices_daily.csv"]
    assert got["KO"].attrs["bar_anchor"] == BarAnchor()
    assert list(read_file_drop(d, "1d", ["pep"])) == ["PEP"]
    with pytest.raises(IngestError, match=r"unknown symbol\(s\) XOM"):
        read_file_drop(d, "1d", ["XOM"])
    # the file names no 1h word: not read for 1h
    with pytest.raises(IngestError, match="no <SYMBOL>_1h"):
        read_file_drop(d, "1h")
    bad = _csv(
        tmp_path / "bad",
        "x_daily.csv",
        "ts_utc,symbol,open,high,low,close\n2016-11-23,K O!,1,1,1,1\n",
    )
    with pytest.raises(IngestError, match=r"x_daily\.csv: invalid symbol at data row 1"):
        read_file_drop(bad, "1d")


def test_declared_bar_anchor_overrides_inference(tmp_path: Path) -> None:
    """MT5 daily bars (New York 17:00) are inferred on NY+7; a universe declaring the UTC grid
    for them rejects the file instead of guessing."""
    text = GOOD_HEADER + "2024-07-01T21:00:00Z,1,1,1,1,1\n2024-12-02T22:00:00Z,1,1,1,1,1\n"
    d = _csv(tmp_path / "d1", "XAUUSD_1d.csv", text)
    assert read_file_drop(d, "1d")["XAUUSD"].attrs["bar_anchor"] == BarAnchor(
        "America/New_York", 420
    )
    with pytest.raises(IngestError, match="not on the 1d grid of bar_anchor UTC"):
        read_file_drop(d, "1d", bar_anchors={"XAUUSD": BarAnchor()})
    ny7 = replace(METALS, bar_anchor=BarAnchor("America/New_York", 420))
    rep = ingest(d, "1d", None, tmp_path / "s", {"XAUUSD": ny7}, now=NOW)
    assert rep.symbols[0].rows_read == 2
