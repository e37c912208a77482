"""Policy YAML loading (spec 004 §設定YAMLひな形, §環境変数・設定キー一覧 v1).

The spec's policy files wrap each key as ``{value: ..., label_ja: ...}``; :func:`load_policy`
returns the plain mapping ``{key: value}``. Files without the wrapper (``universe.yaml``,
``cost_table.yaml``) are returned as parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: Repository root (``libs/research/src/pairdesk/research/config.py`` → five levels up).
REPO_ROOT = Path(__file__).resolve().parents[5]
CONFIG_DIR = REPO_ROOT / "config"


class ConfigError(ValueError):
    """A policy file is missing, unparsable or lacks a required key."""


def _unwrap(node: Any) -> Any:
    if isinstance(node, dict) and "value" in node and set(node) <= {"value", "label_ja", "description"}:
        return node["value"]
    return node


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; raise :class:`ConfigError` with the path on any failure."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        with p.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse YAML {p}: {exc}") from exc


def load_policy(name_or_path: str | Path) -> dict[str, Any]:
    """Load ``config/<name>.yaml`` (or an explicit path) and unwrap ``{value: ...}`` entries.

    Raises
    ------
    ConfigError
        If the file is missing, not YAML, or not a mapping at top level.
    """
    p = Path(name_or_path)
    if p.suffix not in {".yaml", ".yml"}:
        p = CONFIG_DIR / f"{name_or_path}.yaml"
    raw = load_yaml(p)
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return {k: _unwrap(v) for k, v in raw.items()}
