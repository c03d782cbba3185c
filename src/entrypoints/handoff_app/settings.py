"""Settings from HANDOFF_* environment variables, read once at start and never at import time."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from attrs import frozen

if TYPE_CHECKING:
    from handoff_sql import DatabaseUrl

N = TypeVar("N", int, float)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./handoff.db"
DEFAULT_MAILDIR = "./handoff-mail"
DEFAULT_MAIL_FROM = "handoff@localhost"
DEFAULT_PUBLIC_URL = "http://localhost:8000"


class SettingsError(ValueError):
    """A bad setting: the message is one line that names it."""


def _number(env: Mapping[str, str], name: str, kind: type[N], default: N, low: N, high: N) -> N:
    """A bounded int or float setting; absent or empty means the default."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r} is not {what}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={raw!r} must be between {low} and {high}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    """A 0/1 setting (also false/true); absent or empty is off."""
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name}={raw!r} must be 0 or 1")


def _database_url(raw: str) -> str:
    try:
        scheme = urlsplit(raw).scheme
    except ValueError as exc:  # e.g. "Invalid IPv6 URL" for an unclosed [
        raise SettingsError(f"HANDOFF_DATABASE_URL is not a URL: {exc}") from None
    if scheme == "memory":
        return raw
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        url = raw.replace("sqlite://", "sqlite+aiosqlite://", 1) if scheme == "sqlite" else raw
        _sqlite_folder_exists(_usable(url))
        return url
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        url = f"postgresql+asyncpg://{raw.split('://', 1)[1]}"
        _usable(url)
        return url
    raise SettingsError(
        f"HANDOFF_DATABASE_URL has scheme {scheme!r}; use sqlite+aiosqlite://, "
        "postgresql+asyncpg:// or memory://"
    )


def _origins(raw: str) -> tuple[str, ...]:
    """`HANDOFF_CORS_ORIGINS`: comma-separated `scheme://host[:port]` origins, or `*`."""
    found: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        if item != "*" and (
            parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/")
        ):
            raise SettingsError(
                f"HANDOFF_CORS_ORIGINS item {item!r} must be an origin like https://desk.example.com"
            )
        found.append(item.rstrip("/"))
    return tuple(found)


def _usable(url: str) -> DatabaseUrl:
    """The URL as the SQL adapter reads it, once it agrees it can use it (options, driver
    installed)."""
    from handoff_sql import BadDatabaseUrl, DatabaseUrl

    try:
        return DatabaseUrl.parse(url)
    except BadDatabaseUrl as exc:
        raise SettingsError(f"HANDOFF_DATABASE_URL: {exc}") from None


def _sqlite_folder_exists(parsed: DatabaseUrl) -> None:
    """Refuse a SQLite URL whose file would go in a folder that does not exist: a command may
    create the file (`db upgrade`, `serve`, `members add`), never the folders above it, which a
    typo in the path would otherwise leave behind."""
    database = parsed.url.database or ""
    folder = os.path.dirname(os.path.abspath(os.path.expanduser(database)))
    if not os.path.isdir(folder):
        raise SettingsError(
            f"HANDOFF_DATABASE_URL: the folder {folder} of the SQLite database does not exist "
            "or is not a folder; create it first"
        )


def _unicode(env: Mapping[str, str]) -> None:
    """Bytes that are not UTF-8 in a setting arrive as lone surrogates, which no URL, path or
    secret can use: refuse them here, naming the variable, instead of deep in a driver."""
    for name, value in env.items():
        if name.startswith("HANDOFF_"):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise SettingsError(
                    f"{name} must be valid UTF-8 (it holds bytes that are not)"
                ) from None


def _usable_smtp(url: str, mail_from: str) -> None:
    """Refuse now, in one line, what the mail adapter would refuse when the services open."""
    from handoff_mail import SmtpSettings

    try:
        SmtpSettings.from_url(url, mail_from=mail_from)
    except ValueError as exc:
        raise SettingsError(f"HANDOFF_SMTP_URL: {exc}") from None


def _public_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"HANDOFF_PUBLIC_URL={raw!r} must be an http(s) URL")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise SettingsError(
            "HANDOFF_PUBLIC_URL must be a plain base URL like https://desk.example.com/handoff "
            "(no query, fragment or credentials: links are built on it and sent in emails)"
        )
    return raw.rstrip("/")


@frozen
class Settings:
    """Every setting of the service (the `HANDOFF_*` variables of the README), read once at
    start by `from_env`; tests and host applications may build one directly."""

    database_url: str = DEFAULT_DATABASE_URL
    smtp_url: str | None = None
    maildir: str = DEFAULT_MAILDIR
    mail_from: str = DEFAULT_MAIL_FROM
    jwt_secret: str | None = None
    public_url: str = DEFAULT_PUBLIC_URL
    push: str = "auto"
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 3600.0
    retry_attempts: int = 8
    worker_poll_seconds: float = 1.0
    worker_lease_seconds: float = 300.0
    worker_batch: int = 100
    body_limit_bytes: int = 512 * 1024
    body_timeout_seconds: float = 30.0  # a body still arriving after this gets 408
    heartbeat_seconds: float = 15.0
    dispatch_concurrency: int = 8  # 0: nothing is sent from this process's requests
    worker_lanes: int = 1  # batches a worker sends at once
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 10.0
    webhook_per_endpoint: int = 4
    link_secret: str | None = None  # claim links' key; None: derived from jwt_secret
    claim_link_ttl_seconds: float = 86400.0
    cors_origins: tuple[str, ...] = ()
    metrics: bool = True

    @property
    def link_key(self) -> str | None:
        """The secret claim links are signed with (a key is derived from it for that alone)."""
        return self.link_secret or self.jwt_secret

    @property
    def is_postgres(self) -> bool:
        """The store is PostgreSQL (the one that allows several processes)."""
        return self.database_url.startswith("postgresql")

    @property
    def is_memory(self) -> bool:
        """The store is in memory (`memory://`): nothing is kept."""
        return self.database_url.startswith("memory:")

    @property
    def push_mode(self) -> str:
        """`inprocess` or `pg`, with `auto` resolved by the database."""
        if self.push == "auto":
            return "pg" if self.is_postgres else "inprocess"
        return self.push

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from `env` (default: the process environment). Raises SettingsError, a
        one-line message naming the variable, for any value that cannot be used."""
        env = os.environ if env is None else env
        _unicode(env)
        push = env.get("HANDOFF_PUSH", "auto") or "auto"
        if push not in ("auto", "inprocess", "pg"):
            raise SettingsError(f"HANDOFF_PUSH={push!r} must be auto, inprocess or pg")
        database_url = _database_url(env.get("HANDOFF_DATABASE_URL") or DEFAULT_DATABASE_URL)
        if push == "pg" and not database_url.startswith("postgresql"):
            raise SettingsError("HANDOFF_PUSH=pg needs a PostgreSQL HANDOFF_DATABASE_URL")
        smtp_url = env.get("HANDOFF_SMTP_URL") or None
        if smtp_url is not None and urlsplit(smtp_url).scheme not in ("smtp", "smtps"):
            raise SettingsError("HANDOFF_SMTP_URL must start with smtp:// or smtps://")
        mail_from = env.get("HANDOFF_MAIL_FROM") or DEFAULT_MAIL_FROM
        if "@" not in mail_from:
            raise SettingsError(f"HANDOFF_MAIL_FROM={mail_from!r} is not an email address")
        if smtp_url is not None:
            _usable_smtp(smtp_url, mail_from)
        secret = env.get("HANDOFF_JWT_SECRET") or None
        if secret is not None and len(secret.encode("utf-8")) < 32:
            raise SettingsError("HANDOFF_JWT_SECRET must be at least 32 bytes (HS256 key length)")
        base = _number(env, "HANDOFF_RETRY_BASE_SECONDS", float, 30.0, 0.001, 86400)
        cap = _number(env, "HANDOFF_RETRY_CAP_SECONDS", float, 3600.0, 0.001, 7 * 86400)
        if cap < base:
            raise SettingsError("HANDOFF_RETRY_CAP_SECONDS must not be below the base")
        link_secret = env.get("HANDOFF_LINK_SECRET") or None
        if link_secret is not None and len(link_secret.encode("utf-8")) < 32:
            raise SettingsError("HANDOFF_LINK_SECRET must be at least 32 bytes")
        metrics = (env.get("HANDOFF_METRICS") or "on").strip().lower()
        if metrics not in ("on", "off"):
            raise SettingsError(f"HANDOFF_METRICS={metrics!r} must be on or off")
        return cls(
            database_url=database_url,
            smtp_url=smtp_url,
            maildir=env.get("HANDOFF_MAILDIR") or DEFAULT_MAILDIR,
            mail_from=mail_from,
            jwt_secret=secret,
            public_url=_public_url(env.get("HANDOFF_PUBLIC_URL") or DEFAULT_PUBLIC_URL),
            push=push,
            retry_base_seconds=base,
            retry_cap_seconds=cap,
            retry_attempts=_number(env, "HANDOFF_RETRY_ATTEMPTS", int, 8, 1, 100),
            worker_poll_seconds=_number(env, "HANDOFF_WORKER_POLL_SECONDS", float, 1.0, 0.01, 3600),
            worker_lease_seconds=_number(
                env, "HANDOFF_WORKER_LEASE_SECONDS", float, 300.0, 0.5, 86400
            ),
            worker_batch=_number(env, "HANDOFF_WORKER_BATCH", int, 100, 1, 10_000),
            body_limit_bytes=_number(
                env, "HANDOFF_BODY_LIMIT_BYTES", int, 512 * 1024, 1024, 64 << 20
            ),
            heartbeat_seconds=_number(env, "HANDOFF_HEARTBEAT_SECONDS", float, 15.0, 0.05, 3600),
            body_timeout_seconds=_number(
                env, "HANDOFF_BODY_TIMEOUT_SECONDS", float, 30.0, 0.1, 3600
            ),
            dispatch_concurrency=_number(env, "HANDOFF_DISPATCH_CONCURRENCY", int, 8, 0, 256),
            worker_lanes=_number(env, "HANDOFF_WORKER_LANES", int, 1, 1, 32),
            webhook_allow_private=_flag(env, "HANDOFF_WEBHOOK_ALLOW_PRIVATE"),
            webhook_timeout_seconds=_number(
                env, "HANDOFF_WEBHOOK_TIMEOUT_SECONDS", float, 10.0, 0.05, 300
            ),
            webhook_per_endpoint=_number(env, "HANDOFF_WEBHOOK_PER_ENDPOINT", int, 4, 1, 64),
            link_secret=link_secret,
            claim_link_ttl_seconds=_number(
                env, "HANDOFF_CLAIM_LINK_TTL_SECONDS", float, 86400.0, 60, 30 * 86400
            ),
            cors_origins=_origins(env.get("HANDOFF_CORS_ORIGINS") or ""),
            metrics=metrics == "on",
        )
