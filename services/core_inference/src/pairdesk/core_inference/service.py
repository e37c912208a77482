"""The live inference loop and the logic behind the core_inference endpoints.

Spec 004 §システム構成 (推論結果 signal を Redis で共有), §運用Runbook (``core:ops:flags`` enforced by
inference, fail-safe), §OpenAPI 概要; DESIGN.md §1 (core_inference: on each closed bar, O(1)
feature update → AI1/AI2 → signal).

:class:`InferenceWorker` runs as a background task of the app:

1. **Model.** Each cycle it looks up the active model of its timeframe in ``model_registry``
   (:func:`pairdesk.common.registry.active_model`); a new version (activation here, or an ops
   rollback elsewhere) is verified (:func:`~pairdesk.common.registry.verify_bundle`, feature
   schema hash equal to the one this service computes, as ``bt run`` checks) and loaded, and
   every pair's state is rebuilt. No active model → no signals, status ``no_active_model``.
2. **θ.** Per θ, the first set of: ``PAIRDESK_CORE_THETA1/2`` (research), the ops override
   (Redis hash ``core:ops:theta``, field = timeframe, JSON ``{theta1, theta2,
   applies_to_model_version, ...}`` written by ``POST /ops/rollback {target: theta}``, in force
   while that model is the active one), the registry row, ``core_policy.yaml``
   ``theta*_initial``.
3. **Bars.** It wakes on a ``bars:closed`` notice (``SignalBus.subscribe_bars_closed``) or every
   ``PAIRDESK_CORE_POLL_S`` seconds, and reads per pair the aligned closed bars newer than its
   watermark from ``canonical_bars`` (never past the latest bar both legs have reached;
   ``quality_flag`` ok/resampled plus the bars the DQ step imputed, the research store's rule).
4. **State rebuild.** When a pair has no state (start, model switch, an error), the newest
   ``replay_bars`` stored bars are replayed through the same engine without emitting: the feature
   warm-up, then the trading rule, taking the recorded decision for every bar that already has a
   signal in ``signals_history`` (any model), so the position carries over restarts and model
   switches. Bars newer than the pair's last recorded signal are emitted, at most
   ``max_catchup_bars`` of them (older ones are stale and replayed silently); on a first start
   (no recorded signal) emission starts after the newest stored bar.
5. **Fail-safe.** Before deciding, the flags are read with
   :meth:`~pairdesk.common.bus.SignalBus.read_flags_failsafe`; see :mod:`.engine` for the gates.
6. **Outbox.** Each signal is written to ``signals_history`` and upserted into ``signals_live`` in
   one transaction, then published (stream, then pub/sub) in id order and its ``stream_id``
   recorded. If Redis is down the rows wait with ``stream_id`` NULL and are published when it is
   back. Before each publishing pass the newest published entry is looked up in the stream; if it
   is gone (Redis restarted without persistence) the recent rows whose entries were lost are
   marked unpublished and re-sent in order. Delivery is at-least-once (a crash between the
   publish and the ``stream_id`` update re-sends that signal); consumers de-duplicate on
   ``signal_id`` or ``(pair_id, timeframe, ts_utc, model_version)``.
7. **Pair metrics.** After each pass over a pair's new bars (one bar per pass in steady state)
   it stores ``{as_of, dd, days_below_dd_warn, corr, updated_at}`` with
   :meth:`~pairdesk.common.bus.SignalBus.set_pair_metrics` for the ops resume guards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from fastapi import FastAPI
from pairdesk.common import registry
from pairdesk.common.auth import TokenClaims
from pairdesk.common.bus import FlagsReading, Subscription
from pairdesk.common.errors import ApiError, error_id
from pairdesk.common.logs import get_logger
from pairdesk.common.models import ModelRegistry, ModelStatus, SignalLive
from pairdesk.common.observability import (
    ML_PREDICTION_CONFIDENCE,
    ML_PREDICTION_DURATION,
    ML_PREDICTIONS_TOTAL,
)
from pairdesk.common.service import ServiceResources
from pairdesk.core_inference import repository as repo
from pairdesk.core_inference.engine import BarOutcome, Gate, PairEngine, PositionState, Recorded
from pairdesk.core_inference.schemas import (
    InferenceStatus,
    ModelActivation,
    ModelRead,
    PairStatus,
    SignalHistoryRead,
    SignalLiveRead,
    SignalPage,
)
from pairdesk.core_inference.settings import CoreSettings
from pairdesk.quant.costs import CostModel
from pairdesk.quant.models import TrainedModel
from pairdesk.research.config import load_policy, load_yaml
from pairdesk.research.provenance import sha256_json
from pairdesk.research.settings import ResearchSettings, load_settings
from pairdesk.research.train import feature_schema
from pairdesk.research.universe import TIMEFRAME_MINUTES, PairConfig, load_universe
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "InferenceWorker",
    "LoadedModel",
    "activate",
    "history",
    "latest",
    "lifespan_hook",
    "list_models",
]

#: Redis hash of the ops θ overrides (field = timeframe, value = JSON), behind the bus
#: namespace like every other key; written by ops_api ``POST /ops/rollback {target: theta}``.
#: New bars read per pair and pass.
_BARS_PER_PASS = 5_000

_log = get_logger("pairdesk.core_inference")


def _num(value: float | None) -> float | None:
    """JSON-safe float (NaN/inf → None)."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LoadedModel:
    """The active model as loaded from its verified bundle."""

    version: str
    timeframe: str
    model_dir: Path
    sha256: str | None
    ai1: TrainedModel
    ai2: TrainedModel
    theta1: float | None
    theta2: float | None


@dataclass
class _PairRuntime:
    pair: PairConfig
    engine: PairEngine | None = None
    watermark: pd.Timestamp | None = None
    last_action: str | None = None
    last_signal_ts: datetime | None = None


@dataclass
class _Theta:
    theta1: float
    theta2: float
    source: dict[str, str] = field(default_factory=dict)


class InferenceWorker:
    """Background inference loop of one core_inference process (module docstring).

    Parameters
    ----------
    resources : ServiceResources
        The app's engine/sessions, Redis client and bus.
    core : CoreSettings
        Service settings.

    Raises
    ------
    pairdesk.research.config.ConfigError
        Missing/invalid policy YAML, universe or cost table (the service refuses to start).
    ValueError
        No pair of the universe allows the configured timeframe.
    """

    def __init__(self, *, resources: ServiceResources, core: CoreSettings) -> None:
        self.resources = resources
        self.core = core
        self.timeframe = core.timeframe
        self.research: ResearchSettings = load_settings(core.timeframe, core.config_dir)
        pairs = load_universe(core.universe_path, core.pair_ids or None)
        pairs = [p for p in pairs if core.timeframe in p.allowed_timeframes]
        if not pairs:
            raise ValueError(f"no universe pair allows timeframe {core.timeframe}")
        self.pairs = [_PairRuntime(p) for p in pairs]
        cost_table = load_yaml(core.cost_table_path)
        self.costs = {
            p.pair_id: CostModel.from_mapping(cost_table, [p.leg_a.symbol, p.leg_b.symbol])
            for p in pairs
        }
        self.dd_warn = float(load_policy(core.config_dir / "dd_policy.yaml")["dd_warn_portfolio"])
        self.schema_hash = sha256_json(feature_schema(self.research))
        self.bar = pd.Timedelta(minutes=TIMEFRAME_MINUTES[core.timeframe])
        names = resources.bus.names
        self.theta_key = names.ops_theta
        self.model: LoadedModel | None = None
        self.state = "starting"
        self.theta: _Theta | None = None
        self._ops_theta: tuple[str, dict[str, float]] = ("", {})
        self.flags: FlagsReading | None = None
        self.subscribed = False
        self.last_cycle_at: datetime | None = None
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ control

    @property
    def pair_ids(self) -> list[str]:
        """Pairs served by this process."""
        return [rt.pair.pair_id for rt in self.pairs]

    def wake(self) -> None:
        """Run a cycle now (after a model activation)."""
        self._wake.set()

    def stop(self) -> None:
        """Ask the loop to finish its current cycle and return."""
        self._stop.set()
        self._wake.set()

    def _note_error(self, where: str, exc: BaseException) -> None:
        self.last_error = f"{where}: {type(exc).__name__}: {exc}"
        self.last_error_at = _now()
        _log.warning("core_inference_error", where=where, error=self.last_error)

    async def run(self) -> None:
        """Loop until :meth:`stop`: a cycle, then wait for a closed-bar notice or the poll."""
        while not self._stop.is_set():
            try:
                async with self.resources.bus.subscribe_bars_closed() as sub:
                    self.subscribed = True
                    while not self._stop.is_set():
                        await self.cycle()
                        await self._wait(sub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: poll PostgreSQL until it is back
                self.subscribed = False
                self._note_error("bars_closed subscription", exc)
                await self.cycle()
                await self._wait(None)

    async def _wait(self, sub: Subscription[dict[str, Any]] | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.core.poll_s
        while not self._stop.is_set() and not self._wake.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            step = min(0.25, remaining)
            if sub is not None:
                if await sub.get(timeout_s=step) is not None:
                    break
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=step)
        self._wake.clear()

    async def cycle(self) -> None:
        """One pass: sync the model, process new bars of every pair, publish pending signals.

        Never raises: failures are logged and shown in the status (``last_error``).
        """
        async with self._lock:
            self.last_cycle_at = _now()
            try:
                await self._sync_model()
                if self.model is not None:
                    await self._process()
            except Exception as exc:
                self._note_error("cycle", exc)
            try:
                await self._publish()
            except Exception as exc:
                self._note_error("publish", exc)

    # ------------------------------------------------------------------ model

    def _reset_pairs(self) -> None:
        for rt in self.pairs:
            rt.engine = None
            rt.watermark = None

    def _load_model(self, row: ModelRegistry) -> LoadedModel:
        model_dir = registry.verify_bundle(row)
        params = yaml.safe_load((model_dir / "params.yaml").read_text())
        got = params.get("feature_schema_hash")
        if got != self.schema_hash:
            raise registry.BundleError(
                f"model {row.model_version} was trained with feature schema {str(got)[:12]}, "
                f"this service computes {self.schema_hash[:12]} (timeframe or feature params "
                "differ)"
            )
        return LoadedModel(
            version=row.model_version,
            timeframe=row.timeframe,
            model_dir=model_dir,
            sha256=row.artifact_sha256,
            ai1=TrainedModel.load(model_dir / "ai1"),
            ai2=TrainedModel.load(model_dir / "ai2"),
            theta1=float(row.theta1) if row.theta1 is not None else None,
            theta2=float(row.theta2) if row.theta2 is not None else None,
        )

    async def _sync_model(self) -> None:
        async with self.resources.sessions() as session:
            row = await registry.active_model(session, self.timeframe)
        if row is None:
            if self.model is not None:
                _log.info("model_unloaded", model_version=self.model.version)
            self.model = None
            self._reset_pairs()
            self.state = "no_active_model"
            return
        current = self.model
        if (
            current is not None
            and current.version == row.model_version
            and current.sha256 == row.artifact_sha256
        ):
            return
        try:
            loaded = await asyncio.to_thread(self._load_model, row)
        except (registry.BundleError, OSError, ValueError) as exc:
            self.model = None
            self._reset_pairs()
            self.state = "error"
            self._note_error(f"model {row.model_version}", exc)
            return
        self.model = loaded
        self._reset_pairs()
        self.state = "running"
        _log.info("model_loaded", model_version=loaded.version, model_dir=str(loaded.model_dir))

    async def _read_ops_theta(self, model: LoadedModel) -> None:
        """Refresh the ops θ override: hash ``core:ops:theta`` field ``<timeframe>`` = JSON
        ``{theta1, theta2, applies_to_model_version, ...}`` written by ``POST /ops/rollback
        {target: theta}``; in force only while ``applies_to_model_version`` is the active model.
        On a Redis error the last value read stays in force."""
        try:
            raw = await asyncio.wait_for(
                self.resources.redis.hget(self.theta_key, self.timeframe),
                self.core.flags_timeout_s,
            )
            ops: dict[str, float] = {}
            if raw is not None:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError(f"{self.theta_key}[{self.timeframe}] is not a JSON object")
                if body.get("applies_to_model_version") == model.version:
                    for key in ("theta1", "theta2"):
                        value = float(body[key])
                        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                            raise ValueError(f"ops {key} = {body[key]!r} is not in [0, 1]")
                        ops[key] = value
            self._ops_theta = (model.version, ops)
        except (RedisError, OSError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            self._note_error("ops theta read (keeping the last value)", exc)

    async def _resolve_theta(self, model: LoadedModel) -> _Theta:
        await self._read_ops_theta(model)
        ops_version, ops = self._ops_theta
        if ops_version != model.version:  # read for another model and not refreshed since
            ops = {}
        policy = self.research.backtest
        out: dict[str, float] = {}
        source: dict[str, str] = {}
        for key, setting, reg, pol in (
            ("theta1", self.core.theta1, model.theta1, policy.theta1),
            ("theta2", self.core.theta2, model.theta2, policy.theta2),
        ):
            if setting is not None:
                out[key], source[key] = setting, "settings"
            elif key in ops:
                out[key], source[key] = ops[key], "ops"
            elif reg is not None:
                out[key], source[key] = reg, "registry"
            else:
                out[key], source[key] = pol, "policy"
        return _Theta(out["theta1"], out["theta2"], source)

    # ------------------------------------------------------------------ bars

    def _new_engine(self, pair: PairConfig, model: LoadedModel) -> PairEngine:
        r = self.research
        return PairEngine(
            pair=pair,
            timeframe=self.timeframe,
            features=r.features,
            labels=r.labels,
            params=r.backtest,
            costs=self.costs[pair.pair_id],
            ai1=model.ai1,
            ai2=model.ai2,
            dd_warn=self.dd_warn,
        )

    async def _process(self) -> None:
        model = self.model
        assert model is not None
        self.flags = await self.resources.bus.read_flags_failsafe(self.core.flags_timeout_s)
        self.theta = await self._resolve_theta(model)
        for rt in self.pairs:
            try:
                await self._process_pair(rt, model, self.theta, self.flags)
            except Exception as exc:  # rebuilt from PostgreSQL on the next cycle
                rt.engine = None
                rt.watermark = None
                self._note_error(f"pair {rt.pair.pair_id}", exc)

    async def _load_pair(self, rt: _PairRuntime, model: LoadedModel, theta: _Theta) -> None:
        pair = rt.pair
        core = self.core
        async with self.resources.sessions() as session:
            horizon = await repo.pair_horizon(
                session, pair.leg_a.symbol, pair.leg_b.symbol, self.timeframe
            )
            if horizon is None:
                return
            bars_a, bars_b = await repo.fetch_bars(
                session,
                sym_a=pair.leg_a.symbol,
                sym_b=pair.leg_b.symbol,
                timeframe=self.timeframe,
                flags=core.quality_flags,
                include_imputed=core.use_imputed_bars,
                until=horizon,
                limit=core.replay_bars,
                newest=True,
            )
            if len(bars_a) == 0:
                return
            last_sig = await repo.last_signal_ts(session, pair.pair_id, self.timeframe)
            rows = (
                await repo.recorded_signals(
                    session, pair.pair_id, self.timeframe, bars_a.index[0].to_pydatetime()
                )
                if last_sig is not None
                else {}
            )
        n = len(bars_a)
        if last_sig is None:
            split = n
        else:
            newer = int((bars_a.index > pd.Timestamp(last_sig)).sum())
            split = n - min(newer, core.max_catchup_bars)
        recorded = {
            int(ts.value): Recorded(
                action=row.action,
                reason=row.payload.get("reason"),
                position_scale=float(row.payload.get("position_scale") or 1.0),
            )
            for ts, row in rows.items()
        }
        engine = self._new_engine(pair, model)
        await asyncio.to_thread(
            engine.replay,
            bars_a.iloc[:split],
            bars_b.iloc[:split],
            theta1=theta.theta1,
            theta2=theta.theta2,
            recorded=recorded,
        )
        rt.engine = engine
        rt.watermark = (
            bars_a.index[split - 1] if split > 0 else bars_a.index[0] - pd.Timedelta(1, "us")
        )
        rt.last_signal_ts = last_sig
        _log.info(
            "pair_state_rebuilt",
            pair_id=pair.pair_id,
            model_version=model.version,
            replayed_bars=split,
            catchup_bars=n - split,
            watermark=rt.watermark.isoformat(),
        )
        await self._store_pair_metrics(rt)

    async def _process_pair(
        self, rt: _PairRuntime, model: LoadedModel, theta: _Theta, flags: FlagsReading
    ) -> None:
        if rt.engine is None:
            await self._load_pair(rt, model, theta)
            if rt.engine is None:
                return
        pair = rt.pair
        async with self.resources.sessions() as session:
            horizon = await repo.pair_horizon(
                session, pair.leg_a.symbol, pair.leg_b.symbol, self.timeframe
            )
            if horizon is None or (rt.watermark is not None and horizon <= rt.watermark):
                return
            bars_a, bars_b = await repo.fetch_bars(
                session,
                sym_a=pair.leg_a.symbol,
                sym_b=pair.leg_b.symbol,
                timeframe=self.timeframe,
                flags=self.core.quality_flags,
                include_imputed=self.core.use_imputed_bars,
                after=rt.watermark.to_pydatetime() if rt.watermark is not None else None,
                until=horizon,
                limit=_BARS_PER_PASS,
            )
        if len(bars_a) == 0:
            return
        gate = Gate.from_reading(flags, pair.pair_id)
        va = bars_a.to_numpy()
        vb = bars_b.to_numpy()
        for i, ts in enumerate(bars_a.index):
            oa, ha, la, ca = (float(x) for x in va[i])
            ob, hb, lb, cb = (float(x) for x in vb[i])
            await self._one_bar(rt, model, theta, gate, ts, (oa, ha, la, ca), (ob, hb, lb, cb))
        if flags.status == "ok":
            await self._store_pair_metrics(rt)

    async def _one_bar(
        self,
        rt: _PairRuntime,
        model: LoadedModel,
        theta: _Theta,
        gate: Gate,
        ts: pd.Timestamp,
        bar_a: tuple[float, float, float, float],
        bar_b: tuple[float, float, float, float],
    ) -> None:
        engine = rt.engine
        assert engine is not None
        started = time.perf_counter()
        try:
            out = engine.step(
                ts,
                bar_a,
                bar_b,
                theta1=theta.theta1,
                theta2=theta.theta2,
                gate=gate,
            )
        except ValueError as exc:  # a bar the feature state refuses (bad price): skip it
            rt.watermark = ts
            self._note_error(f"pair {rt.pair.pair_id} bar {ts.isoformat()}", exc)
            return
        self._observe(model, out)
        if out.bar.ready:
            rec = self._record(rt, model, theta, out)
            async with self.resources.sessions() as session, session.begin():
                await repo.insert_signal(session, rec)
            rt.last_action = out.action.value
            rt.last_signal_ts = rec.ts_utc
        # the watermark moves only once the bar's signal is stored, so a reader that sees the
        # watermark at ts also sees that signal (pending or published)
        rt.watermark = ts
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        if elapsed_ms > self.core.latency_budget_ms:
            _log.warning(
                "inference_latency",
                error_id=error_id("CORE", "INFER", "LATENCY"),
                pair_id=rt.pair.pair_id,
                ts_utc=ts.isoformat(),
                elapsed_ms=round(elapsed_ms, 1),
                budget_ms=self.core.latency_budget_ms,
            )

    def _observe(self, model: LoadedModel, out: BarOutcome) -> None:
        v = model.version
        ML_PREDICTION_DURATION.labels(model="ai1_ai2", model_version=v).observe(out.predict_s)
        for name, value in (("ai1", out.bar.prob), ("ai2", out.bar.risk)):
            if math.isfinite(value):
                ML_PREDICTIONS_TOTAL.labels(model=name, model_version=v).inc()
                ML_PREDICTION_CONFIDENCE.labels(model=name, model_version=v).observe(value)

    def _record(
        self, rt: _PairRuntime, model: LoadedModel, theta: _Theta, out: BarOutcome
    ) -> repo.SignalRecord:
        b = out.bar
        pair = rt.pair
        side = {1: "LONG_SPREAD", -1: "SHORT_SPREAD"}.get(out.side)
        ts = b.ts.to_pydatetime()
        payload: dict[str, Any] = {
            "schema": "pairdesk.signal.v1",
            "pair_id": pair.pair_id,
            "timeframe": self.timeframe,
            "ts_utc": b.ts.isoformat(),
            "bar_close_utc": (b.ts + self.bar).isoformat(),
            "action": out.action.value,
            "side": side,
            "reason": out.reason,
            "leg_a": {"symbol": pair.leg_a.symbol, "qty": _num(out.qty_a), "close": b.close_a},
            "leg_b": {"symbol": pair.leg_b.symbol, "qty": _num(out.qty_b), "close": b.close_b},
            "z": _num(b.z),
            "beta": _num(b.beta),
            "return_prob": _num(b.prob),
            "risk_score": _num(b.risk),
            "rho_rolling": _num(b.rho),
            "candidate": b.candidate,
            "tradable": b.tradable,
            "theta1": theta.theta1,
            "theta2": theta.theta2,
            "position_scale": _num(out.position_scale),
            "position": out.state.name.lower(),
            "exit_suppressed": out.exit_suppressed,
            "exit_reason_same_bar": out.exit_reason_same_bar,
            "model_version": model.version,
            "emitted_at": _now().isoformat(),
        }
        return repo.SignalRecord(
            pair_id=pair.pair_id,
            timeframe=self.timeframe,
            ts_utc=ts,
            action=out.action.value,
            z=_num(b.z),
            return_prob=_num(b.prob),
            risk_score=_num(b.risk),
            position_scale=_num(out.position_scale),
            model_version=model.version,
            payload=payload,
        )

    async def _store_pair_metrics(self, rt: _PairRuntime) -> None:
        if rt.engine is None or rt.engine.last is None or not rt.engine.ready:
            return
        try:
            await self.resources.bus.set_pair_metrics(
                rt.pair.pair_id, rt.engine.pair_metrics(pd.Timestamp.now(tz="UTC"))
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._note_error(f"pair metrics {rt.pair.pair_id}", exc)

    # ------------------------------------------------------------------ outbox

    async def _lost_in_stream(self, rows: list[tuple[int, str]]) -> list[int]:
        """Ids of the signals among ``rows`` whose stream entry is gone."""
        stream = self.resources.bus.names.signals_stream
        async with self.resources.redis.pipeline(transaction=False) as pipe:
            for _, sid in rows:
                pipe.xrange(stream, min=sid, max=sid, count=1)
            found = await pipe.execute()
        return [i for (i, _), hit in zip(rows, found, strict=True) if not hit]

    async def _repair_lost_stream(self) -> None:
        """Re-queue signals whose stream entries a Redis restart lost.

        Cheap check first: is the newest published signal still in the stream? If not, walk
        the published signals back from the newest, a page at a time, and re-queue every one
        whose entry is missing, until a page is found intact (a lost tail) or ``MAXLEN`` rows
        were checked (a wiped stream holds at most that many anyway).
        """
        bus = self.resources.bus
        async with self.resources.sessions() as session:
            newest = await repo.published_before(
                session, self.pair_ids, self.timeframe, before_id=None, limit=1
            )
        if not newest or not await self._lost_in_stream(newest):
            return
        lost: list[int] = []
        before: int | None = None
        checked = 0
        while checked < bus.stream_maxlen:
            async with self.resources.sessions() as session:
                page = await repo.published_before(
                    session, self.pair_ids, self.timeframe, before_id=before, limit=500
                )
            if not page:
                break
            missing = await self._lost_in_stream(page)
            lost += missing
            if not missing:
                break
            before, checked = page[-1][0], checked + len(page)
        async with self.resources.sessions() as session, session.begin():
            n = await repo.clear_stream_ids(session, lost)
        _log.warning(
            "signal_stream_lost",
            error_id=error_id("CORE", "STREAM", "LOST"),
            missing_entry=newest[0][1],
            requeued=n,
        )

    async def _publish(self) -> None:
        """Publish stored signals that have no stream id yet, oldest first."""
        bus = self.resources.bus
        await self._repair_lost_stream()
        batch = self.core.publish_batch
        while True:
            async with self.resources.sessions() as session:
                rows = await repo.pending_signals(session, self.pair_ids, self.timeframe, batch)
            for row in rows:
                sid = await bus.publish_signal({**row.payload, "signal_id": row.id})
                async with self.resources.sessions() as session, session.begin():
                    await repo.set_stream_id(session, row, sid)
            if len(rows) < batch:
                return

    # ------------------------------------------------------------------ status

    async def status(self) -> InferenceStatus:
        """Snapshot for ``GET /inference/status``."""
        try:
            async with self.resources.sessions() as session:
                pending = await repo.count_pending(session, self.pair_ids, self.timeframe)
        except Exception as exc:  # status must answer even with the database down
            self._note_error("status", exc)
            pending = 0
        pairs = []
        for rt in self.pairs:
            eng = rt.engine
            pairs.append(
                PairStatus(
                    pair_id=rt.pair.pair_id,
                    loaded=eng is not None,
                    ready=bool(eng is not None and eng.ready),
                    bars=eng.n_bars if eng is not None else 0,
                    watermark=rt.watermark.to_pydatetime() if rt.watermark is not None else None,
                    position=(
                        eng.book.state.name.lower()
                        if eng is not None
                        else PositionState.FLAT.name.lower()
                    ),
                    side=eng.book.side if eng is not None else 0,
                    equity=eng.equity if eng is not None else None,
                    dd=eng.dd if eng is not None else None,
                    days_below_dd_warn=eng.days_below_dd_warn() if eng is not None else None,
                    last_action=rt.last_action,
                    last_signal_ts=rt.last_signal_ts,
                )
            )
        model, theta, flags = self.model, self.theta, self.flags
        return InferenceStatus(
            state=self.state,
            timeframe=self.timeframe,
            model_version=model.version if model else None,
            model_dir=str(model.model_dir) if model else None,
            theta1=theta.theta1 if theta and model else None,
            theta2=theta.theta2 if theta and model else None,
            theta_source=dict(theta.source) if theta and model else {},
            flags_status=flags.status if flags else None,
            global_halt=flags.flags.global_halt.value if flags and flags.flags else None,
            subscribed=self.subscribed,
            poll_s=self.core.poll_s,
            pairs=pairs,
            pending_unpublished=pending,
            last_cycle_at=self.last_cycle_at,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
        )


def lifespan_hook(
    core: CoreSettings,
) -> Callable[[FastAPI, ServiceResources], contextlib.AbstractAsyncContextManager[None]]:
    """Lifespan hook starting :class:`InferenceWorker` as a background task of the app."""

    @asynccontextmanager
    async def hook(app: FastAPI, resources: ServiceResources) -> AsyncIterator[None]:
        worker = InferenceWorker(resources=resources, core=core)
        app.state.worker = worker
        task = asyncio.create_task(worker.run(), name="core_inference_loop")
        try:
            yield
        finally:
            worker.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            app.state.worker = None

    return hook


# ---------------------------------------------------------------------- endpoint logic


async def latest(
    session: AsyncSession, *, pair_id: str | None, timeframe: str | None
) -> list[SignalLiveRead]:
    """Latest signal per pair (``signals_live``).

    Raises
    ------
    ApiError
        404 ``CORE_SIGNAL_NOTFOUND`` when ``pair_id`` is given and has no signal.
    """
    rows: list[SignalLive] = await repo.latest_signals(
        session, timeframe=timeframe, pair_id=pair_id
    )
    if pair_id is not None and not rows:
        raise ApiError(
            error_id("CORE", "SIGNAL", "NOTFOUND"),
            f"No signal for pair {pair_id}",
            status_code=404,
        )
    return [SignalLiveRead.model_validate(r) for r in rows]


async def history(
    session: AsyncSession,
    *,
    pair_id: str | None,
    timeframe: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> SignalPage:
    """One page of ``signals_history``, newest bar first.

    Raises
    ------
    ApiError
        422 ``CORE_API_VALIDATION`` when ``until <= since``.
    """
    if since is not None and until is not None and until <= since:
        raise ApiError(
            error_id("CORE", "API", "VALIDATION"), "until must be after since", status_code=422
        )
    rows, total = await repo.history_page(
        session,
        pair_id=pair_id,
        timeframe=timeframe,
        action=action,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    items: list[SignalHistoryRead] = [SignalHistoryRead.model_validate(r) for r in rows]
    return SignalPage(items=items, total=total, limit=limit, offset=offset)


async def list_models(session: AsyncSession, *, timeframe: str | None) -> list[ModelRead]:
    """Registry rows, newest first."""
    return [ModelRead.model_validate(r) for r in await registry.list_models(session, timeframe)]


async def activate(
    session: AsyncSession,
    *,
    version: str,
    user: TokenClaims,
    reason: str,
    request_id: str | None,
) -> ModelActivation:
    """Activate ``version`` and audit it in one transaction (``audit.analytics_actions``).

    Raises
    ------
    ApiError
        404 ``CORE_MODEL_NOTFOUND`` (unknown version), 409 ``CORE_MODEL_BUNDLE`` (artefacts
        missing or changed since registration).
    """
    async with session.begin():
        existing = await registry.get_model(session, version)
        if existing is None:
            raise ApiError(
                error_id("CORE", "MODEL", "NOTFOUND"),
                f"Model {version} is not registered",
                status_code=404,
            )
        changed = existing.status != ModelStatus.ACTIVE
        try:
            row, previous = await registry.activate_model(session, version, activated_by=user.sub)
        except LookupError:
            raise ApiError(
                error_id("CORE", "MODEL", "NOTFOUND"),
                f"Model {version} is not registered",
                status_code=404,
            ) from None
        except registry.BundleError as exc:
            raise ApiError(error_id("CORE", "MODEL", "BUNDLE"), str(exc), status_code=409) from None
        prev_version = previous.model_version if previous is not None else None
        audit = await repo.insert_audit(
            session,
            action="model.activate",
            actor=user.sub,
            actor_role=user.role.value,
            reason=reason,
            diff={
                "timeframe": row.timeframe,
                "model_version": {"from": prev_version, "to": row.model_version},
            },
            request_id=request_id,
            result="activated" if changed else "unchanged",
        )
        model = ModelRead.model_validate(row)
    return ModelActivation(
        model=model, previous_version=prev_version, changed=changed, audit_id=audit.id
    )
