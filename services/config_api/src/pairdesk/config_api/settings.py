"""config_api settings (spec 004 §設定変更ワークフロー仕様 v1, §環境変数・設定キー一覧 v1).

``PAIRDESK_CONFIG_DIR``
    Folder of the policy YAMLs the API lists, shows and validates against; default the
    repository's ``config/`` (:data:`pairdesk.research.config.CONFIG_DIR`).
"""

from __future__ import annotations

from pathlib import Path

from pairdesk.research.config import CONFIG_DIR
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ConfigApiSettings"]


class ConfigApiSettings(BaseSettings):
    """Settings of the config_api service only (the shared ones are in ``Settings``).

    Attributes
    ----------
    config_dir : str
        Policy YAML folder.
    """

    model_config = SettingsConfigDict(
        env_prefix="PAIRDESK_", case_sensitive=False, extra="ignore", frozen=True
    )

    config_dir: str = Field(default=str(CONFIG_DIR), min_length=1)

    @property
    def config_path(self) -> Path:
        """The config folder, absolute and symlink-resolved."""
        return Path(self.config_dir).expanduser().resolve()
