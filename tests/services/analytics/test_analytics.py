"""analytics service on real backtest outputs, a real registered model and real canonical bars,
against real PostgreSQL and Redis (spec 004 §ml-assets-analytics 仕様 v1, DESIGN.md §5/§6)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pandas as pd
import pytest
from pairdesk.analytics.risk import equity_risk, historical_var_es, simple_returns
from pairdesk.common.bus import HaltLevel, OpsFlags, SignalBus

from .conftest import CI_KPIS, Env, num

ALIASES = {"ann_return": "annualized_return", "max_dd": "max_drawdown", "pnl_sigma": "pnl_std"}


def test_health_and_readiness(env: Env) -> None:
    assert env.client.get("/healthz").json()["data"]["service"] == "analytics"
    assert env.client.get("/readyz").status_code == 200


def test_trading_kpis_of_the_latest_run_match_bt_summary(env: Env) -> None:
    resp = env.client.get("/api/v1/metrics/trading", headers=env.headers("viewer"))
    assert resp.status_code == 200, resp.json()
    data = resp.json()["data"]
    assert data["run"]["run_id"] == env.run.run_id  # the later of the two succeeded runs
    assert data["run"]["status"] == "succeeded"
    assert data["run"]["timeframe"] == "1h"
    s = env.run.summary.iloc[0]
    assert s["trades"] > 0
    [pair] = data["pairs"]
    assert pair["pair_id"] == s["pair_id"] == "XAUUSD_XAGUSD"
    assert pair["period"] == s["period"]
    assert (pair["theta1"], pair["theta2"]) == (0.10, 0.95)
    kpis = pair["kpis"]
    assert kpis["trades"] == int(s["trades"])
    for col, name, tol in (
        ("ann_return", "annualized_return", 1e-6),
        ("sharpe", "sharpe", 1e-6),
        ("max_dd", "max_drawdown", 1e-6),
        ("win_rate", "win_rate", 1e-4),
        ("e_per_trade", "e_per_trade", 1e-8),
        ("trades_per_year", "trades_per_year", 1e-4),
        ("halt_rate", "halt_rate", 1e-4),
        ("pnl_sigma", "pnl_std", 1e-6),
    ):
        expected = num(s[col])
        if expected is None:
            assert kpis[name] is None, name
        else:
            assert kpis[name] == pytest.approx(expected, abs=tol), name
    for col in CI_KPIS:
        lo, hi = num(s[f"{col}_ci_low"]), num(s[f"{col}_ci_high"])
        got = pair["ci"][ALIASES.get(col, col)]
        assert got == [lo, hi] or got == pytest.approx([lo, hi]), col
    assert pair["provenance"]["model_version"] == s["model_version"]
    assert pair["provenance"]["seed"] == int(s["seed"])
    eq = env.run.equity
    assert [p["date"] for p in pair["equity_daily"]] == [str(d) for d in eq["date"]]
    assert [p["equity"] for p in pair["equity_daily"]] == pytest.approx(
        eq["equity"].tolist(), abs=1e-6
    )


def test_trading_for_a_named_run_pair_filter_and_errors(env: Env) -> None:
    h = env.headers("viewer")
    older = env.client.get(f"/api/v1/metrics/trading?run_id={env.older.run_id}", headers=h).json()
    assert older["data"]["run"]["run_id"] == env.older.run_id
    assert older["data"]["pairs"][0]["kpis"]["trades"] == int(env.older.summary["trades"].iloc[0])
    one = env.client.get(
        f"/api/v1/metrics/trading?run_id={env.run.run_id}&pair_id=XAUUSD_XAGUSD", headers=h
    )
    assert [p["pair_id"] for p in one.json()["data"]["pairs"]] == ["XAUUSD_XAGUSD"]
    for query, status, eid in (
        ("run_id=nope", 404, "ANALYTICS_RUN_NOTFOUND"),
        ("run_id=run-failed", 409, "ANALYTICS_RUN_NOTREADY"),
        (f"run_id={env.run.run_id}&pair_id=BTCUSDT_ETHUSDT", 404, "ANALYTICS_PAIR_NOTFOUND"),
        ("pair_id=bad%20id", 422, "ANALYTICS_API_VALIDATION"),
    ):
        resp = env.client.get(f"/api/v1/metrics/trading?{query}", headers=h)
        assert (resp.status_code, resp.json()["error"]["id"]) == (status, eid), query


def test_model_metrics_of_the_active_model(env: Env) -> None:
    metrics = json.loads((env.model_dir / "metrics.json").read_text())
    resp = env.client.get("/api/v1/metrics/model", headers=env.headers("viewer"))
    assert resp.status_code == 200, resp.json()
    data = resp.json()["data"]
    assert data["model_version"] == env.model_version == "t_2022_2023"
    assert data["status"] == "active"
    assert data["timeframe"] == "1h"
    assert data["activated_by"] == "tester"
    assert data["train_start"] == "2022-01-01T00:00:00Z"
    for ai in ("ai1", "ai2"):
        assert data["walk_forward"][ai] == metrics["walk_forward"][ai]
    assert "auc" in data["walk_forward"]["ai1"]["pooled"]
    assert data["summary"] == metrics["summary"]
    assert [h["model_version"] for h in data["history"]] == ["t_2022_2023"]
    named = env.client.get(
        "/api/v1/metrics/model?model_version=t_2022_2023", headers=env.headers("viewer")
    ).json()["data"]
    assert named["artifact_sha256"] == data["artifact_sha256"]
    for query in ("model_version=unknown", "timeframe=4h"):
        resp = env.client.get(f"/api/v1/metrics/model?{query}", headers=env.headers("viewer"))
        assert resp.status_code == 404
        assert resp.json()["error"]["id"] == "ANALYTICS_MODEL_NOTFOUND"


def test_data_quality_counts_match_the_loaded_bars(env: Env) -> None:
    resp = env.client.get("/api/v1/metrics/data_quality", headers=env.headers("viewer"))
    assert resp.status_code == 200
    data = resp.json()["data"]
    bars = env.bars.copy()
    bars["month"] = pd.DatetimeIndex(bars["ts_utc"]).tz_localize(None).strftime("%Y-%m")
    expected = (
        bars.groupby(["symbol", "month"])["quality_flag"].value_counts().unstack(fill_value=0)
    )
    got = {(m["symbol"], m["month"]): m for m in data["months"]}
    assert set(got) == set(expected.index)
    for (sym, month), row in expected.iterrows():
        m = got[(sym, month)]
        n = int(row.sum())
        assert m["timeframe"] == "1h"
        assert m["bars"] == n
        assert m["ok"] == int(row.get("ok", 0))
        assert m["missing"] == int(row.get("missing", 0))
        assert m["outlier"] == int(row.get("outlier", 0))
        assert m["missing_rate"] == pytest.approx(m["missing"] / n)
        assert m["outlier_rate"] == pytest.approx(m["outlier"] / n)
        q = bars[(bars["symbol"] == sym) & (bars["month"] == month)]["quarantined"].any()
        assert m["quarantined"] == bool(q)
    totals = {t["symbol"]: t for t in data["totals"]}
    for sym in ("XAUUSD", "XAGUSD"):
        part = bars[bars["symbol"] == sym]
        assert totals[sym]["bars"] == len(part)
        assert totals[sym]["months"] == 6
        assert totals[sym]["outlier"] == int((part["quality_flag"] == "outlier").sum())
    assert sum(t["outlier"] for t in data["totals"]) > 0  # real outliers exist in this data

    h = env.headers("viewer")
    one = env.client.get(
        "/api/v1/metrics/data_quality?symbol=xagusd&timeframe=1h&from=2024-02-01T00:00:00Z"
        "&to=2024-04-01T00:00:00Z",
        headers=h,
    ).json()["data"]
    assert [(m["symbol"], m["month"]) for m in one["months"]] == [
        ("XAGUSD", "2024-02"),
        ("XAGUSD", "2024-03"),
    ]
    none = env.client.get("/api/v1/metrics/data_quality?symbol=BTCUSDT", headers=h).json()["data"]
    assert none == {"totals": [], "months": []}
    bad = env.client.get(
        "/api/v1/metrics/data_quality?from=2024-05-01T00:00:00Z&to=2024-01-01T00:00:00Z", headers=h
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["id"] == "ANALYTICS_REQ_RANGE"


def test_historical_var_es_by_hand() -> None:
    r = [-0.05, -0.02, 0.01, 0.03, -0.01, 0.0, 0.02, -0.04, 0.01, 0.005]
    # losses sorted: -.03 -.02 -.01 -.01 -.005 0 .01 .02 .04 .05; q(0.9) at 8.1 -> .041
    var, es = historical_var_es(r, 0.9)
    assert var == pytest.approx(0.041)
    assert es == pytest.approx(0.05)
    rng = np.random.default_rng(7)
    x = rng.standard_t(4, size=750) * 0.01
    var, es = historical_var_es(x, 0.95)
    q = np.quantile(-x, 0.95)
    assert var == pytest.approx(q)
    assert es == pytest.approx((-x)[-x >= q].mean())
    assert historical_var_es([0.01], 0.95) == (None, None)
    with pytest.raises(ValueError, match="confidence"):
        historical_var_es(r, 1.0)
    e = np.array([100.0, 110.0, 99.0, 104.5, 120.0, 108.0])
    risk = equity_risk(e, 0.95)
    assert risk.max_drawdown == pytest.approx(0.1)
    assert risk.current_drawdown == pytest.approx(0.1)
    assert risk.worst_day == pytest.approx(-0.1)
    assert risk.days == 6
    assert simple_returns(pd.Series(e)).tolist() == pytest.approx(
        [0.1, -0.1, 104.5 / 99 - 1, 120 / 104.5 - 1, -0.1]
    )
    with pytest.raises(ValueError, match="positive"):
        simple_returns([1.0, 0.0])


def test_risk_from_daily_equity_and_live_state(env: Env) -> None:
    async def seed_live() -> None:
        async with env.redis.client() as client:
            bus = SignalBus(client, namespace=env.redis.namespace)
            await bus.set_pair_metrics("XAUUSD_XAGUSD", {"dd": 0.021, "rho_rolling": 0.87})
            await bus.set_flags(
                OpsFlags(
                    global_halt=HaltLevel.SOFT,
                    halted_pairs=frozenset({"XAUUSD_XAGUSD"}),
                    leverage_scale=0.5,
                ),
                updated_by="ops-user",
            )

    asyncio.run(seed_live())
    resp = env.client.get("/api/v1/metrics/risk", headers=env.headers("viewer"))
    assert resp.status_code == 200, resp.json()
    data = resp.json()["data"]
    assert data["run"]["run_id"] == env.run.run_id
    assert data["confidence"] == 0.95
    [pair] = data["pairs"]
    e = env.run.equity["equity"].to_numpy(dtype=float)
    r = e[1:] / e[:-1] - 1
    losses = -r
    var = np.quantile(losses, 0.95)
    assert np.count_nonzero(r) > 0  # the run traded: the curve moves
    assert pair["days"] == len(e)
    assert pair["var"] == pytest.approx(var, abs=1e-9)
    assert pair["es"] == pytest.approx(losses[losses >= var].mean(), abs=1e-9)
    assert pair["max_drawdown"] == pytest.approx(np.max(1 - e / np.maximum.accumulate(e)), abs=1e-9)
    assert pair["max_drawdown"] == pytest.approx(env.run.summary["max_dd"].iloc[0], abs=1e-6)
    assert pair["current_drawdown"] == pytest.approx(1 - e[-1] / e.max(), abs=1e-9)
    assert pair["worst_day"] == pytest.approx(r.min(), abs=1e-9)
    assert pair["halt_rate"] == pytest.approx(num(env.run.summary["halt_rate"].iloc[0]), abs=1e-4)
    assert pair["first_date"] == str(env.run.equity["date"].iloc[0])
    assert data["live_status"] == "ok"
    assert data["live_pair_metrics"] == {"XAUUSD_XAGUSD": {"dd": 0.021, "rho_rolling": 0.87}}
    flags = data["ops_flags"]
    assert flags["global_halt"] == "soft"
    assert flags["halted_pairs"] == ["XAUUSD_XAGUSD"]
    assert flags["leverage_scale"] == 0.5
    assert flags["updated_by"] == "ops-user"

    h = env.headers("viewer")
    at99 = env.client.get(
        f"/api/v1/metrics/risk?run_id={env.run.run_id}&confidence=0.99", headers=h
    ).json()["data"]
    assert at99["pairs"][0]["var"] == pytest.approx(np.quantile(losses, 0.99), abs=1e-9)
    for query, status, eid in (
        ("confidence=1.5", 422, "ANALYTICS_API_VALIDATION"),
        ("run_id=nope", 404, "ANALYTICS_RUN_NOTFOUND"),
        ("pair_id=NOPE_PAIR", 404, "ANALYTICS_PAIR_NOTFOUND"),
    ):
        resp = env.client.get(f"/api/v1/metrics/risk?{query}", headers=h)
        assert (resp.status_code, resp.json()["error"]["id"]) == (status, eid), query


def test_every_route_needs_a_token(env: Env) -> None:
    for path in ("trading", "model", "data_quality", "risk"):
        missing = env.client.get(f"/api/v1/metrics/{path}")
        assert missing.status_code == 401
        assert missing.json()["error"]["id"] == "ANALYTICS_AUTH_MISSING"
        bad = env.client.get(f"/api/v1/metrics/{path}", headers={"Authorization": "Bearer x.y.z"})
        assert bad.status_code == 401
        assert bad.json()["error"]["id"] == "ANALYTICS_AUTH_INVALID"
    text = env.client.get("/metrics").text  # Prometheus stays unauthenticated
    assert 'pairdesk_service_up{service="analytics"} 1.0' in text
