"""data_pipeline settings (spec 004 §data-assets-pipeline 仕様 v1, §環境変数・設定キー一覧 v1).

Environment variables (``PAIRDESK_`` prefix, case-insensitive):

``PAIRDESK_DROP_DIRS``
    File-drop roots separated by ``os.pathsep`` (``:`` on POSIX), default ``./data:./var/drop``.
    ``POST /data/ingest/runs`` only reads folders inside one of them (after resolving symlinks).
``PAIRDESK_STORE_DIR``
    Parquet store root (layout in :mod:`pairdesk.research.store`), default ``./var/store``.
``PAIRDESK_UNIVERSE_FILES``
    Universe YAMLs whose legs' ``trading_hours`` give each symbol's session calendar, separated by
    ``os.pathsep``; default the repository's ``config/universe.yaml`` and
    ``config/universe_crypto.yaml``.

Relative paths are resolved against the working directory of the process.
"""

from __future__ import annotations

import os
from pathlib import Path

from pairdesk.research.config import CONFIG_DIR
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DataPipelineSettings"]

_DEFAULT_UNIVERSES = os.pathsep.join(
    str(CONFIG_DIR / name) for name in ("universe.yaml", "universe_crypto.yaml")
)


def _split(value: str) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser().resolve() for p in value.split(os.pathsep) if p.strip())


class DataPipelineSettings(BaseSettings):
    """Settings of the data_pipeline service only (the shared ones are in ``Settings``).

    Attributes
    ----------
    drop_dirs : str
        ``os.pathsep``-separated allowed file-drop roots.
    store_dir : str
        Parquet store root.
    universe_files : str
        ``os.pathsep``-separated universe YAMLs (session calendars per symbol).
    """

    model_config = SettingsConfigDict(
        env_prefix="PAIRDESK_", case_sensitive=False, extra="ignore", frozen=True
    )

    drop_dirs: str = Field(default=os.pathsep.join(["./data", "./var/drop"]), min_length=1)
    store_dir: str = Field(default="./var/store", min_length=1)
    universe_files: str = Field(default=_DEFAULT_UNIVERSES, min_length=1)

    @property
    def drop_roots(self) -> tuple[Path, ...]:
        """Allowed drop roots, absolute and symlink-resolved."""
        return _split(self.drop_dirs)

    @property
    def store_path(self) -> Path:
        """Store root, absolute."""
        return Path(self.store_dir).expanduser().resolve()

    @property
    def universe_paths(self) -> tuple[Path, ...]:
        """Universe YAML paths, absolute."""
        return _split(self.universe_files)
