"""Settings: spec 004 §環境変数・設定キー一覧 v1 and the JWT start-up refusal of DESIGN.md §6."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pairdesk.common.settings import DEV_SECRET_PREFIX, Settings, get_settings
from pydantic import ValidationError

GOOD_SECRET = "k" * 32  # exactly 32 bytes: the minimum accepted outside dev


def _pem_pair(bits: int = 2048) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def rsa_pem() -> tuple[str, str]:
    return _pem_pair()


@pytest.fixture(scope="module")
def other_rsa_pem() -> tuple[str, str]:
    return _pem_pair()


def test_defaults_are_dev_utc_hs256_with_ephemeral_secret() -> None:
    s = Settings.from_mapping({})
    assert s.service_env == "dev"
    assert s.log_level == "INFO"
    assert s.tz == "UTC"
    assert s.storage_backend == "LOCAL"
    assert s.postgres_url is None
    assert s.redis_url is None
    assert s.pairdesk_jwt_issuer == "pairdesk"
    assert s.pairdesk_jwt_audience == "pairdesk-api"
    assert s.pairdesk_jwt_ttl_seconds == 3600
    assert s.jwt_algorithm == "HS256"
    assert s.jwt_secret_is_ephemeral
    secret = s.jwt_signing_key()
    assert secret.startswith(DEV_SECRET_PREFIX)
    assert len(secret.encode()) >= 32 + len(DEV_SECRET_PREFIX)
    # one random secret per process, so tokens issued by one Settings verify with another
    assert Settings.from_mapping({}).jwt_signing_key() == secret


def test_explicit_values_and_normalisation() -> None:
    s = Settings.from_mapping(
        {
            "POSTGRES_URL": "postgresql://u:p@db:5432/pairdesk",
            "REDIS_URL": "redis://cache:6379/0",
            "SERVICE_ENV": "PROD",
            "LOG_LEVEL": "warn",
            "TZ": "Etc/UTC",
            "STORAGE_BACKEND": "s3",
            "ARCHIVE_PATH": "s3://bucket/path",
            "SLACK_WEBHOOK_URL": "https://hooks.example/x",
            "PAGERDUTY_INTEGRATION_KEY": "pd-key",
            "TWELVEDATA_API_KEY": "td-key",
            "PAIRDESK_JWT_SECRET": GOOD_SECRET,
            "PAIRDESK_JWT_ISSUER": "desk",
            "PAIRDESK_JWT_AUDIENCE": "desk-api",
            "PAIRDESK_JWT_TTL_SECONDS": "900",
            "UNRELATED_VARIABLE": "ignored",
        }
    )
    assert s.service_env == "prod"
    assert s.log_level == "WARNING"
    assert s.tz == "UTC"
    assert s.storage_backend == "S3"
    assert s.archive_path == "s3://bucket/path"
    assert s.pairdesk_jwt_ttl_seconds == 900
    assert s.twelvedata_api_key is not None
    assert s.twelvedata_api_key.get_secret_value() == "td-key"
    assert not s.jwt_secret_is_ephemeral
    assert s.jwt_signing_key() == GOOD_SECRET == s.jwt_verification_key()
    text = repr(s) + str(s)
    for secret in ("pd-key", "td-key", GOOD_SECRET, "hooks.example"):
        assert secret not in text


def test_blank_variables_mean_unset() -> None:
    s = Settings.from_mapping({"POSTGRES_URL": "", "REDIS_URL": "  ", "PAIRDESK_JWT_SECRET": ""})
    assert s.postgres_url is None
    assert s.redis_url is None
    assert s.jwt_secret_is_ephemeral


@pytest.mark.parametrize("env", ["stg", "prod"])
def test_missing_secret_refused_outside_dev(env: str) -> None:
    with pytest.raises(ValidationError, match=r"PAIRDESK_JWT_SECRET is required when SERVICE_ENV"):
        Settings.from_mapping({"SERVICE_ENV": env})


@pytest.mark.parametrize(
    "secret",
    [
        "k" * 31,  # one byte short
        "é" * 15 + "k",  # 31 bytes in UTF-8 although 16 characters
        "short",
    ],
)
def test_short_secret_refused_outside_dev(secret: str) -> None:
    with pytest.raises(ValidationError, match=r"PAIRDESK_JWT_SECRET must be at least 32 bytes"):
        Settings.from_mapping({"SERVICE_ENV": "prod", "PAIRDESK_JWT_SECRET": secret})


@pytest.mark.parametrize("secret", ["changeme", "CHANGEME", "secret", DEV_SECRET_PREFIX + "x" * 40])
def test_default_secret_refused_outside_dev(secret: str) -> None:
    with pytest.raises(ValidationError, match=r"PAIRDESK_JWT_SECRET is a default/example value"):
        Settings.from_mapping({"SERVICE_ENV": "stg", "PAIRDESK_JWT_SECRET": secret})


def test_secret_length_counts_bytes_not_characters() -> None:
    s = Settings.from_mapping({"SERVICE_ENV": "prod", "PAIRDESK_JWT_SECRET": "é" * 16})
    assert len(s.jwt_signing_key().encode()) == 32


def test_short_secret_tolerated_in_dev() -> None:
    s = Settings.from_mapping({"PAIRDESK_JWT_SECRET": "short"})
    assert s.jwt_signing_key() == "short"
    assert not s.jwt_secret_is_ephemeral


def test_rs256_private_key_replaces_secret_outside_dev(rsa_pem: tuple[str, str]) -> None:
    private, public = rsa_pem
    s = Settings.from_mapping({"SERVICE_ENV": "prod", "PAIRDESK_JWT_PRIVATE_KEY": private})
    assert s.jwt_algorithm == "RS256"
    assert s.jwt_signing_key() == private
    # the public key is derived from the private one
    assert s.jwt_verification_key().strip() == public.strip()


def test_rs256_public_key_only_can_verify_not_sign(rsa_pem: tuple[str, str]) -> None:
    _, public = rsa_pem
    s = Settings.from_mapping({"SERVICE_ENV": "prod", "PAIRDESK_JWT_PUBLIC_KEY": public})
    assert s.jwt_algorithm == "RS256"
    assert s.jwt_verification_key() == public
    with pytest.raises(ValueError, match=r"PAIRDESK_JWT_PRIVATE_KEY is not configured"):
        s.jwt_signing_key()


def test_mismatched_rsa_keys_refused(
    rsa_pem: tuple[str, str], other_rsa_pem: tuple[str, str]
) -> None:
    with pytest.raises(ValidationError, match=r"PAIRDESK_JWT_PUBLIC_KEY does not match"):
        Settings.from_mapping(
            {"PAIRDESK_JWT_PRIVATE_KEY": rsa_pem[0], "PAIRDESK_JWT_PUBLIC_KEY": other_rsa_pem[1]}
        )


@pytest.mark.parametrize("var", ["PAIRDESK_JWT_PRIVATE_KEY", "PAIRDESK_JWT_PUBLIC_KEY"])
def test_garbage_pem_refused(var: str) -> None:
    with pytest.raises(ValidationError, match=rf"{var} is not a usable RSA PEM key"):
        Settings.from_mapping({var: "-----BEGIN NONSENSE-----\nabc\n-----END NONSENSE-----\n"})


def test_weak_rsa_key_refused() -> None:
    private, _ = _pem_pair(bits=1024)
    with pytest.raises(ValidationError, match=r"at least 2048 bits"):
        Settings.from_mapping({"PAIRDESK_JWT_PRIVATE_KEY": private})


@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        ({"TZ": "Asia/Tokyo"}, r"TZ must be UTC"),
        ({"SERVICE_ENV": "production"}, r"service_env"),
        ({"LOG_LEVEL": "TRACE"}, r"log_level"),
        ({"STORAGE_BACKEND": "FTP"}, r"storage_backend"),
        ({"PAIRDESK_JWT_TTL_SECONDS": "0"}, r"pairdesk_jwt_ttl_seconds"),
        ({"PAIRDESK_JWT_ISSUER": ""}, r"pairdesk_jwt_issuer"),
    ],
)
def test_invalid_values_name_the_variable(values: dict[str, str], pattern: str) -> None:
    with pytest.raises(ValidationError, match=pattern):
        Settings.from_mapping(values)


def test_get_settings_reads_environment_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_ENV", "stg")
    monkeypatch.setenv("PAIRDESK_JWT_SECRET", GOOD_SECRET)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("TZ", "UTC")
    get_settings.cache_clear()
    try:
        first = get_settings()
        assert first.service_env == "stg"
        assert first.log_level == "DEBUG"
        assert get_settings() is first
        monkeypatch.setenv("PAIRDESK_JWT_SECRET", "short")
        assert get_settings() is first  # cached until cache_clear
        get_settings.cache_clear()
        with pytest.raises(ValidationError, match=r"PAIRDESK_JWT_SECRET must be at least"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_from_mapping_ignores_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_ENV", "prod")
    s = Settings.from_mapping({"LOG_LEVEL": "ERROR"})
    assert s.service_env == "dev"
    assert s.log_level == "ERROR"


def test_validation_errors_do_not_echo_secrets() -> None:
    with pytest.raises(ValidationError) as info:
        Settings.from_mapping(
            {
                "SERVICE_ENV": "prod",
                "PAIRDESK_JWT_SECRET": "tiny-secret-value",
                "TWELVEDATA_API_KEY": "td-very-private-key",
            }
        )
    text = str(info.value)
    assert "PAIRDESK_JWT_SECRET must be at least 32 bytes" in text
    assert "tiny-secret-value" not in text
    assert "td-very-private-key" not in text
