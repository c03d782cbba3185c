"""Who is calling: an HS256 JWT naming a current member of an account.

The token says `sub` (member id) and `account_id`; the member must still exist, be active and not
removed in that account, or the caller is not let in at all (401, never a hint which it was).

Routes that run a use case check only the token here: the use case reads the member in its own
unit of work and refuses one that is not current (`NotAMember`, answered 401), so the member is
read once per request and the check and the action see the same row. The stream runs no use case
and reads the member here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeGuard

import jwt
from attrs import frozen
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from handoff_app.container import Services
from handoff_app.http.browser import check_cookie_request, session_token
from handoff_app.http.errors import ApiRefusal, not_a_member, unauthorized
from handoff_app.http.lifecycle import get_services, get_settings
from handoff_app.settings import Settings, SettingsError
from handoff_core.errors import Forbidden, HandoffError, ValidationError
from handoff_core.model import Member, check_id

ALGORITHM = "HS256"
# Hosts' clocks differ: a token minted on a host a little ahead (iat, nbf in the future) or read
# a little late (exp just past) is still good within this many seconds (SPEC §13).
LEEWAY_SECONDS = 30
TIME_CLAIMS = ("exp", "iat", "nbf")
TIME_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z: a later "time" never expires, in effect
_NOT_A_TIME = "the token's {name} must be a number (seconds since the epoch, before the year 10000)"

bearer = HTTPBearer(
    scheme_name="BearerToken", auto_error=False, description="A JWT minted with HANDOFF_JWT_SECRET"
)
query_token = APIKeyQuery(
    name="access_token",
    scheme_name="StreamAccessToken",
    auto_error=False,
    description="The same JWT, for EventSource clients that cannot send headers (stream only)",
)


def _secret(settings: Settings) -> str:
    if not settings.jwt_secret:
        raise SettingsError("HANDOFF_JWT_SECRET is not set; the HTTP API needs it to check tokens")
    return settings.jwt_secret


def mint_token(
    settings: Settings,
    account_id: str,
    member_id: str,
    ttl: float = 3600.0,
    *,
    now: datetime | None = None,
) -> str:
    """A token for `member_id` of `account_id`, valid for `ttl` seconds (for the CLI and tests)."""
    issued = now or datetime.now(UTC)
    claims = {
        "sub": member_id,
        "account_id": account_id,
        "iat": issued,
        "exp": issued + timedelta(seconds=ttl),
    }
    return jwt.encode(claims, _secret(settings), algorithm=ALGORITHM)


def read_token(settings: Settings, token: str) -> tuple[str, str]:
    """(account_id, member_id) from a valid, unexpired token.

    Raises `ApiRefusal` (401) for a token that is not signed with the secret, has expired, lacks
    `exp`, `sub` or `account_id`, has a time claim that is not a number (or is past the year
    9999), or whose `sub` or `account_id` is not an id (`check_id`: 1 to 128 characters, no
    whitespace, control characters, `/` or lone surrogates); `SettingsError` when no JWT secret
    is set."""
    try:
        claims = jwt.decode(
            token,
            _secret(settings),
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub", "account_id"]},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        # The signature was checked before the time claims: what the token says can be trusted
        # enough to say which is wrong. PyJWT reads `"exp": true` as 1, long past.
        said = jwt.decode(token, options={"verify_signature": False})
        if not _is_time(said.get("exp")):
            raise unauthorized(_NOT_A_TIME.format(name="exp")) from None
        raise unauthorized("the token has expired") from None
    except jwt.PyJWTError:
        raise unauthorized("the token is not valid") from None
    for name in TIME_CLAIMS:
        if name in claims and not _is_time(claims[name]):
            raise unauthorized(_NOT_A_TIME.format(name=name))
    account_id, member_id = claims.get("account_id"), claims.get("sub")
    if not (_is_id(account_id) and _is_id(member_id)):
        raise unauthorized("the token's account_id and sub must be account and member ids")
    return account_id, member_id


def _is_time(value: object) -> bool:
    """A JSON number, as RFC 7519 says a NumericDate is (PyJWT alone would take "1e10" and
    `true` too), and one a calendar can hold: |value| ≤ TIME_MAX."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and -TIME_MAX <= value <= TIME_MAX
    )


def _is_id(value: object) -> TypeGuard[str]:
    """Whether a claim passes `check_id`, the id rule of the rest of the API: a lone surrogate
    (a JSON escape such as "\\ud800") is refused here, as no store could even look it up."""
    try:
        check_id("id", value)
    except ValidationError:
        return False
    return True


@frozen
class Caller:
    """The account and member a valid token names, not yet checked against the store: the use
    case the route runs does that, in its own unit of work."""

    account_id: str
    member_id: str


@frozen
class StreamCaller(Caller):
    """A caller whose member was read and found current (the stream runs no use case)."""

    member: Member

    def require_senior(self) -> None:
        if not self.member.is_senior:
            raise Forbidden(f"member {self.member_id} is a viewer; only seniors may do this")


def _token_caller(settings: Settings, token: str | None) -> Caller:
    if not token:
        raise unauthorized("a bearer token is required")
    account_id, member_id = read_token(settings, token)
    return Caller(account_id, member_id)


def _header_or_cookie(
    request: Request, settings: Settings, credentials: HTTPAuthorizationCredentials | None
) -> str | None:
    """The bearer token, or else the inbox page's session cookie (a state change carried by the
    cookie must pass the CSRF and Origin checks of `browser.check_cookie_request`)."""
    if credentials is not None:
        return credentials.credentials
    cookie = session_token(request)
    if cookie is not None:
        check_cookie_request(request, settings, cookie)
    return cookie


async def current_caller(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Caller:
    return _token_caller(settings, _header_or_cookie(request, settings, credentials))


async def stream_caller(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    services: Annotated[Services, Depends(get_services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    access_token: Annotated[str | None, Security(query_token)],
) -> StreamCaller:
    """The stream alone also takes `?access_token=` (the access log redacts it)."""
    token = access_token if credentials is None and access_token else None
    caller = _token_caller(settings, token or _header_or_cookie(request, settings, credentials))
    member = await services.members.get(caller.account_id, caller.member_id)
    if member is None or not member.is_current:
        raise not_a_member()
    return StreamCaller(caller.account_id, caller.member_id, member)


# The routes whose use case refuses a caller by role alone, by route name: a request to one of
# them that is also invalid gets the 403 the use case would give, not the 422 (SPEC §13).
MANAGERS_ONLY = frozenset({"put_member", "delete_member", "put_policy"})
SENIORS_ONLY = frozenset(
    {
        "start_session",
        "patch_session",
        "hand_off",
        "resume",
        "resolve",
        "claim",
        "withdraw",
        "analytics",
        "stream",
    }
)


def _role_refusal(request: Request, member: Member) -> ApiRefusal | None:
    route = request.scope.get("route")
    name = getattr(route, "name", None)
    if name in MANAGERS_ONLY and not member.is_manager:
        detail = f"only an admin or owner may do this; {member.id} is {member.role}"
        return ApiRefusal(403, "forbidden", detail)
    if name in SENIORS_ONLY and not member.is_senior:
        return ApiRefusal(403, "forbidden", f"member {member.id} is a viewer and can only read")
    return None


async def stranger_refusal(request: Request) -> ApiRefusal | None:
    """For a request refused as invalid (422) before any use case read its member: the 401 it
    would have had, had its token named someone not current, or the 403 its member's role would
    have had. Only such refusals pay this read."""
    credentials = await bearer(request)
    if credentials is not None:
        token: str | None = credentials.credentials
    else:  # the stream alone also takes the token in its query
        is_stream = getattr(request.scope.get("route"), "name", None) == "stream"
        token = request.query_params.get("access_token") if is_stream else None
    if not token:
        return None
    try:
        account_id, member_id = read_token(await get_settings(request), token)
        member = await (await get_services(request)).members.get(account_id, member_id)
    except (ApiRefusal, HandoffError):  # a bad token, or no store to ask: the 422 stands
        return None
    if member is None or not member.is_current:
        return not_a_member()
    return _role_refusal(request, member)


CallerDep = Annotated[Caller, Depends(current_caller)]
StreamCallerDep = Annotated[StreamCaller, Depends(stream_caller)]
ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
