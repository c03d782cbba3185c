"""Keep tokens out of the logs: EventSource clients put them in the query string.

Whatever the encoding (`access%5Ftoken=`, `%61ccess_token=`, a token percent-encoded once or
twice), nothing that looks like a token reaches a log line: the stream's query string is never
logged at all, another query string that holds anything token-like is replaced whole, and a
token-like string anywhere else in the line is redacted.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "[redacted]"
STREAM_PATH = "/escalations/stream"
_DECODE_ROUNDS = 4  # a query encoded more often than this is redacted unread
# Three base64url segments separated by dots, the first a JSON object's (`{"` is `eyJ`): the shape
# of every JWT, and narrow enough to leave host names and dotted versions alone.
_TOKEN = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_LINK = re.compile(r"(/(?:claim|login)/)[^/?\s\"]+")  # claim-link tokens, sign-in codes
_TOKEN_PARAMETER = re.compile(r"access[_-]?token|bearer|authori[sz]ation|jwt", re.IGNORECASE)


def _decoded(text: str) -> str | None:
    """`text` percent-decoded until it stops changing; None if it never does (then it is hiding
    something and is not logged)."""
    for _ in range(_DECODE_ROUNDS):
        once = unquote_plus(text)
        if once == text:
            return text
        text = once
    return None


def _scrub_target(target: str) -> str:
    """A request target (path and query) as it may be logged."""
    path, sep, query = target.partition("?")
    plain_path = _decoded(path)
    if plain_path is None or _TOKEN.search(plain_path):
        path = REDACTED
    if not sep:
        return path
    if plain_path is not None and plain_path.rstrip("/").endswith(STREAM_PATH):
        return f"{path}?{REDACTED}"
    plain_query = _decoded(query)
    if plain_query is None or _TOKEN.search(plain_query) or _TOKEN_PARAMETER.search(plain_query):
        return f"{path}?{REDACTED}"
    return target


def redact(text: str) -> str:
    """`text` without anything token-like in it; request targets lose a query that carries one."""
    if text.startswith("/"):
        text = _scrub_target(text)
    elif "?" in text:
        text = re.sub(r"/\S*", lambda m: _scrub_target(m.group(0)), text)
    return _LINK.sub(rf"\1{REDACTED}", _TOKEN.sub(REDACTED, text))


class RedactAccessTokens(logging.Filter):
    """Rewrites the record's message and arguments so no handler ever sees a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; always keep it (True)."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def redact_access_log(*logger_names: str) -> None:
    """Attach the filter once to each logger (uvicorn's access and error logs by default);
    uvicorn's logging setup keeps a logger's filters."""
    for name in logger_names or (ACCESS_LOGGER, "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactAccessTokens) for f in logger.filters):
            logger.addFilter(RedactAccessTokens())
