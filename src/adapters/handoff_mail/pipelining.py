"""SMTP PIPELINING (RFC 2920) for one message transaction on an open aiosmtplib connection.

aiosmtplib speaks one command and one reply at a time: its protocol parses a single reply per read
and drops what arrives while no command is waiting, so the replies to a group of commands written
at once cannot be read through it. A `Pipeline` therefore stands in for aiosmtplib's protocol on
the connection's transport for the span of one transaction: it writes through aiosmtplib's
protocol, keeps every reply the server sends in order, and hands the transport back with
`detach()`. Everything else on the connection (EHLO, STARTTLS, AUTH, NOOP, RSET, QUIT) stays with
aiosmtplib.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Iterable

import aiosmtplib
from aiosmtplib import (
    SMTPException,
    SMTPReadTimeoutError,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
)
from aiosmtplib.email import quote_address

MAX_LINE = 8192  # octets of one reply line, as aiosmtplib allows
MAX_REPLY = 4 * MAX_LINE  # octets of one reply, continuation lines included
_MALFORMED = -1  # aiosmtplib's code for a reply it cannot read (SMTPStatus.invalid_response)
_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# A mailbox aiosmtplib's quote_address would give back as it is: one @, and none of the spaces,
# controls, brackets, quotes or the colon that email.utils.parseaddr reads as syntax.
_PLAIN = re.compile(r'[^\s\x00-\x1f\x7f<>"():;,\[\]\\@]+@[^\s\x00-\x1f\x7f<>"():;,\[\]\\@]+')


def data_block(message: bytes) -> bytes:
    """`message` as it is written after DATA's 354 reply, terminator included.

    Every line break becomes CRLF, the last line gets one if it lacks it, a line that starts with
    a dot gets a second one (RFC 5321 §4.5.2), and the lone `.` line that ends the data follows.
    """
    crlf = message.count(b"\r\n")
    if message.count(b"\r") != crlf or message.count(b"\n") != crlf:  # cheaper than a sub
        message = _LINE_END.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b".") or b"\n." in message:
        message = _LEADING_DOT.sub(b"..", message)
    return message + b".\r\n"


def envelope_command(
    verb: bytes, address: str, options: Iterable[str] = (), encoding: str = "ascii"
) -> bytes:
    """One `MAIL FROM:` or `RCPT TO:` command line, CRLF included, as aiosmtplib would write it:
    `verb` + `<address>` (encoded with `encoding`) + ` OPTION` for each of `options`.

    Raises ValueError when the address cannot sit on a command line (spaces, brackets, quotes,
    control characters) or cannot be encoded.
    """
    # quote_address parses the address (about 10 µs); a plain one it would give back unchanged.
    quoted = f"<{address}>" if _PLAIN.fullmatch(address) else quote_address(address)
    line = b" ".join([verb + quoted.encode(encoding), *(o.encode("ascii") for o in options)])
    if _CONTROL.search(line):
        raise ValueError("Command arg contains a prohibited control character")
    return line + b"\r\n"


class Pipeline(asyncio.Protocol):
    """The reader of one pipelined transaction on `conn`, attached to its transport on creation.

    `write` sends bytes as they are; `reply` returns the server's replies one by one in the order
    they came. The connection ending (EOF, reset, `conn.close()`) is passed on to aiosmtplib's
    protocol as well, so `conn` knows it is closed. On a connection that is already closed,
    `write` and `reply` raise SMTPServerDisconnected.
    """

    def __init__(self, conn: aiosmtplib.SMTP) -> None:
        self._inner = conn.protocol
        self._transport = self._inner.transport if self._inner is not None else None
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._replies: deque[SMTPResponse] = deque()
        self._failure: SMTPException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._attached = self._transport is not None and not self._transport.is_closing()
        if self._transport is not None and self._attached:
            self._transport.set_protocol(self)
        else:
            self._failure = SMTPServerDisconnected("Connection lost")

    def write(self, data: bytes) -> None:
        """Send `data` now. Raises SMTPServerDisconnected if the connection is closed."""
        if self._inner is None or not self._attached:
            raise SMTPServerDisconnected("Connection lost")
        self._inner.write(data)

    async def reply(self, timeout: float | None) -> SMTPResponse:
        """The next reply, waiting up to `timeout` seconds for it.

        Raises SMTPReadTimeoutError when none comes in time, SMTPServerDisconnected when the
        connection ended first, and SMTPResponseException (code -1) for a reply that is not SMTP.
        """
        if self._replies:  # replies to a group often come in one read
            return self._replies.popleft()
        try:
            async with asyncio.timeout(timeout):
                while not self._replies:
                    if self._failure is not None:
                        raise self._failure
                    self._waiter = self._loop.create_future()
                    await self._waiter
        except TimeoutError as exc:
            raise SMTPReadTimeoutError("Timed out waiting for server response") from exc
        finally:
            self._waiter = None
        return self._replies.popleft()

    def detach(self) -> bool:
        """Give the transport back to aiosmtplib; True if nothing the server sent is left unread
        (else the session's state is unknown and the connection should end)."""
        transport, inner = self._transport, self._inner
        if self._attached and transport and inner and not transport.is_closing():
            transport.set_protocol(inner)
        self._attached = False
        return not self._replies and not self._buffer and self._failure is None

    # --- asyncio.Protocol --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._failure is not None:
            return
        self._buffer += data
        try:
            self._parse()
        except SMTPResponseException as exc:
            self._fail(exc)
        else:
            self._wake()

    def eof_received(self) -> bool:
        self._fail(SMTPServerDisconnected("Unexpected EOF received"))
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        lost = SMTPServerDisconnected("Connection lost")
        lost.__cause__ = exc
        self._fail(lost)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # --- internals ---------------------------------------------------------------------------

    def _parse(self) -> None:
        """Move every complete reply from the buffer to the queue; a partial one stays."""
        buffer = self._buffer
        done = 0  # the end of the last complete reply
        at = 0
        lines: list[bytes] = []
        while (newline := buffer.find(b"\n", at)) >= 0:
            line = bytes(buffer[at : newline + 1])
            at = newline + 1
            if len(line) > MAX_LINE:
                raise SMTPResponseException(_MALFORMED, "Response too long")
            code = line[:3]
            if not code.isdigit():
                text = line[:200].decode("utf-8", "replace").strip()
                raise SMTPResponseException(_MALFORMED, f"Malformed SMTP response line: {text}")
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":  # the last line of a reply
                message = b"\n".join(lines).decode("utf-8", "surrogateescape")
                self._replies.append(SMTPResponse(int(code), message))
                lines = []
                done = at
        del buffer[:done]
        if len(buffer) > MAX_REPLY:
            raise SMTPResponseException(_MALFORMED, "Response too long")

    def _fail(self, exc: SMTPException) -> None:
        if self._failure is None:
            self._failure = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


__all__ = ["MAX_LINE", "MAX_REPLY", "Pipeline", "data_block", "envelope_command"]
