"""Turn the policy YAMLs into the quant layer's parameter dataclasses (one place, so training,
backtest and inference read the same numbers; spec 004 §最終整合チェックリスト)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pairdesk.quant.backtest import BacktestParams, ThetaObjectiveParams
from pairdesk.quant.cv import PurgedKFold
from pairdesk.quant.dq import DQParams
from pairdesk.quant.features import FeatureParams
from pairdesk.quant.labels import LabelParams, RiskLabelParams
from pairdesk.quant.metrics import KpiParams, observed_periods_per_year
from pairdesk.quant.models import LGBMParams
from pairdesk.research.config import CONFIG_DIR, ConfigError, load_policy
from pairdesk.research.universe import TIMEFRAME_MINUTES


def bars_per_day(timeframe: str) -> float:
    """Bars in 24 hours for ``timeframe`` (spec 004: day-based windows are converted to bars)."""
    if timeframe not in TIMEFRAME_MINUTES:
        raise ConfigError(f"unknown timeframe {timeframe!r}; allowed {sorted(TIMEFRAME_MINUTES)}")
    return 24 * 60 / TIMEFRAME_MINUTES[timeframe]


def _pick(cls: type, values: dict[str, Any]) -> Any:
    names = set(getattr(cls, "__dataclass_fields__", {}))
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in names})


@dataclass(frozen=True)
class ResearchSettings:
    """Every parameter of ``bt train`` / ``bt run``, read from ``config/``."""

    timeframe: str
    features: FeatureParams
    labels: LabelParams
    risk: RiskLabelParams
    dq: DQParams
    lgbm: LGBMParams
    lgbm_overrides: dict[str, dict[str, Any]]
    cv: PurgedKFold
    wf_step_days: float
    wf_min_train_days: float
    normalisation: dict[str, Any]
    theta_initial: tuple[float, float]
    theta_range: dict[str, Any]
    theta_objective: ThetaObjectiveParams
    backtest: BacktestParams
    kpi: dict[str, Any]
    kpi_params: KpiParams
    adoption: dict[str, float]
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)

    def lgbm_for(self, model: str) -> LGBMParams:
        """LightGBM parameters for ``model`` (``ai1``/``ai2``): the shared ``lightgbm`` block with
        that model's ``lightgbm_overrides`` applied."""
        return replace(self.lgbm, **self.lgbm_overrides.get(model, {}))

    def kpi_params_for(self, ts: Any) -> KpiParams:
        """KPI conventions for bars at ``ts``: with ``periods_per_year_daily: observed`` the Sharpe
        is annualised by the daily observations the data really has
        (:func:`pairdesk.quant.metrics.observed_periods_per_year`), else by the configured number."""
        if self.kpi["periods_per_year_daily"] == "observed":
            return replace(self.kpi_params, periods_per_year=observed_periods_per_year(ts))
        return self.kpi_params

    @property
    def bars_per_day(self) -> float:
        return bars_per_day(self.timeframe)


def load_settings(timeframe: str, config_dir: Path = CONFIG_DIR) -> ResearchSettings:
    """Read ``pipeline_policy``, ``core_policy``, ``retrain_policy``, ``backtest_policy`` and
    ``dd_policy`` (kept in ``raw["dd"]`` for the portfolio backtest) from ``config_dir``.

    Raises
    ------
    ConfigError
        Missing file/key or a timeframe outside ``timeframe_allowed``.
    """
    pipe = load_policy(config_dir / "pipeline_policy.yaml")
    core = load_policy(config_dir / "core_policy.yaml")
    retrain = load_policy(config_dir / "retrain_policy.yaml")
    bt = load_policy(config_dir / "backtest_policy.yaml")
    dd = load_policy(config_dir / "dd_policy.yaml")
    if timeframe not in pipe.get("timeframe_allowed", []):
        raise ConfigError(f"timeframe {timeframe!r} not in timeframe_allowed {pipe.get('timeframe_allowed')}")
    bpd = bars_per_day(timeframe)
    try:
        risk_raw = dict(core["risk_label_ai2"])
        risk_raw["dd_window_bars"] = round(risk_raw.pop("dd_window_business_days") * bpd)
        exit_rule = bt["exit_rule"]
        execution = bt["execution"]
        lab = core["label_ai1"]
        settings = ResearchSettings(
            timeframe=timeframe,
            features=_pick(FeatureParams, pipe["features"]),
            labels=_pick(LabelParams, {**lab, "z_exit": exit_rule["z_exit"], "M": exit_rule["M"]}),
            risk=_pick(RiskLabelParams, risk_raw),
            dq=DQParams(
                missing_fill_max_run=int(pipe["dq_rules"]["missing_fill_max_run"]),
                outlier_sigma=float(pipe["dq_rules"]["outlier_sigma"]),
                outlier_window_bars=int(pipe["dq_rules"]["outlier_window_bars"]),
                spike_k=float(pipe["dq_rules"]["dq_spike_k"]),
                spike_window_bars=int(pipe["dq_rules"]["spike_window_bars"]),
                missing_rate_max=float(pipe["dq_thresholds"]["missing_rate"]),
                outlier_rate_max=float(pipe["dq_thresholds"]["outlier_rate"]),
            ),
            lgbm=_pick(LGBMParams, {**retrain["lightgbm"], "class_weight_max_ratio": core["class_weight_max_ratio"]}),
            lgbm_overrides={k: dict(v) for k, v in (retrain.get("lightgbm_overrides") or {}).items()},
            cv=PurgedKFold(
                n_splits=int(retrain["cv"]["k_folds"]),
                purge_bars=int(retrain["cv"]["purge_bars"]),
                embargo_bars=int(retrain["cv"]["embargo_bars"]),
                min_block_len_bars=int(retrain["cv"]["min_block_len_bars"]),
            ),
            wf_step_days=float(retrain["walk_forward"]["wf_step_days"]),
            wf_min_train_days=float(retrain["walk_forward"]["wf_min_train_days"]),
            normalisation=dict(retrain["normalisation"]),
            theta_initial=(float(core["theta1_initial"]), float(core["theta2_initial"])),
            theta_range=dict(core["theta_search_range"]),
            theta_objective=ThetaObjectiveParams(
                **{k: float(v) for k, v in core["theta_objective"].items()},
                max_dd_max=float(bt["adoption"]["max_dd_max"]),
                trades_per_year_min=float(bt["adoption"]["trades_per_year_min"]),
            ),
            backtest=_pick(
                BacktestParams,
                {
                    "theta1": float(core["theta1_initial"]),
                    "theta2": float(core["theta2_initial"]),
                    "z_exit": exit_rule["z_exit"],
                    "M": exit_rule["M"],
                    "theta_stop": exit_rule["theta_stop"],
                    "risk_stop": exit_rule["risk_stop"],
                    "latency_bars": execution["latency_bars"],
                    "initial_capital": execution["initial_capital_usd"],
                    "notional_leg_a_fraction": execution["notional_leg_a_fraction"],
                    "position_scale": execution["position_scale"],
                },
            ),
            kpi=dict(bt["kpi"]),
            kpi_params=KpiParams(
                periods_per_year=252.0 if bt["kpi"]["periods_per_year_daily"] == "observed"
                else float(bt["kpi"]["periods_per_year_daily"])
            ),
            adoption={k: float(v) for k, v in bt["adoption"].items()},
            raw={"pipeline": pipe, "core": core, "retrain": retrain, "backtest": bt, "dd": dd},
        )
    except KeyError as exc:
        raise ConfigError(f"missing config key {exc} in {config_dir}") from exc
    return settings
