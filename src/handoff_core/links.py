"""Signed links a person opens from an email or a terminal: claim links and one-time sign-in.

A claim link carries a token naming one handoff, one recipient (account and member) and an
expiry, signed with HMAC-SHA256. It holds nothing else: the page it opens reads everything it
shows from the store, so a link cannot carry stale or forged words. Standard library only.

A sign-in link is a random code: only its SHA-256 is stored (`LoginLink`), and redeeming it is a
conditional write, so it works once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from attrs import frozen

from handoff_core.errors import ValidationError
from handoff_core.model import check_id

if TYPE_CHECKING:
    from handoff_core.ports import Clock

CLAIM_PURPOSE = b"handoff.claim-link.v1"
DEFAULT_CLAIM_TTL = timedelta(hours=24)
TOKEN_MAX = 2048  # a longer token is refused before any decoding


class LinkRefused(Exception):
    """A claim token that cannot be honoured; `reason` is `malformed`, `tampered` or `expired`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def derive_key(secret: str | bytes, purpose: bytes) -> bytes:
    """A key for one purpose from a shared secret, so no two uses ever share a key."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(raw, b"handoff key derivation:" + purpose, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@frozen
class ClaimTicket:
    """What a valid claim token says: this recipient may claim this handoff until `expires_at`."""

    account_id: str
    member_id: str
    handoff_id: str
    expires_at: datetime


class ClaimLinks:
    """Issues and reads claim links: `{public_url}/claim/{token}`.

    `secret` is the service's secret (`HANDOFF_LINK_SECRET`, else `HANDOFF_JWT_SECRET`); the
    signing key is derived from it for this purpose alone. `ttl` is how long a link stays good.
    """

    def __init__(
        self,
        secret: str | bytes,
        public_url: str,
        clock: Clock,
        ttl: timedelta = DEFAULT_CLAIM_TTL,
    ) -> None:
        self._key = derive_key(secret, CLAIM_PURPOSE)
        self.public_url = public_url.rstrip("/")
        self._clock = clock
        self.ttl = ttl

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, CLAIM_PURPOSE + b"." + payload, hashlib.sha256).digest()

    def token(self, account_id: str, member_id: str, handoff_id: str) -> str:
        """A token for this recipient and handoff, good for `ttl` from now (URL-safe ASCII)."""
        expires = int((self._clock.now() + self.ttl).timestamp())
        payload = json.dumps(
            [account_id, member_id, handoff_id, expires], separators=(",", ":")
        ).encode("utf-8")
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def url(self, account_id: str, member_id: str, handoff_id: str) -> str:
        """The link an email carries for this recipient."""
        token = self.token(account_id, member_id, handoff_id)
        return f"{self.public_url}/claim/{quote(token, safe='')}"

    def read(self, token: str) -> ClaimTicket:
        """The ticket a token carries. Raises LinkRefused: `malformed` (not one of ours at all),
        `tampered` (the signature does not match) or `expired`."""
        if len(token) > TOKEN_MAX or token.count(".") != 1 or not token.isascii():
            raise LinkRefused("malformed", "this is not a claim link handoff made")
        body, signature = token.split(".")
        try:
            payload, mac = _unb64(body), _unb64(signature)
        except ValueError:
            raise LinkRefused("malformed", "this is not a claim link handoff made") from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise LinkRefused("tampered", "this link was changed after it was sent")
        try:
            account_id, member_id, handoff_id, expires = json.loads(payload)
            expires_at = datetime.fromtimestamp(int(expires), tz=UTC)
        except (ValueError, TypeError, OverflowError, OSError):
            raise LinkRefused("malformed", "this is not a claim link handoff made") from None
        try:  # ids as handoff makes them: what no member or handoff could have is not ours
            for name, value in (("account", account_id), ("member", member_id), ("id", handoff_id)):
                check_id(name, value)
        except ValidationError:
            raise LinkRefused("malformed", "this is not a claim link handoff made") from None
        if self._clock.now() >= expires_at:
            raise LinkRefused("expired", "this link has expired")
        return ClaimTicket(account_id, member_id, handoff_id, expires_at)


@frozen
class LoginLink:
    """A one-time sign-in link as stored: the code's SHA-256, never the code."""

    code_hash: str
    account_id: str
    member_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


def new_login_code() -> str:
    """A fresh random code for a sign-in link (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def hash_login_code(code: str) -> str:
    """What the store keeps of a code: a leaked table signs nobody in."""
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()
