"""No server-side request forgery through a webhook URL: its host is resolved, and if any of its
addresses is loopback, private, link-local or otherwise not public, it is refused."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from handoff_core.errors import ValidationError
from handoff_core.ports import WebhookTargets

RESOLVE_TIMEOUT_SECONDS = 5.0


class PrivateTargetRefused(ValidationError):
    """The URL's host is, or resolves to, an address that is not public."""

    def __init__(self, detail: str) -> None:
        super().__init__("url", detail)


def _not_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


class TargetGuard(WebhookTargets):
    """The WebhookTargets port: `check(url)` raises PrivateTargetRefused (a ValidationError
    naming `url`) for a host that cannot be resolved or has any non-public address, unless
    `allow_private` (HANDOFF_WEBHOOK_ALLOW_PRIVATE=1, for tests and closed networks)."""

    def __init__(self, allow_private: bool = False) -> None:
        self.allow_private = allow_private

    async def addresses(self, host: str) -> list[str]:
        """Every address `host` resolves to (an IP literal is itself)."""
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError) as exc:  # UnicodeError: a bad IDNA label
            raise PrivateTargetRefused(f"host {host!r} cannot be resolved ({exc})") from None
        return sorted({str(info[4][0]) for info in infos})

    async def check(self, url: str) -> None:
        """Raise PrivateTargetRefused unless every address of the URL's host is public (or
        private targets are allowed)."""
        if self.allow_private:
            return
        host = urlsplit(url).hostname or ""
        if not host:
            raise PrivateTargetRefused("must name a host")
        found = await self.addresses(host)
        private = [a for a in found if _not_public(a)]
        if private or not found:
            raise PrivateTargetRefused(
                f"host {host!r} resolves to a loopback, private or link-local address "
                f"({', '.join(private) or 'none'}); webhooks go to public addresses only"
            )
