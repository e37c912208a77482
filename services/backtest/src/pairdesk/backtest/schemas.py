"""Request and response models of the backtest API (DESIGN.md §5, spec 004 §backtest-assets-engine).

``BtRunCreate`` is the body of ``POST /bt/runs``: the spec's CLI form
``bt run --universe u.yaml --period 2022-01:2024-06 --timeframe 1h --model-dir ... --cost ...``
with the model named by its registry version instead of a folder. The ``*Read`` models mirror the
``bt_runs`` / ``bt_summary`` / ``bt_trades`` / ``bt_daily_equity`` tables; numbers are JSON
numbers (floats) at the tables' precision (spec 004 §データディクショナリ表現規約), ``null`` where the
engine produced no finite value.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pairdesk.common.models import BtRunStatus, TradeSide
from pairdesk.research.provenance import PeriodError, parse_period
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

__all__ = [
    "CONFIG_PATH_PATTERN",
    "BtDailyEquityRead",
    "BtRunCreate",
    "BtRunRead",
    "BtSummaryRead",
    "BtTradeRead",
    "Timeframe",
]

#: Timeframes the research engine supports (``pairdesk.research.universe.TIMEFRAME_MINUTES``).
Timeframe = Literal["15m", "1h", "4h"]

#: A YAML file under the repository's ``config/`` folder, given relative to the repository root.
CONFIG_PATH_PATTERN = r"^config/[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+)*\.ya?ml$"

ConfigPath = Annotated[str, StringConstraints(pattern=CONFIG_PATH_PATTERN, max_length=200)]
PairId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
_PERIOD_PATTERN = r"^\d{4}-\d{2}(?:-\d{2})?:\d{4}-\d{2}(?:-\d{2})?$"


class BtRunCreate(BaseModel):
    """Body of ``POST /api/v1/bt/runs``.

    Attributes
    ----------
    pair_ids : list of str
        Pairs of the universe to backtest (at least one, no duplicates).
    universe : str
        Universe YAML, a path under ``config/`` (default ``config/universe.yaml``).
    period : str
        ``START:END`` with ``YYYY-MM`` or ``YYYY-MM-DD`` bounds, end month/day included
        (spec 004 CLI ``--period 2022-01:2024-06``); must not be empty or inverted.
    timeframe : {"15m", "1h", "4h"}
        Bar timeframe; must match the model's.
    model_version : str
        A version registered in ``model_registry``.
    cost_table : str
        Cost table YAML under ``config/`` (default ``config/cost_table.yaml``).
    theta1, theta2 : float in [0, 1], optional
        Entry thresholds ``return_prob > θ1 and risk_score < θ2``; default the model's.
    latency_bars : int >= 0, optional
        Extra fill delay in bars; default ``backtest_policy.yaml``.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    pair_ids: list[PairId] = Field(min_length=1, max_length=50)
    universe: ConfigPath = "config/universe.yaml"
    period: Annotated[str, StringConstraints(pattern=_PERIOD_PATTERN)] = Field(
        examples=["2024-01:2024-06"]
    )
    timeframe: Timeframe = "1h"
    model_version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    cost_table: ConfigPath = "config/cost_table.yaml"
    theta1: float | None = Field(default=None, ge=0.0, le=1.0)
    theta2: float | None = Field(default=None, ge=0.0, le=1.0)
    latency_bars: int | None = Field(default=None, ge=0, le=1000)

    @field_validator("pair_ids")
    @classmethod
    def _unique_pairs(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("pair_ids must not repeat a pair")
        return value

    @field_validator("period")
    @classmethod
    def _valid_period(cls, value: str) -> str:
        try:
            parse_period(value)
        except PeriodError as exc:
            raise ValueError(str(exc)) from None
        return value


class _Provenance(BaseModel):
    """Provenance stamps of every backtest output (spec 004 §backtest 出力)."""

    model_config = ConfigDict(from_attributes=True)

    model_version: str | None = None
    feature_schema_hash: str | None = None
    data_hash: str | None = None
    code_hash: str | None = None
    params_hash: str | None = None
    seed: int | None = None


class BtRunRead(_Provenance):
    """A backtest run: request, life cycle and (once succeeded) provenance.

    ``status`` goes ``queued → running → succeeded | failed``; a failed run carries
    ``error_id`` (``BT_DATA_NODATA``, ``BT_DATA_FEWBARS``, ``BT_MODEL_INVALID``,
    ``BT_RUN_TIMEOUT``, ``BT_RUN_ORPHANED``, ``BT_RUN_FAILED``...) and a caller-safe message.
    """

    run_id: str
    status: BtRunStatus
    error_id: str | None
    error_message: str | None
    request: dict[str, Any]
    requested_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class BtSummaryRead(_Provenance):
    """One ``bt_summary`` row: KPIs of one pair over the run's period.

    Ratios are fractions (``max_dd`` 0.08 = 8 %); ``pnl_std`` is the per-trade PnL σ in USD;
    ``ci`` maps each KPI (``sharpe``, ``max_dd``, ``monthly_win_rate``...) to its
    block-bootstrap 95 % interval ``[low, high]``.
    """

    run_id: str
    pair_id: str
    period: str
    trades: int
    win_rate: float | None
    e_per_trade: float | None
    ann_return: float | None
    sharpe: float | None
    max_dd: float | None
    calmar: float | None
    trades_per_year: float | None
    pnl_std: float | None
    halt_rate: float | None
    theta1: float | None
    theta2: float | None
    ci: dict[str, tuple[float | None, float | None]]


class BtTradeRead(_Provenance):
    """One round-trip trade (spec 004 ``bt_trades`` dictionary).

    ``qty_a`` / ``qty_b`` are lot sizes (unsigned; ``side`` gives the direction:
    ``SHORT_SPREAD`` sells A and buys B); ``price_*`` are entry fills, ``exit_price_*`` exit
    fills; ``cost_*`` and ``pnl`` are USD (pnl net of every cost).
    """

    trade_id: str
    run_id: str
    pair_id: str
    timestamp_entry: dt.datetime
    timestamp_exit: dt.datetime | None
    side: TradeSide
    qty_a: float
    qty_b: float
    price_a: float
    price_b: float
    exit_price_a: float | None
    exit_price_b: float | None
    z_at_entry: float
    z_at_exit: float | None
    return_prob: float | None
    risk_score: float | None
    commission_bps: float | None
    slippage_bps: float | None
    cost_commission: float | None
    cost_slippage: float | None
    cost_spread: float | None
    cost_swap: float | None
    exit_reason: str | None
    pnl: float | None


class BtDailyEquityRead(_Provenance):
    """One ``bt_daily_equity`` row: end-of-day equity (USD) and drawdown (fraction)."""

    run_id: str
    pair_id: str
    date: dt.date
    equity: float
    dd: float
