"""Where and how to reach the SMTP server, parsed from one URL (`HANDOFF_SMTP_URL`).

`smtp://user:pass@host:port?starttls=true&timeout=10&pool=4`, or `smtps://` for implicit TLS.
Parsing is strict: a misspelt option or a bad value stops the start with a message naming it,
rather than silently sending in the clear or with a default nobody asked for.
"""

from __future__ import annotations

from email.utils import parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from attrs import field, frozen

DEFAULT_FROM = "handoff@localhost"
DEFAULT_TIMEOUT = 10.0
DEFAULT_POOL = 4
MAX_POOL = 64
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_OPTIONS = ("starttls", "timeout", "pool", "verify", "helo")


def check_from(value: str) -> str:
    """A From like `handoff@example.com` or `Handoff <handoff@example.com>`; one line only."""
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError("mail from address must be on one line")
    _, addr = parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not (local and at and domain) or any(ch.isspace() for ch in addr):
        raise ValueError(f"mail from address {value!r} is not an address like handoff@example.com")
    return value.strip()


def _flag(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"SMTP URL option {name}={raw!r} must be true or false")


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"SMTP URL option {name}={raw!r} must be a number of seconds") from None
    if not 0 < value <= 3600:
        raise ValueError(f"SMTP URL option {name}={raw!r} must be between 0 and 3600 seconds")
    return value


def _pool(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"SMTP URL option pool={raw!r} must be a whole number") from None
    if not 1 <= value <= MAX_POOL:
        raise ValueError(f"SMTP URL option pool={raw!r} must be between 1 and {MAX_POOL}")
    return value


@frozen
class SmtpSettings:
    """Everything the SMTP sender needs; the password never appears in a repr."""

    host: str
    port: int
    mail_from: str = field(default=DEFAULT_FROM, converter=check_from)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    implicit_tls: bool = False
    starttls: bool = False
    verify_certs: bool = True
    timeout: float = DEFAULT_TIMEOUT
    pool_size: int = DEFAULT_POOL
    helo_name: str | None = None

    @classmethod
    def from_url(cls, url: str, mail_from: str = DEFAULT_FROM) -> SmtpSettings:
        """Parse `HANDOFF_SMTP_URL`; a ValueError names the part that is wrong (never the
        password)."""
        if not isinstance(url, str) or not url.strip():
            raise ValueError("SMTP URL is empty; expected smtp://user:pass@host:port")
        try:
            parts = urlsplit(url.strip())
            port_given = parts.port
        except ValueError as exc:
            raise ValueError(f"SMTP URL has a bad port or address: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise ValueError(
                f"SMTP URL scheme {parts.scheme!r} is not supported; use smtp:// or smtps://"
            )
        host = parts.hostname
        if not host:
            raise ValueError("SMTP URL has no host; expected smtp://host:port")
        if parts.path not in ("", "/"):
            raise ValueError(f"SMTP URL must not have a path (got {parts.path!r})")
        if parts.fragment:
            raise ValueError("SMTP URL must not have a #fragment")
        options = _options(parts.query)
        implicit_tls = scheme == "smtps"
        starttls = _flag("starttls", options["starttls"]) if "starttls" in options else False
        if implicit_tls and starttls:
            raise ValueError("SMTP URL: smtps:// is already TLS; drop starttls=true")
        default_port = 465 if implicit_tls else 587 if starttls else 25
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if password is not None and username is None:
            raise ValueError("SMTP URL has a password but no user name")
        helo = options.get("helo")
        if helo is not None and (not helo or any(ch.isspace() for ch in helo)):
            raise ValueError("SMTP URL option helo must be a host name without spaces")
        return cls(
            host=host,
            port=port_given or default_port,
            mail_from=mail_from,
            username=username,
            password=password,
            implicit_tls=implicit_tls,
            starttls=starttls,
            verify_certs=_flag("verify", options["verify"]) if "verify" in options else True,
            timeout=_positive_float("timeout", options.get("timeout", str(DEFAULT_TIMEOUT))),
            pool_size=_pool(options.get("pool", str(DEFAULT_POOL))),
            helo_name=helo,
        )


def _options(query: str) -> dict[str, str]:
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"SMTP URL query {query!r} is not name=value pairs") from None
    unknown = sorted(set(parsed) - set(_OPTIONS))
    if unknown:
        raise ValueError(
            f"SMTP URL option {unknown[0]!r} is not known; known options: {', '.join(_OPTIONS)}"
        )
    repeated = sorted(name for name, values in parsed.items() if len(values) > 1)
    if repeated:
        raise ValueError(f"SMTP URL option {repeated[0]!r} is given more than once")
    return {name: values[0] for name, values in parsed.items()}
