"""Settings: read from HANDOFF_* once; a bad value stops the start with one line naming it."""

from __future__ import annotations

import pytest

from handoff_app.settings import DEFAULT_DATABASE_URL, Settings, SettingsError


def test_defaults_run_the_whole_product_on_sqlite_and_maildir() -> None:
    s = Settings.from_env({})
    assert s.database_url == DEFAULT_DATABASE_URL
    assert s.smtp_url is None
    assert s.maildir == "./handoff-mail"
    assert s.push_mode == "inprocess"
    assert (s.retry_base_seconds, s.retry_cap_seconds, s.retry_attempts) == (30.0, 3600.0, 8)
    assert s.worker_poll_seconds == 1.0


def test_postgres_urls_get_the_async_driver_and_listen_notify_push() -> None:
    s = Settings.from_env({"HANDOFF_DATABASE_URL": "postgresql://u@127.0.0.1/db"})
    assert s.database_url == "postgresql+asyncpg://u@127.0.0.1/db"
    assert s.push_mode == "pg"


def test_every_setting_is_read() -> None:
    s = Settings.from_env(
        {
            "HANDOFF_DATABASE_URL": "sqlite+aiosqlite:///./x.db",
            "HANDOFF_SMTP_URL": "smtp://u:p@127.0.0.1:2525?starttls=true",
            "HANDOFF_MAILDIR": "/tmp/mail",
            "HANDOFF_MAIL_FROM": "desk@example.com",
            "HANDOFF_JWT_SECRET": "s" * 32,
            "HANDOFF_PUBLIC_URL": "https://desk.example.com/",
            "HANDOFF_PUSH": "inprocess",
            "HANDOFF_RETRY_BASE_SECONDS": "2",
            "HANDOFF_RETRY_CAP_SECONDS": "60",
            "HANDOFF_RETRY_ATTEMPTS": "3",
            "HANDOFF_WORKER_POLL_SECONDS": "0.5",
        }
    )
    assert s.smtp_url == "smtp://u:p@127.0.0.1:2525?starttls=true"
    assert s.maildir == "/tmp/mail"
    assert s.mail_from == "desk@example.com"
    assert s.public_url == "https://desk.example.com"
    assert (s.retry_base_seconds, s.retry_cap_seconds, s.retry_attempts) == (2.0, 60.0, 3)
    assert s.worker_poll_seconds == 0.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HANDOFF_DATABASE_URL", "mysql://x/y"),
        ("HANDOFF_SMTP_URL", "http://mail"),
        ("HANDOFF_MAIL_FROM", "not-an-address"),
        ("HANDOFF_JWT_SECRET", "short"),
        ("HANDOFF_PUBLIC_URL", "desk.example.com"),
        ("HANDOFF_PUSH", "carrier-pigeon"),
        ("HANDOFF_RETRY_BASE_SECONDS", "soon"),
        ("HANDOFF_RETRY_ATTEMPTS", "0"),
        ("HANDOFF_WORKER_POLL_SECONDS", "-1"),
    ],
)
def test_a_bad_value_is_refused_with_one_line_naming_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({name: value})
    message = str(refused.value)
    assert name in message
    assert "\n" not in message


def test_listen_notify_push_needs_postgres() -> None:
    with pytest.raises(SettingsError, match="HANDOFF_PUSH"):
        Settings.from_env({"HANDOFF_PUSH": "pg"})


def test_the_cap_may_not_be_below_the_base() -> None:
    with pytest.raises(SettingsError, match="HANDOFF_RETRY_CAP_SECONDS"):
        Settings.from_env({"HANDOFF_RETRY_BASE_SECONDS": "100", "HANDOFF_RETRY_CAP_SECONDS": "10"})


def test_cors_origins_claim_link_ttl_and_link_secret_are_read() -> None:
    settings = Settings.from_env(
        {
            "HANDOFF_CORS_ORIGINS": " https://desk.example.com/ , http://127.0.0.1:3000,,",
            "HANDOFF_CLAIM_LINK_TTL_SECONDS": "3600",
            "HANDOFF_JWT_SECRET": "j" * 32,
            "HANDOFF_LINK_SECRET": "l" * 32,
        }
    )
    assert settings.cors_origins == ("https://desk.example.com", "http://127.0.0.1:3000")
    assert settings.claim_link_ttl_seconds == 3600
    assert settings.link_key == "l" * 32
    assert Settings.from_env({"HANDOFF_JWT_SECRET": "j" * 32}).link_key == "j" * 32
    assert Settings.from_env({}).cors_origins == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HANDOFF_CORS_ORIGINS", "desk.example.com"),
        ("HANDOFF_CORS_ORIGINS", "https://desk.example.com/app"),
        ("HANDOFF_CORS_ORIGINS", "ftp://desk.example.com"),
        ("HANDOFF_CLAIM_LINK_TTL_SECONDS", "10"),
        ("HANDOFF_CLAIM_LINK_TTL_SECONDS", "soon"),
        ("HANDOFF_LINK_SECRET", "short"),
    ],
)
def test_a_bad_link_or_cors_setting_is_one_line_naming_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({name: value})
    assert name in str(refused.value) and "\n" not in str(refused.value)


def test_webhook_settings_are_read_and_private_targets_are_off_by_default() -> None:
    assert Settings.from_env({}).webhook_allow_private is False
    s = Settings.from_env(
        {
            "HANDOFF_WEBHOOK_ALLOW_PRIVATE": "1",
            "HANDOFF_WEBHOOK_TIMEOUT_SECONDS": "2.5",
            "HANDOFF_WEBHOOK_PER_ENDPOINT": "3",
        }
    )
    assert (s.webhook_allow_private, s.webhook_timeout_seconds, s.webhook_per_endpoint) == (
        True,
        2.5,
        3,
    )
    assert Settings.from_env({"HANDOFF_WEBHOOK_ALLOW_PRIVATE": "0"}).webhook_allow_private is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HANDOFF_WEBHOOK_ALLOW_PRIVATE", "maybe"),
        ("HANDOFF_WEBHOOK_TIMEOUT_SECONDS", "0"),
        ("HANDOFF_WEBHOOK_PER_ENDPOINT", "many"),
    ],
)
def test_a_bad_webhook_setting_is_one_line_naming_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["http://h.test/?x=1", "http://h.test/#top", "http://user:pw@h.test", "https://u@h.test"]
)
def test_a_public_url_that_cannot_carry_links_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="HANDOFF_PUBLIC_URL"):
        Settings.from_env({"HANDOFF_PUBLIC_URL": url, "HANDOFF_JWT_SECRET": "s" * 32})
