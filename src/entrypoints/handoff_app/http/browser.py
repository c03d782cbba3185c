"""What a browser session needs: the sign-in cookie, CSRF tokens, the Origin check, safe headers.

The cookie holds an ordinary API token (the same JWT `handoff token` mints), HttpOnly and
SameSite=Strict, so page scripts never see it and other sites never send it. A state-changing
request carried by the cookie must also name the CSRF token the page was rendered with (derived
from the cookie, so it needs no storage) and come from this service's own origin.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from handoff_app.http.errors import ApiRefusal
from handoff_app.settings import Settings
from handoff_core.links import derive_key

SESSION_COOKIE = "handoff_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # A claim link's token never leaves in a Referer to another site; same-origin (not
    # no-referrer, under which Chromium sends `Origin: null` on the page's own form posts).
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _secret(settings: Settings) -> str:
    return settings.jwt_secret or ""


def csrf_token(settings: Settings, bound_to: str, purpose: str = "session") -> str:
    """The CSRF token of a session cookie (or of a claim link): an HMAC of it, hex."""
    key = derive_key(_secret(settings), b"handoff.csrf." + purpose.encode("ascii"))
    return hmac.new(key, bound_to.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def csrf_matches(
    settings: Settings, bound_to: str, given: str | None, purpose: str = "session"
) -> bool:
    if not given or not given.isascii():  # compare_digest refuses non-ASCII str: not ours
        return False
    return hmac.compare_digest(csrf_token(settings, bound_to, purpose), given)


def own_origins(request: Request, settings: Settings) -> set[str]:
    """The origins this service answers as: the one the request came to, and the public URL's."""
    public = urlsplit(settings.public_url)
    return {
        f"{request.url.scheme}://{request.url.netloc}",
        f"{public.scheme}://{public.netloc}",
    }


def same_origin(request: Request, settings: Settings) -> bool:
    """Whether a request came from one of this service's own pages (or from no page at all).

    Browsers send `Origin` on every POST; when it is absent or `null` (a privacy setting),
    `Sec-Fetch-Site` decides."""
    origin = request.headers.get("origin")
    site = request.headers.get("sec-fetch-site")
    if origin is not None and origin != "null":
        return origin in own_origins(request, settings) and site in (None, "same-origin", "none")
    if origin == "null":
        return site == "same-origin"
    return site in (None, "same-origin", "none")


def cross_site_refusal() -> ApiRefusal:
    return ApiRefusal(
        403, "cross_site", "this request did not come from one of this service's own pages"
    )


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def check_cookie_request(request: Request, settings: Settings, cookie: str) -> None:
    """A request authenticated by the cookie alone: a state change must carry the page's CSRF
    token and come from this service's origin, and no request may come from another origin's
    script (a same-site page on another port could otherwise hold the stream open, and with it
    the member's presence); raises an ApiRefusal (403) otherwise."""
    origin = request.headers.get("origin")
    if origin not in (None, "null") and origin not in own_origins(request, settings):
        raise cross_site_refusal()
    if request.method in SAFE_METHODS:
        return
    if not same_origin(request, settings):
        raise cross_site_refusal()
    if not csrf_matches(settings, cookie, request.headers.get(CSRF_HEADER)):
        raise ApiRefusal(403, "csrf_failed", f"the {CSRF_HEADER} header is missing or wrong")


def base_path(request: Request) -> str:
    """Where the service is mounted (empty at the root), for links, cookies and assets."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path=base_path(request) or "/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=base_path(request) or "/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
