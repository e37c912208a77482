"""Request and response models of the config_api (spec 004 §設定変更ワークフロー仕様 v1 API,
DESIGN.md §6 auth)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pairdesk.common.auth import Role
from pairdesk.common.service import Page
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CONFIG_NAME_PATTERN",
    "MAX_CONFIG_BYTES",
    "ConfigChangeBrief",
    "ConfigChangePage",
    "ConfigChangeRead",
    "ConfigDetailRead",
    "ConfigFileRead",
    "ConfigValidateCreate",
    "ConfigValidateRead",
    "DiffEntryRead",
    "TokenCreate",
    "TokenRead",
]

#: Allowed config names (file stems): no dots, slashes or other path characters.
CONFIG_NAME_PATTERN: Final = r"^[a-z0-9_]{1,64}$"
#: Largest proposed YAML text accepted (characters).
MAX_CONFIG_BYTES: Final = 256 * 1024


class TokenCreate(BaseModel):
    """``POST /auth/token`` body."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class TokenRead(BaseModel):
    """An issued bearer token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 -- the OAuth2 token type
    expires_in: int = Field(description="Lifetime in seconds")
    role: Role


class ConfigChangeBrief(BaseModel):
    """Latest ``audit.config_changes`` row of a config."""

    change_id: str
    state: str
    actor: str
    occurred_at: datetime


class ConfigFileRead(BaseModel):
    """One YAML of the config folder."""

    name: str = Field(description="File stem, used in /configs/{name}")
    file: str
    sha256: str
    size: int = Field(description="Bytes")
    modified_at: datetime = Field(description="File modification time (UTC)")
    last_change: ConfigChangeBrief | None


class ConfigDetailRead(BaseModel):
    """A config's parsed content, raw text and checksum."""

    name: str
    file: str
    sha256: str
    size: int
    content: Any = Field(description="yaml.safe_load of the file (JSON-safe)")
    text: str


class ConfigValidateCreate(BaseModel):
    """``POST /configs/validate`` body: a proposed new content of an existing config."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=CONFIG_NAME_PATTERN, examples=["dd_policy"])
    content: str = Field(max_length=MAX_CONFIG_BYTES, description="Proposed YAML text")
    reason: str | None = Field(default=None, max_length=2000, description="Why (audit)")


class DiffEntryRead(BaseModel):
    """One difference between the current file and the proposal."""

    path: str = Field(description="Dotted path, list items as [i] (e.g. pairs[0].leg_A)")
    op: Literal["added", "removed", "changed"]
    old: Any = None
    new: Any = None


class ConfigValidateRead(BaseModel):
    """A passed validation (recorded in ``audit.config_changes`` as state ``draft``)."""

    change_id: str
    name: str
    state: str
    valid: Literal[True] = True
    base_checksum: str = Field(description="sha256 of the current file")
    checksum: str = Field(description="sha256 of the proposed text")
    diff: list[DiffEntryRead]
    warnings: list[str]
    risk_note: str | None
    approvals_required: int


class ConfigChangeRead(BaseModel):
    """One ``audit.config_changes`` row."""

    id: int
    change_id: str
    config_name: str
    state: str
    actor: str
    actor_role: str | None
    reason: str
    occurred_at: datetime
    version: str | None
    from_version: str | None
    checksum: str | None
    merge_sha: str | None
    env: str | None
    risk_note: str | None
    approvers: list[Any]
    diff: dict[str, Any]
    request_id: str | None


ConfigChangePage = Page[ConfigChangeRead]
