"""data_pipeline service against real PostgreSQL and Redis, on real market-data slices (spec 004
§data-assets-pipeline 仕様 v1, §監視・運用 (data pipeline) v1, DESIGN.md §5/§6).

The tests of this module share one database and store and run in file order: the first ingest
loads 2024 Q1 metals bars, later tests build on it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from pairdesk.data_pipeline.service import lag_to_now, load_calendars
from pairdesk.data_pipeline.settings import DataPipelineSettings
from pairdesk.research import store as st

from .conftest import DATA, Env, metals_drop, slice_csv

INGEST = "/api/v1/data/ingest/runs"


def _snapshot(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _store_rows(store: Path, symbol: str, timeframe: str = "1h") -> pd.DataFrame:
    parts = [
        st.read_partition(st.partition_file(store, timeframe, symbol, m))
        for m in st.list_partitions(store, timeframe, symbol)
    ]
    return pd.concat(parts, ignore_index=True)


def _post(env: Env, role: str = "editor", **body: object) -> dict:
    payload = {"source": "file", "timeframe": "1h", **body}
    resp = env.client.post(INGEST, json=payload, headers=env.headers(role))
    return {**resp.json(), "http": resp.status_code}


def test_health_ready_and_metrics_endpoint(env: Env) -> None:
    assert env.client.get("/healthz").json()["data"] == {"service": "data_pipeline", "status": "ok"}
    ready = env.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["data"]["postgres"] == "ok"
    assert "pairdesk_service_up" in env.client.get("/metrics").text


def test_ingest_stores_bars_announces_and_is_idempotent(env: Env) -> None:
    drop = env.drops / "q1"
    frames = metals_drop(drop, "2024-01-01", "2024-04-01")
    bus = redis.Redis.from_url(env.redis_url, decode_responses=True)
    sub = bus.pubsub()
    sub.subscribe(f"{env.namespace}:bars:closed")
    assert sub.get_message(timeout=2)["type"] == "subscribe"
    try:
        first = _post(env, path=str(drop))
        assert first["http"] == 200, first
        run = first["data"]
        assert run["status"] == "SUCCESS"
        assert run["timeframe"] == "1h"
        assert run["source"] == "file"
        assert run["ingest_run_id"].startswith("ing-")
        by_sym = {s["symbol"]: s for s in run["symbols"]}
        assert set(by_sym) == {"XAUUSD", "XAGUSD"}
        for sym, df in frames.items():
            stored = _store_rows(env.store, sym)
            rep = by_sym[sym]
            assert rep["rows_read"] == len(df)
            assert rep["db_inserted"] == len(stored)
            assert rep["db_updated"] == rep["db_deleted"] == 0
            assert rep["partitions_written"] == 3
            assert rep["quarantined_months"] == []
            assert rep["last_ts"] == rep["watermark_ts"] == df["ts_utc"].iloc[-1]
        assert run["rows_changed"] == sum(s["db_inserted"] for s in run["symbols"])
        last = max(df["ts_utc"].iloc[-1] for df in frames.values())
        assert run["watermark_ts"] == last

        # every stored row reached canonical_bars with the file's values
        rows = env.sql(
            "SELECT symbol, count(*), min(ts_utc), max(ts_utc) FROM canonical_bars "
            "WHERE timeframe = '1h' GROUP BY symbol ORDER BY symbol"
        )
        assert [(r[0], r[1]) for r in rows] == [
            ("XAGUSD", by_sym["XAGUSD"]["db_inserted"]),
            ("XAUUSD", by_sym["XAUUSD"]["db_inserted"]),
        ]
        raw = frames["XAUUSD"].iloc[100]
        bar = env.sql(
            "SELECT open, high, low, close, volume, quality_flag, source_id, ingest_run_id "
            "FROM canonical_bars WHERE symbol = 'XAUUSD' AND timeframe = '1h' AND ts_utc = :ts",
            ts=datetime.fromisoformat(raw["ts_utc"].replace("Z", "+00:00")),
        )[0]
        assert [float(x) for x in bar[:5]] == pytest.approx(
            [raw["open"], raw["high"], raw["low"], raw["close"], raw["volume"]], abs=1e-9
        )
        assert tuple(bar[5:]) == ("ok", "file", run["ingest_run_id"])

        notice = sub.get_message(timeout=5)
        assert notice is not None
        assert notice["type"] == "message"
        assert json.loads(notice["data"]) == {
            "timeframe": "1h",
            "symbols": ["XAGUSD", "XAUUSD"],
            "last_ts_utc": last.replace("Z", "+00:00"),
            "ingest_run_id": run["ingest_run_id"],
        }

        # the same drop again: nothing rewritten in the store, no row changed, no notice
        before = _snapshot(env.store)
        second = _post(env, path=str(drop))
        assert second["http"] == 200
        again = second["data"]
        assert again["ingest_run_id"] == run["ingest_run_id"]
        assert again["rows_changed"] == 0
        for rep in again["symbols"]:
            assert rep["db_inserted"] == rep["db_updated"] == rep["db_deleted"] == 0
            assert rep["partitions_written"] == 0
            assert rep["partitions_unchanged"] == 3
            assert rep["dedupe_drops"] == rep["rows_read"]  # every row re-delivered
        assert {k: v for k, v in _snapshot(env.store).items() if k != ".ingest.lock"} == {
            k: v for k, v in before.items() if k != ".ingest.lock"
        }
        assert sub.get_message(timeout=1) is None
    finally:
        sub.close()
        bus.close()

    logs = env.sql(
        "SELECT execution_type, status, run_id, triggered_by, target, operations, errors "
        "FROM execution_logs ORDER BY timestamp_start"
    )
    assert [(r[0], r[1], r[2]) for r in logs] == [("MANUAL", "SUCCESS", run["ingest_run_id"])] * 2
    assert logs[0][3] == "USER:editor-user"
    assert logs[0][4]["kind"] == "ingest"
    assert logs[0][4]["timeframes"] == ["1h"]
    assert logs[0][5]["db_upsert"]["inserted"] == run["rows_changed"]
    assert logs[1][5]["db_upsert"] == {**logs[1][5]["db_upsert"], "inserted": 0, "updated": 0}
    assert logs[0][5]["data_fetch"]["records_fetched"] == sum(len(f) for f in frames.values())

    metrics = env.client.get("/metrics").text
    assert 'data_ingest_success_rate{source="file",timeframe="1h"} 1.0' in metrics
    xau = next(s for s in run["symbols"] if s["symbol"] == "XAUUSD")
    assert f'data_missing_rate{{symbol="XAUUSD",timeframe="1h"}} {xau["missing_rate"]!r}' in metrics
    assert 'data_outlier_rate{symbol="XAUUSD",timeframe="1h"}' in metrics
    assert 'data_dedupe_drops_total{source="file",symbol="XAUUSD",timeframe="1h"}' in metrics
    assert 'data_watermark_lag_bars{source="file",symbol="XAUUSD",timeframe="1h"}' in metrics
    assert 'data_pipeline_lag_seconds{symbol="XAUUSD",timeframe="1h"}' in metrics


def test_revised_bar_updates_only_what_changed(env: Env) -> None:
    drop = env.drops / "revised"
    src = DATA / "mt5_simom1_h1" / "XAUUSD_1h.csv.gz"
    df = slice_csv(src, drop / "XAUUSD_1h.csv", "2024-02-12", "2024-02-13")
    i = 10
    ts = df.loc[i, "ts_utc"]
    new_close = round(float(df.loc[i, "close"]) + 0.05, 2)
    df.loc[i, "close"] = new_close
    df.loc[i, "high"] = max(float(df.loc[i, "high"]), new_close)
    df.to_csv(drop / "XAUUSD_1h.csv", index=False)

    out = _post(env, path=str(drop), symbols=["xauusd"])
    assert out["http"] == 200, out
    rep = out["data"]["symbols"][0]
    assert rep["symbol"] == "XAUUSD"
    assert rep["db_inserted"] == 0
    assert rep["db_deleted"] == 0
    assert 1 <= rep["db_updated"] <= 3  # the bar, plus at most DQ flags of its neighbours
    row = env.sql(
        "SELECT close, ingest_run_id FROM canonical_bars "
        "WHERE symbol = 'XAUUSD' AND timeframe = '1h' AND ts_utc = :ts",
        ts=datetime.fromisoformat(ts.replace("Z", "+00:00")),
    )[0]
    assert float(row[0]) == pytest.approx(new_close)
    assert row[1] == out["data"]["ingest_run_id"]
    # canonical_bars still mirrors the store exactly
    stored = _store_rows(env.store, "XAUUSD")
    assert env.sql(
        "SELECT count(*) FROM canonical_bars WHERE symbol = 'XAUUSD' AND timeframe = '1h'"
    )[0][0] == len(stored)


def test_quarantined_partition_is_listed_and_flagged(env: Env) -> None:
    drop = env.drops / "btc"
    path = drop / "BTCUSDT_1h.csv"
    df = slice_csv(DATA / "binance_spot_1h" / "BTCUSDT_1h.csv.gz", path, "2025-01-01", "2025-03-01")
    ts = pd.to_datetime(df["ts_utc"], utc=True)
    hole = (ts >= pd.Timestamp("2025-02-10", tz="UTC")) & (
        ts < pd.Timestamp("2025-02-13", tz="UTC")
    )
    df.loc[~np.asarray(hole)].to_csv(path, index=False)  # 72 of 672 February bars missing

    out = _post(env, path=str(drop))
    assert out["http"] == 200, out
    rep = out["data"]["symbols"][0]
    assert rep["symbol"] == "BTCUSDT"
    assert rep["quarantined_months"] == ["2025-02"]
    assert rep["missing"] == 72

    q = env.client.get("/api/v1/data/quarantine", headers=env.headers("viewer"))
    assert q.status_code == 200
    items = q.json()["data"]
    assert [(i["symbol"], i["timeframe"], i["partition"]) for i in items] == [
        ("BTCUSDT", "1h", "2025-02")
    ]
    item = items[0]
    assert item["missing_rate"] == pytest.approx(72 / 672)
    assert item["thresholds"]["missing_rate_max"] == 0.05
    assert "missing_rate" in item["reason"]
    assert item["counts"]["missing"] == 72
    assert item["time_range_start"] == "2025-02-01T00:00:00Z"
    filtered = env.client.get(
        "/api/v1/data/quarantine?symbol=xauusd", headers=env.headers("viewer")
    ).json()["data"]
    assert filtered == []

    feb = env.client.get(
        "/api/v1/data/bars?symbol=BTCUSDT&timeframe=1h&start=2025-02-01T00:00:00Z&limit=3",
        headers=env.headers("viewer"),
    ).json()["data"]
    assert feb["total"] == 672 - 72
    assert all(b["quarantined"] for b in feb["items"])
    jan = env.client.get(
        "/api/v1/data/bars?symbol=BTCUSDT&timeframe=1h&end=2025-02-01T00:00:00Z&limit=1",
        headers=env.headers("viewer"),
    ).json()["data"]
    assert jan["total"] == 31 * 24
    assert not jan["items"][0]["quarantined"]
    metrics = env.client.get("/metrics").text
    assert 'dq_fail_total{check="quarantine",symbol="BTCUSDT",timeframe="1h"} 1.0' in metrics


def test_watermarks_agree_with_store_and_lag(env: Env) -> None:
    resp = env.client.get("/api/v1/data/watermarks", headers=env.headers("viewer"))
    assert resp.status_code == 200
    marks = {(m["symbol"], m["timeframe"]): m for m in resp.json()["data"]}
    assert set(marks) == {("BTCUSDT", "1h"), ("XAGUSD", "1h"), ("XAUUSD", "1h")}
    for (sym, tf), m in marks.items():
        stored = _store_rows(env.store, sym, tf)
        assert m["db_bar_count"] == m["store_bar_count"] == len(stored)
        last = pd.Timestamp(stored["ts_utc"].max()).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert m["db_last_ts"] == m["store_last_ts"] == last
        assert m["in_sync"]
        assert m["db_source_id"] == "file"
        assert m["lag_bars"] > 0
        assert m["lag_seconds"] > 0
    assert marks[("BTCUSDT", "1h")]["quarantined_partitions"] == 1
    assert marks[("XAUUSD", "1h")]["store_partitions"] == 3
    one = env.client.get(
        "/api/v1/data/watermarks?symbol=btcusdt&timeframe=1h", headers=env.headers("viewer")
    ).json()["data"]
    assert [m["symbol"] for m in one] == ["BTCUSDT"]


def test_lag_counts_only_in_session_bars() -> None:
    cals = load_calendars(DataPipelineSettings().universe_paths)
    # always open: bars opening 01:00..04:00 have closed by 05:30
    bars, seconds = lag_to_now(
        datetime(2025, 1, 1, tzinfo=UTC),
        "1h",
        cals["BTCUSDT"],
        datetime(2025, 1, 1, 5, 30, tzinfo=UTC),
    )
    assert (bars, seconds) == (4, 4.5 * 3600)
    # metals: Friday 2024-02-02 20:00Z -> Monday 00:30Z; only Fri 21:00Z and Sun 23:00Z closed
    bars, seconds = lag_to_now(
        datetime(2024, 2, 2, 20, tzinfo=UTC),
        "1h",
        cals["XAUUSD"],
        datetime(2024, 2, 5, 0, 30, tzinfo=UTC),
    )
    assert (bars, seconds) == (2, 51.5 * 3600)
    assert lag_to_now(
        datetime(2025, 1, 1, tzinfo=UTC), "1h", None, datetime(2025, 1, 1, 1, tzinfo=UTC)
    ) == (0, 0.0)


def test_bars_paging_and_range(env: Env) -> None:
    h = env.headers("viewer")
    base = "/api/v1/data/bars?symbol=XAUUSD&timeframe=1h&start=2024-01-02T00:00:00Z&end=2024-01-03T00:00:00Z"
    whole = env.client.get(base + "&limit=100", headers=h).json()["data"]
    assert whole["total"] == len(whole["items"]) == 23  # daily break 22:00-23:00Z
    first = env.client.get(base + "&limit=10", headers=h).json()["data"]
    rest = env.client.get(base + "&limit=10&offset=10", headers=h).json()["data"]
    last = env.client.get(base + "&limit=10&offset=20", headers=h).json()["data"]
    assert [b["ts_utc"] for b in first["items"] + rest["items"] + last["items"]] == [
        b["ts_utc"] for b in whole["items"]
    ]
    assert whole["items"][0]["ts_utc"] == "2024-01-02T00:00:00Z"
    naive = env.client.get(
        "/api/v1/data/bars?symbol=XAUUSD&timeframe=1h&start=2024-01-02T00:00:00&end=2024-01-03T00:00:00",
        headers=h,
    ).json()["data"]
    assert naive["total"] == 23

    bad = env.client.get(
        "/api/v1/data/bars?symbol=XAUUSD&timeframe=1h&start=2024-02-01T00:00:00Z&end=2024-01-01T00:00:00Z",
        headers=h,
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["id"] == "DATA_REQ_RANGE"
    empty = env.client.get(
        "/api/v1/data/bars?symbol=XAUUSD&timeframe=1h&start=2024-01-02T00:00:00Z&end=2024-01-02T00:00:00Z",
        headers=h,
    ).json()["data"]
    assert empty["total"] == 0
    assert empty["items"] == []
    for query in (
        "symbol=XAUUSD&timeframe=1h&limit=0",
        "symbol=XAUUSD&timeframe=1h&limit=5001",
        "symbol=XAUUSD&timeframe=hour",
        "timeframe=1h",
        "symbol=XAU%2FUSD&timeframe=1h",
    ):
        resp = env.client.get(f"/api/v1/data/bars?{query}", headers=h)
        assert resp.status_code == 422
        assert resp.json()["error"]["id"] == "DATA_API_VALIDATION"


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


def test_rejected_drops_write_nothing(env: Env, tmp_path: Path) -> None:
    count_before = env.sql("SELECT count(*) FROM canonical_bars")[0][0]
    store_before = _snapshot(env.store)
    outside = tmp_path / "outside"
    metals_drop(outside, "2024-01-01", "2024-01-08")
    link = env.drops / "link_out"
    os.symlink(outside, link)
    good = "ts_utc,open,high,low,close,volume\n2024-05-01T00:00:00Z,2300,2301,2299,2300.5,10\n"
    cases = [
        ({"path": str(outside)}, "DATA_REQ_PATH"),
        ({"path": str(env.drops / ".." / "store")}, "DATA_REQ_PATH"),
        ({"path": str(link)}, "DATA_REQ_PATH"),
        ({"path": "/etc"}, "DATA_REQ_PATH"),
        ({"path": str(env.drops / "does_not_exist")}, "DATA_INGEST_NOTFOUND"),
        ({"path": str(env.drops / "q1"), "symbols": ["EURUSD"]}, "DATA_INGEST_NOTFOUND"),
        (
            {"path": str(_write(env.drops / "cols", "XAUUSD_1h.csv", "time,open,high,low\n"))},
            "DATA_INGEST_SCHEMA",
        ),
        (
            {
                "path": str(
                    _write(
                        env.drops / "ts",
                        "XAUUSD_1h.csv",
                        good + "not-a-time,2300,2301,2299,2300.5,10\n",
                    )
                )
            },
            "DATA_INGEST_TIMESTAMP",
        ),
        (
            {
                "path": str(
                    _write(
                        env.drops / "grid",
                        "XAUUSD_1h.csv",
                        good.replace("T00:00:00Z", "T00:30:00Z"),
                    )
                )
            },
            "DATA_INGEST_TIMESTAMP",
        ),
        (
            # the first file is fine, the second has a NaN price: nothing of either is written
            {
                "path": str(
                    _write(
                        _write(env.drops / "nan", "XAGUSD_1h.csv", good.replace("2300", "25")),
                        "XAUUSD_1h.csv",
                        good + "2024-05-01T01:00:00Z,2300,,2299,2300.5,10\n",
                    )
                )
            },
            "DATA_INGEST_PRICE",
        ),
        ({"path": str(env.drops / "q1"), "timeframe": "2h"}, "DATA_INGEST_TIMEFRAME"),
        ({"path": str(env.drops / "q1"), "source": "api"}, "DATA_API_VALIDATION"),
        ({"path": str(env.drops / "q1"), "timeframe": "hourly"}, "DATA_API_VALIDATION"),
    ]
    for body, expected in cases:
        out = _post(env, **body)
        assert (out["http"], out["error"]["id"]) == (422, expected), (body, out)
    assert env.sql("SELECT count(*) FROM canonical_bars")[0][0] == count_before
    assert {k: v for k, v in _snapshot(env.store).items() if k != ".ingest.lock"} == {
        k: v for k, v in store_before.items() if k != ".ingest.lock"
    }
    failed = env.sql(
        "SELECT errors->0->>'error_id' FROM execution_logs WHERE status = 'FAILED' "
        "ORDER BY timestamp_start"
    )
    assert [r[0] for r in failed] == [
        "DATA_INGEST_NOTFOUND",
        "DATA_INGEST_NOTFOUND",
        "DATA_INGEST_SCHEMA",
        "DATA_INGEST_TIMESTAMP",
        "DATA_INGEST_TIMESTAMP",
        "DATA_INGEST_PRICE",
        "DATA_INGEST_TIMEFRAME",
    ]
    assert (
        'data_ingest_success_rate{source="file",timeframe="1h"} 0.0'
        in env.client.get("/metrics").text
    )


def test_auth_is_required_and_ingest_needs_editor(env: Env) -> None:
    for path in (
        "/api/v1/data/watermarks",
        "/api/v1/data/quarantine",
        "/api/v1/data/bars?symbol=XAUUSD&timeframe=1h",
    ):
        missing = env.client.get(path)
        assert missing.status_code == 401
        assert missing.json()["error"]["id"] == "DATA_AUTH_MISSING"
        bad = env.client.get(path, headers={"Authorization": "Bearer not-a-token"})
        assert bad.status_code == 401
        assert bad.json()["error"]["id"] == "DATA_AUTH_INVALID"
        assert env.client.get(path, headers=env.headers("viewer")).status_code == 200
    # the drop ingested last: posting it again changes nothing
    body = {"source": "file", "path": str(env.drops / "btc"), "timeframe": "1h"}
    assert env.client.post(INGEST, json=body).status_code == 401
    viewer = env.client.post(INGEST, json=body, headers=env.headers("viewer"))
    assert viewer.status_code == 403
    assert viewer.json()["error"]["id"] == "DATA_AUTH_FORBIDDEN"
    admin = env.client.post(INGEST, json=body, headers=env.headers("admin"))
    assert admin.status_code == 200
    assert admin.json()["data"]["rows_changed"] == 0
