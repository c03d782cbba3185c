"""Keep stream tokens out of the access log: EventSource clients put them in the query string."""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
_TOKEN = re.compile(r"(access_token=)[^&\s\"]*", re.IGNORECASE)
_LINK = re.compile(r"(/(?:claim|login)/)[^/?\s\"]+")  # claim-link tokens, sign-in codes


def redact(text: str) -> str:
    return _LINK.sub(r"\1[redacted]", _TOKEN.sub(r"\1[redacted]", text))


class RedactAccessTokens(logging.Filter):
    """Rewrites the record's message and arguments so no handler ever sees the token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def redact_access_log(logger_name: str = ACCESS_LOGGER) -> None:
    """Attach the filter once; uvicorn's logging setup keeps a logger's filters."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactAccessTokens) for f in logger.filters):
        logger.addFilter(RedactAccessTokens())
