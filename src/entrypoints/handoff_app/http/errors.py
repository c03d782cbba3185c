"""Every refusal the API gives, in one shape, mapped from the core's errors in one place."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from handoff_core.errors import (
    AlreadyClaimed,
    Conflict,
    Forbidden,
    HandoffError,
    NotAMember,
    NotFound,
    StorageUnavailable,
    ValidationError,
)

log = logging.getLogger("handoff.http")


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: str
    detail: str
    field: str | None = None
    claimed_by: str | None = None


class ApiRefusal(Exception):
    """A refusal made by the HTTP layer itself (authentication, limits)."""

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def unauthorized(detail: str) -> ApiRefusal:
    return ApiRefusal(401, "unauthorized", detail, {"WWW-Authenticate": "Bearer"})


def not_a_member() -> ApiRefusal:
    """The token is good but names nobody who may act: the same 401 whichever reason it was."""
    return unauthorized("the token's member is unknown, inactive or removed")


BODY_UNPARSABLE = "There was an error parsing the body"

# Most specific first: AlreadyClaimed and friends are Conflicts.
STATUS_OF: tuple[tuple[type[HandoffError], int], ...] = (
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
    (ValidationError, 422),
    (StorageUnavailable, 503),
)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "unavailable",
}


def error_response(
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, str] = {"error": code, "detail": detail, **(extra or {})}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def for_refusal(refusal: ApiRefusal) -> JSONResponse:
    return error_response(refusal.status, refusal.code, refusal.detail, headers=refusal.headers)


UNAVAILABLE = "the service cannot reach its store right now; nothing was changed; try again later"


def for_domain_error(exc: HandoffError) -> JSONResponse:
    if isinstance(exc, NotAMember):  # the token's member, as the use case found it
        return for_refusal(not_a_member())
    status = next((code for cls, code in STATUS_OF if isinstance(exc, cls)), 400)
    extra: dict[str, str] = {}
    if isinstance(exc, AlreadyClaimed):
        extra["claimed_by"] = exc.by
    if isinstance(exc, ValidationError):
        extra["field"] = exc.field
    if isinstance(exc, StorageUnavailable):  # its words name the database: the log has them
        return error_response(status, exc.code, UNAVAILABLE, extra=extra)
    return error_response(status, exc.code, exc.detail, extra=extra)


def _field_of(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc)


def for_validation(exc: RequestValidationError) -> JSONResponse:
    """The first problem, named by where it is (`body.intent`, `query.status`)."""
    errors = list(exc.errors())
    if not errors:
        return error_response(422, "validation_error", "the request is not valid")
    first = errors[0]
    field = _field_of(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "malformed JSON")
        return error_response(422, "invalid_json", f"the body is not valid JSON: {reason}")
    message = str(first.get("msg", "is not valid"))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    detail = f"{field}: {message}{more}"
    return error_response(422, "validation_error", detail, extra={"field": field})


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> str:
    """Every method some route answers at this path, asked of the routes themselves: Starlette
    names only the methods of the first route that matched the path, and GET and PUT of one
    path are two routes."""
    app = request.scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", [])
    allowed = [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


Vetting = Callable[[Request], Awaitable[ApiRefusal | None]]


def install(app: FastAPI, *, vet_invalid: Vetting | None = None) -> None:
    """Register the handlers: domain errors, the API's own refusals, FastAPI's and Starlette's.

    `vet_invalid` is asked before a 422 goes out and may answer with a refusal instead: the HTTP
    layer checks the caller's member only inside the use case, which an invalid request may
    never reach, and a token of someone not current must still get its 401 first.
    """

    async def vetted(request: Request, invalid: JSONResponse) -> JSONResponse:
        refused = await vet_invalid(request) if vet_invalid is not None else None
        return for_refusal(refused) if refused is not None else invalid

    async def domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HandoffError)
        if isinstance(exc, StorageUnavailable):
            log.warning("%s", exc.detail, extra={"path": request.url.path})
        if isinstance(exc, ValidationError):
            return await vetted(request, for_domain_error(exc))
        return for_domain_error(exc)

    async def refusal(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiRefusal)
        return for_refusal(exc)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return await vetted(request, for_validation(exc))

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400 and detail == BODY_UNPARSABLE:
            # FastAPI's word for JSON it could not decode at all (too deeply nested, say).
            unparsable = "the body could not be parsed as JSON"
            return await vetted(request, error_response(422, "invalid_json", unparsable))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return error_response(exc.status_code, code, detail, headers=headers)

    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal_error", "something went wrong on our side")

    app.add_exception_handler(HandoffError, domain)
    app.add_exception_handler(ApiRefusal, refusal)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, bug)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each error status it can answer, with the error model."""
    words = {
        401: "No, bad or expired token, or the member is unknown, inactive or removed",
        403: "The member may not do this",
        404: "Absent, or in another account",
        409: "The state of things does not allow this now",
        413: "The body is too large",
        422: "A field is not valid; `field` names it",
        503: "The store is unreachable",
    }
    return {status: {"model": ErrorOut, "description": words[status]} for status in statuses}
