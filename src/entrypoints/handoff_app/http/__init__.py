"""The HTTP API of SPEC §6: `create_app(settings)` for a server, or to mount in a host app."""

from handoff_app.http.app import API_PREFIX, create_app
from handoff_app.http.auth import Caller, mint_token, read_token
from handoff_app.http.lifecycle import handoff_lifespan
from handoff_app.http.logs import RedactAccessTokens, redact_access_log

__all__ = [
    "API_PREFIX",
    "Caller",
    "RedactAccessTokens",
    "create_app",
    "handoff_lifespan",
    "mint_token",
    "read_token",
    "redact_access_log",
]
