"""Static validation and diff of a proposed policy YAML (spec 004 §設定変更ワークフロー仕様 v1
静的検証（Validate）, §環境変数・設定キー一覧 v1 検証ルール（静的）).

Rules (a proposal is *valid* when :attr:`Validation.problems` is empty)

1. The text parses as YAML (``yaml.safe_load``) and its top level is a mapping.
2. Every key of the current file is still present, recursively through mappings, with a value of
   the same kind (mapping, list, number, boolean, string; ``null`` in the current file accepts
   anything; an integer may become a float and back).
3. A ``{value: ..., label_ja: ..., description: ...}`` wrapper of the current file stays a
   wrapper (the spec's policy-file convention; :func:`pairdesk.research.config.load_policy`
   unwraps it).
4. Cross checks named by the spec: ``timeframe_default ∈ timeframe_allowed``
   (``pipeline_policy``); ``dd_warn < dd_halt < dd_flatten`` within (0, 1) and
   ``k_warn < k_halt < k_flatten`` (``dd_policy``).

Keys the current file does not have are reported as warnings, not problems. The change risk
(spec: "レバレッジ/θ/コストの急変は risk_note を付与し approver≥2") flags changed paths about θ,
leverage or costs, and any change of ``cost_table``.

Aliases are allowed (``universe.yaml`` uses anchors) but every walk is bounded by a node budget,
so an alias bomb is reported as a problem instead of exhausting memory or time.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

import yaml

__all__ = [
    "MAX_NODES",
    "DiffEntry",
    "Validation",
    "diff_values",
    "jsonable",
    "validate_proposal",
]

#: Nodes any single walk may visit (the shipped configs have a few hundred).
MAX_NODES: Final = 100_000
_WRAPPER_KEYS: Final = frozenset({"value", "label_ja", "description"})
_RISKY: Final = re.compile(r"theta|leverage|cost|commission|slippage|spread|swap", re.IGNORECASE)
_RISKY_FILES: Final = frozenset({"cost_table"})


class _TooComplex(Exception):
    pass


class _Budget:
    def __init__(self, limit: int = MAX_NODES) -> None:
        self.left = limit

    def tick(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _TooComplex


@dataclass(frozen=True)
class DiffEntry:
    """One difference: ``path`` (``a.b[0].c``), ``op`` and the JSON-safe old/new values."""

    path: str
    op: str  # "added" | "removed" | "changed"
    old: Any = None
    new: Any = None


@dataclass
class Validation:
    """Outcome of :func:`validate_proposal`."""

    parsed: Any = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    diff: list[DiffEntry] = field(default_factory=list)
    risk_note: str | None = None

    @property
    def valid(self) -> bool:
        """True when there is no problem."""
        return not self.problems

    @property
    def approvals_required(self) -> int:
        """Approvers the change needs (2 for a high-risk change, else 1)."""
        return 2 if self.risk_note else 1


def jsonable(obj: Any, budget: _Budget | None = None) -> Any:
    """``obj`` as JSON-safe data: string keys, ISO dates, non-finite floats as strings."""
    b = budget or _Budget()
    b.tick()
    if isinstance(obj, dict):
        return {str(k): jsonable(v, b) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, b) for v in obj]
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _is_wrapper(node: Any) -> bool:
    return isinstance(node, dict) and "value" in node and set(node) <= _WRAPPER_KEYS


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, (date, datetime)):
        return "date"
    return type(value).__name__


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _check_shape(cur: Any, new: Any, path: str, out: Validation, budget: _Budget) -> None:
    budget.tick()
    if _is_wrapper(cur):
        if not _is_wrapper(new):
            out.problems.append(
                f"{path}: the {{value: ...}} wrapper of the current file was removed"
            )
            return
        _check_shape(cur["value"], new["value"], _join(path, "value"), out, budget)
        return
    if cur is None:
        return
    if _kind(cur) != _kind(new):
        out.problems.append(f"{path}: expected a {_kind(cur)}, got a {_kind(new)}")
        return
    if isinstance(cur, dict):
        for key, value in cur.items():
            if key not in new:
                out.problems.append(f"{_join(path, key)}: key of the current file is missing")
            else:
                _check_shape(value, new[key], _join(path, key), out, budget)
        for key in new:
            if key not in cur:
                out.warnings.append(f"{_join(path, key)}: new key (not in the current file)")


def diff_values(
    old: Any, new: Any, path: str = "", budget: _Budget | None = None
) -> list[DiffEntry]:
    """Differences from ``old`` to ``new`` (mappings by key, lists by index), in document order.

    Raises
    ------
    _TooComplex
        When the walk exceeds the node budget (internal; :func:`validate_proposal` reports it).
    """
    b = budget or _Budget()
    b.tick()
    out: list[DiffEntry] = []
    if isinstance(old, dict) and isinstance(new, dict):
        for key, value in old.items():
            p = _join(path, key)
            if key not in new:
                out.append(DiffEntry(p, "removed", old=jsonable(value, b)))
            else:
                out.extend(diff_values(value, new[key], p, b))
        out.extend(
            DiffEntry(_join(path, k), "added", new=jsonable(v, b))
            for k, v in new.items()
            if k not in old
        )
        return out
    if isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            p = f"{path}[{i}]"
            if i >= len(new):
                out.append(DiffEntry(p, "removed", old=jsonable(old[i], b)))
            elif i >= len(old):
                out.append(DiffEntry(p, "added", new=jsonable(new[i], b)))
            else:
                out.extend(diff_values(old[i], new[i], p, b))
        return out
    if _kind(old) != _kind(new) or old != new:
        out.append(DiffEntry(path, "changed", old=jsonable(old, b), new=jsonable(new, b)))
    return out


def _unwrapped(doc: dict[Any, Any]) -> dict[Any, Any]:
    return {k: (v["value"] if _is_wrapper(v) else v) for k, v in doc.items()}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _increasing(doc: dict[Any, Any], keys: tuple[str, ...], unit: bool, out: Validation) -> None:
    values = [_number(doc.get(k)) for k in keys]
    if any(v is None for v in values):
        return  # shape problems are reported elsewhere
    nums = [v for v in values if v is not None]
    if any(b <= a for a, b in itertools.pairwise(nums)):
        out.problems.append(f"{' < '.join(keys)} must increase, got {nums}")
    if unit and any(not 0.0 < v < 1.0 for v in nums):
        out.problems.append(f"{', '.join(keys)} must be fractions in (0, 1), got {nums}")


def _cross_checks(name: str, doc: dict[Any, Any], out: Validation) -> None:
    values = _unwrapped(doc)
    if name == "pipeline_policy":
        allowed, default = values.get("timeframe_allowed"), values.get("timeframe_default")
        if isinstance(allowed, list) and default is not None and default not in allowed:
            out.problems.append(
                f"timeframe_default {default!r} is not in timeframe_allowed {allowed}"
            )
    elif name == "dd_policy":
        _increasing(
            values, ("dd_warn_portfolio", "dd_halt_portfolio", "dd_flatten_portfolio"), True, out
        )
        _increasing(values, ("k_warn", "k_halt", "k_flatten"), False, out)


def _risk_note(name: str, diff: list[DiffEntry]) -> str | None:
    risky = [d.path for d in diff if name in _RISKY_FILES or _RISKY.search(d.path)]
    if not risky:
        return None
    shown = ", ".join(risky[:10]) + (f" (+{len(risky) - 10} more)" if len(risky) > 10 else "")
    return f"High-risk change (θ / leverage / costs): {shown}; two approvers required"


def validate_proposal(name: str, current: Any, text: str) -> Validation:
    """Validate ``text`` as the new content of config ``name`` whose parsed content is ``current``.

    Parameters
    ----------
    name : str
        Config name (file stem, e.g. ``"dd_policy"``).
    current : Any
        ``yaml.safe_load`` of the current file.
    text : str
        Proposed YAML text.

    Returns
    -------
    Validation
        Problems (empty when valid), warnings, the diff current → proposed (computed whenever the
        proposal parses to a mapping) and the risk note.
    """
    out = Validation()
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        out.problems.append(f"YAML syntax error: {exc}")
        return out
    except RecursionError:
        out.problems.append("YAML is nested too deeply")
        return out
    out.parsed = parsed
    if not isinstance(parsed, dict):
        out.problems.append(f"top level must be a mapping, got a {_kind(parsed)}")
        return out
    try:
        if isinstance(current, dict):
            _check_shape(current, parsed, "", out, _Budget())
        _cross_checks(name, parsed, out)
        out.diff = diff_values(current, parsed, "", _Budget())
    except (_TooComplex, RecursionError):
        out.problems.append(
            f"content is too large or too deeply nested (more than {MAX_NODES} nodes once "
            "aliases are expanded)"
        )
        out.diff = []
        return out
    out.risk_note = _risk_note(name, out.diff)
    return out
