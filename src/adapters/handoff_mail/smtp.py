"""The SMTP sender: a small pool of persistent aiosmtplib connections sending a batch in parallel.

Reusing connections is most of the speed of a fan-out (measured for the reference: one reused
connection ≈ 644 msgs/s, four ≈ 1,357 msgs/s, a new connection per message ≈ 761 msgs/s), so a
batch is spread over up to `pool_size` connections that outlive the batch. Outcomes follow SPEC §5:
4xx replies, timeouts, refused or dropped connections are transient; 5xx replies are permanent and
belong to the one notice they answered.

A connection that already carried a message (or waited in the pool) may have been closed by the
relay since: many close after each message, or after a while idle. When such a connection turns
out closed before the relay accepted MAIL FROM, nothing was sent and nothing failed, so the
notice goes at once on a new connection and is not an attempt (SPEC §11). A new connection that
fails the same way is a real failure, so this costs at most one extra connection per message.

When the server offers PIPELINING (RFC 2920), MAIL FROM, RCPT TO and DATA go in one write and
their three replies are read in order. The message follows in one more write, and the next
notice's MAIL FROM, RCPT TO and DATA ride in that same write (RFC 2920 §3.1 lets the content start
a group): one write per message, where one command at a time takes four. The outcomes are the same
as one command at a time: the first refusal among the replies is the notice's, and the replies
after it (a 503 for each command that followed) are read and set aside before RSET; a 354 to DATA
after a refusal, a 421, a timeout or a reply nobody asked for ends the connection, so no message
goes out that the refusal should have stopped. A refused message ends its transaction (RFC 5321
§4.1.1.4), so the notice already written behind it goes on. One whose connection ends before its
MAIL FROM is answered was not tried: it goes again at once on a new connection, as below. A server
that does not offer PIPELINING gets one command at a time, as aiosmtplib sends them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

import aiosmtplib
from aiosmtplib import (
    SMTPException,
    SMTPHeloError,
    SMTPResponse,
    SMTPResponseException,
)
from attrs import define, field, frozen

from handoff_core.notice import Notice, NoticeBody
from handoff_core.ports import WITHDRAWN, MailSender, SendOutcome, Withdrawn
from handoff_mail.address import wire_address
from handoff_mail.message import (
    Template,
    date_header,
    envelope_sender,
    from_header,
    render,
    template,
)
from handoff_mail.pipelining import Pipeline, data_block, envelope_command
from handoff_mail.settings import SmtpSettings

log = logging.getLogger("handoff.mail")

NO_CONNECTION = "no connection to the SMTP server"
OK = 250
WILL_FORWARD = 251  # "user not local; will forward": a recipient accepted all the same
START_INPUT = 354  # DATA: "start mail input"
CLOSING = 421  # "service not available, closing transmission channel"


def describe(exc: BaseException) -> str:
    """A short, secret-free account of a failure for `last_error`."""
    if isinstance(exc, SMTPResponseException):
        return f"{exc.code} {exc.message}".strip()
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}" if str(exc) else "timed out"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def is_permanent(code: int) -> bool:
    return 500 <= code < 600


def _as_error(result: SMTPResponse | Exception) -> Exception:
    """A refusal as the exception aiosmtplib would have raised for it; an exception as it is."""
    return SMTPResponseException(*result) if isinstance(result, SMTPResponse) else result


@define
class _Batch:
    """One `send` call: what is left to send, and what became of the rest."""

    notices: Sequence[Notice]
    pending: deque[int]
    outcomes: list[SendOutcome | None]
    date: str
    templates: dict[NoticeBody, Template] = field(factory=dict)
    connect_error: str | None = None
    withdrawn: Withdrawn | None = None

    def take(self) -> int | None:
        """The next notice to send, asking `withdrawn` first; those it stops are settled here
        (not tried). None when nothing is left."""
        while self.pending:
            index = self.pending.popleft()
            notice = self.notices[index]
            if self.withdrawn is not None and self.withdrawn(notice):
                self.outcomes[index] = SendOutcome(
                    notice.delivery_id, ok=False, withdrawn=True, error=WITHDRAWN
                )
                continue
            return index
        return None


@define
class _Sent:
    """What one turn on a connection did: the notices it settled (batch index, outcome), the
    one to send again at once on a new connection (its connection ended before MAIL FROM was
    answered, so it was not tried), whether the connection is unusable now, and whether the
    server answered anything on it this turn."""

    outcomes: list[tuple[int, SendOutcome]] = field(factory=list)
    again: int | None = None
    broken: bool = False

    @property
    def answered(self) -> bool:
        """Whether a transaction this turn ended with the connection still fit for the next."""
        return len(self.outcomes) > 1 or (bool(self.outcomes) and not self.broken)


@frozen
class _Envelope:
    """One notice as it goes to one server: the recipient as the envelope carries it, the
    message, the MAIL FROM options and the encoding of the addresses in the commands."""

    to: str
    message: bytes
    options: list[str]
    encoding: str


@frozen
class _Chained:
    """A notice written behind the message before it: its index, envelope and command group."""

    index: int
    envelope: _Envelope
    group: bytes


class SmtpSender(MailSender):
    """MailSender over SMTP. Opens nothing until the first send; `close()` ends the pool."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._sender_line = from_header(settings.mail_from)
        self._envelope_from = envelope_sender(settings.mail_from)
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._generation = 0
        self._helo_name = settings.helo_name

    async def send(
        self, notices: Sequence[Notice], withdrawn: Withdrawn | None = None
    ) -> list[SendOutcome]:
        """Send the batch over up to `settings.pool_size` connections; one outcome per notice, in
        order. `withdrawn` is asked as each notice is taken to be written (behind the message
        before it, on a PIPELINING relay): one it stops is not sent.

        A 5xx reply fails its notice for good (`permanent=True`); a 4xx reply, a timeout
        (`settings.timeout` seconds per step) or a refused or dropped connection fails it for now,
        to be retried. When no connection can be had at all, every notice left says why. Never
        raises for a failed send: the outcomes say it.
        """
        if not notices:
            return []
        batch = _Batch(
            notices=notices,
            pending=deque(range(len(notices))),
            outcomes=[None] * len(notices),
            date=date_header(),
            withdrawn=withdrawn,
        )
        workers = min(self.settings.pool_size, len(notices))
        await asyncio.gather(*(self._work(batch) for _ in range(workers)))
        error = batch.connect_error or NO_CONNECTION
        return [
            outcome or SendOutcome(notices[i].delivery_id, ok=False, error=error)
            for i, outcome in enumerate(batch.outcomes)
        ]

    async def close(self) -> None:
        """QUIT every pooled connection; connections busy in a batch are closed when it ends."""
        self._generation += 1
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(conn) for conn in idle))

    # --- one connection's share of a batch ----------------------------------------------------

    async def _work(self, batch: _Batch) -> None:
        """Send notices from the batch until none are left or no connection can be had.

        A connection that breaks is replaced; a fresh one that breaks before the server answered
        anything means the server is down or hanging, so this worker stops rather than spend a
        timeout on every remaining notice. A reused connection the relay had closed is replaced
        and the notice it could not start goes again at once, not counted as an attempt: this
        worker keeps it for its new connection, so no other worker opens one for it as well.
        """
        async with self._slots:
            generation = self._generation
            conn: aiosmtplib.SMTP | None = None
            answered = False  # this connection carried a message, or answered one with a refusal
            reused = False  # ... or came from the pool: the relay may have closed it since
            again: int | None = None  # the notice a closed connection could not start
            try:
                while batch.pending or again is not None:
                    if conn is None:
                        got = await self._connection(batch)
                        if got is None:
                            if again is not None:
                                batch.pending.appendleft(again)
                            return
                        conn, reused = got
                        answered = False
                        if again is None:
                            continue  # others may have emptied the batch while this one connected
                    if again is None:
                        taken = batch.take()
                        if taken is None:
                            continue  # the rest were withdrawn
                        index = taken
                    else:
                        index, again = again, None
                    sent = await self._send_one(conn, batch, index, reused=reused)
                    for settled, outcome in sent.outcomes:
                        batch.outcomes[settled] = outcome
                    if sent.answered:
                        answered = reused = True
                    if sent.again is not None:  # closed by the relay before MAIL FROM
                        again = sent.again
                        conn.close()
                        conn = None
                    elif sent.broken:
                        conn.close()
                        conn = None
                        if not answered:
                            batch.connect_error = sent.outcomes[-1][1].error
                            return
            except BaseException:
                if conn is not None:  # cancelled mid-command: the session state is unknown
                    conn.close()
                    conn = None
                raise
            finally:
                if conn is not None:
                    await self._give_back(conn, generation)

    async def _connection(self, batch: _Batch) -> tuple[aiosmtplib.SMTP, bool] | None:
        """A pooled connection that still answers, else a new one; and whether it was pooled."""
        while self._idle:
            conn = self._idle.pop()
            if await self._alive(conn):
                return conn, True
        try:
            return await self._connect(), False
        except Exception as exc:
            batch.connect_error = f"could not connect to {self._where()}: {describe(exc)}"
            log.warning(
                "smtp connect to %s failed: %s",
                self._where(),
                describe(exc),
                extra={"smtp_server": self._where(), "error": describe(exc)},
            )
            return None

    async def _local_name(self) -> str:
        """The EHLO name, looked up once per sender rather than once per connection, and never
        allowed to hang a send on a slow resolver."""
        if self._helo_name is None:
            try:
                found = await asyncio.wait_for(
                    asyncio.to_thread(socket.getfqdn), timeout=self.settings.timeout
                )
            except TimeoutError:
                found = ""
            self._helo_name = found if found and found.isascii() else "localhost"
        return self._helo_name

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        conn = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            local_hostname=await self._local_name(),
            timeout=s.timeout,
            use_tls=s.implicit_tls,
            start_tls=s.starttls,
            validate_certs=s.verify_certs,
        )
        await conn.connect()
        try:
            if conn.last_ehlo_response is None and conn.last_helo_response is None:
                try:
                    await conn.ehlo()
                except SMTPHeloError:
                    await conn.helo()
        except BaseException:
            conn.close()
            raise
        return conn

    async def _alive(self, conn: aiosmtplib.SMTP) -> bool:
        """A pooled connection may have been dropped by the server while it sat idle."""
        if not conn.is_connected:
            conn.close()
            return False
        try:
            await conn.noop()
            return True
        except Exception:
            conn.close()
            return False

    async def _send_one(
        self, conn: aiosmtplib.SMTP, batch: _Batch, index: int, *, reused: bool
    ) -> _Sent:
        """Send the notice at `index`, and on a server that offers PIPELINING the batch's next
        ones behind it (`_send_chain`): what became of them, and of the connection.

        When `reused` and the relay turns out to have closed the connection before it accepted
        MAIL FROM, the notice was not tried and comes back as `again`.
        """
        notice = batch.notices[index]
        did = notice.delivery_id
        try:
            envelope = self._envelope(conn, batch, notice)
        except ValueError as exc:
            return _Sent([(index, SendOutcome(did, ok=False, permanent=True, error=str(exc)))])
        if conn.supports_extension("pipelining"):
            return await self._send_chain(conn, batch, index, envelope, reused=reused)
        try:
            await conn.mail(
                self._envelope_from, options=envelope.options, encoding=envelope.encoding
            )
        except Exception as exc:
            closed = isinstance(exc, ConnectionError) or (
                isinstance(exc, SMTPResponseException) and exc.code == CLOSING
            )
            if reused and closed:
                self._log_closed(did)
                return _Sent(again=index, broken=True)
            return await self._settle(conn, index, did, exc)
        try:
            await conn.rcpt(envelope.to, encoding=envelope.encoding)
            await conn.data(envelope.message)
        except Exception as exc:
            return await self._settle(conn, index, did, exc)
        return _Sent([(index, SendOutcome(did, ok=True))])

    def _envelope(self, conn: aiosmtplib.SMTP, batch: _Batch, notice: Notice) -> _Envelope:
        """The recipient, message and MAIL FROM options of `notice` for what `conn` offers.

        Raises ValueError when the address or the message cannot be sent to this server.
        """
        to = wire_address(notice.to_address, smtputf8=conn.supports_extension("smtputf8"))
        shared = batch.templates.get(notice.template)
        if shared is None:
            shared = batch.templates[notice.template] = template(notice.template)
        utf8 = not to.isascii()
        message = render(
            notice,
            shared,
            sender_line=self._sender_line,
            date=batch.date,
            to_address=to,
            utf8=utf8,
        )
        options = [f"SIZE={len(message)}"] if conn.supports_extension("size") else []
        if utf8:
            options.append("SMTPUTF8")
            if conn.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
        return _Envelope(to, message, options, "utf-8" if utf8 else "ascii")

    def _group(self, envelope: _Envelope) -> bytes:
        """MAIL FROM, RCPT TO and DATA for `envelope`, as one pipelined group.

        Raises ValueError when an address cannot sit on a command line."""
        return (
            envelope_command(
                b"MAIL FROM:", self._envelope_from, envelope.options, envelope.encoding
            )
            + envelope_command(b"RCPT TO:", envelope.to, (), envelope.encoding)
            + b"DATA\r\n"
        )

    def _next(self, conn: aiosmtplib.SMTP, batch: _Batch, sent: _Sent) -> _Chained | None:
        """The batch's next notice with its command group, ready to follow a message on `conn`;
        None when the batch has none left. A notice that cannot go to this server at all is
        settled in `sent` (refused for good) on the way."""
        while (index := batch.take()) is not None:
            notice = batch.notices[index]
            try:
                envelope = self._envelope(conn, batch, notice)
                group = self._group(envelope)
            except ValueError as exc:
                refused = SendOutcome(notice.delivery_id, ok=False, permanent=True, error=str(exc))
                sent.outcomes.append((index, refused))
                continue
            return _Chained(index, envelope, group)
        return None

    async def _send_chain(
        self, conn: aiosmtplib.SMTP, batch: _Batch, index: int, envelope: _Envelope, *, reused: bool
    ) -> _Sent:
        """`_send_one` on a server that offers PIPELINING: MAIL FROM, RCPT TO and DATA in one
        write, their three replies read in order, then the message, with the next notice's
        group in the same write, and so on while the batch has notices and the connection
        stays clear.

        The outcomes are those of the one-command-at-a-time exchange: the first refusal among
        the replies belongs to the notice (5xx permanent, else transient) and the envelope is
        reset; a timeout, a dropped connection, a 421 or a state that is not clear ends the
        connection. A refused message ends only its own transaction, so the notice written
        behind it goes on; a notice whose connection ended before its MAIL FROM was answered
        was not tried and comes back as `again`.
        """
        sent = _Sent()
        did = batch.notices[index].delivery_id
        try:
            group: bytes | None = self._group(envelope)
        except ValueError as exc:  # nothing was written
            refused = SendOutcome(did, ok=False, permanent=True, error=str(exc))
            return _Sent([(index, refused)])
        failure: Exception | None = None  # settled once the connection is aiosmtplib's again
        pipe = Pipeline(conn)
        try:
            while True:
                result, chained = await self._transact(
                    conn, pipe, group, envelope.message, reused=reused,
                    chain=lambda: self._next(conn, batch, sent),
                )  # fmt: skip
                if result is True:
                    sent.outcomes.append((index, SendOutcome(did, ok=True)))
                elif result is None:
                    self._log_closed(did)
                    conn.close()
                    sent.again, sent.broken = index, True
                    break
                elif chained is None:
                    failure = _as_error(result)
                    if not isinstance(result, SMTPResponse):
                        conn.close()
                    break
                else:  # the message was refused or lost with the next notice already written
                    error = _as_error(result)
                    permanent = isinstance(error, SMTPResponseException) and is_permanent(
                        error.code
                    )
                    failed = SendOutcome(did, ok=False, permanent=permanent, error=describe(error))
                    sent.outcomes.append((index, failed))
                    if not conn.is_connected or not isinstance(result, SMTPResponse):
                        conn.close()
                        sent.again, sent.broken = chained.index, True
                        break
                if chained is None:
                    break
                index, envelope, group = chained.index, chained.envelope, None
                did = batch.notices[index].delivery_id
                reused = True  # written behind a message: not tried if closed before MAIL FROM
        finally:
            if not pipe.detach():  # replies nobody asked for: the session state is unknown
                conn.close()
        if failure is not None:
            settled = await self._settle(conn, index, did, failure)
            sent.outcomes += settled.outcomes
            sent.broken = settled.broken
        sent.broken = sent.broken or not conn.is_connected
        return sent

    async def _transact(
        self,
        conn: aiosmtplib.SMTP,
        pipe: Pipeline,
        group: bytes | None,
        message: bytes,
        *,
        reused: bool,
        chain: Callable[[], _Chained | None],
    ) -> tuple[Literal[True] | SMTPResponse | Exception | None, _Chained | None]:
        """One pipelined transaction, its `group` written first unless it already went behind
        the message before it. The first part is True when the message was accepted, the first
        refusal (after which the connection is closed if its state is not clear, else it awaits
        RSET), the exception that ended the exchange, or None when `reused` and the connection
        was closed before MAIL FROM was accepted. The second is the next notice `chain` gave,
        whose group went with this message (only once the message is written)."""
        timeout = self.settings.timeout
        try:
            if group is not None:
                pipe.write(group)
            mail = await pipe.reply(timeout)
        except Exception as exc:
            return (None if reused and isinstance(exc, ConnectionError) else exc), None
        if mail.code == CLOSING:
            conn.close()
            return (None if reused else mail), None
        refusal = None if mail.code == OK else mail
        try:
            rcpt = await pipe.reply(timeout)
            if refusal is None and rcpt.code not in (OK, WILL_FORWARD):
                refusal = rcpt
            if rcpt.code == CLOSING:
                conn.close()
                return refusal, None
            data = await pipe.reply(timeout)
        except Exception as exc:
            if refusal is None:
                return exc, None
            conn.close()  # the refusal is the notice's; the connection is gone or unclear
            return refusal, None
        if refusal is None and data.code != START_INPUT:
            refusal = data
        if refusal is not None:
            if data.code in (START_INPUT, CLOSING):
                # 354 after a refusal: the server waits for a message that will not come (it has
                # no recipient to take it). Closing abandons that transaction, and no lone "."
                # can make an empty message of it.
                conn.close()
            return refusal, None
        chained = chain()
        try:
            pipe.write(data_block(message) + (chained.group if chained else b""))
            end = await pipe.reply(timeout)
        except Exception as exc:
            return exc, chained
        if end.code != OK:
            if end.code == CLOSING:
                conn.close()
            return end, chained
        return True, chained

    def _log_closed(self, did: str) -> None:
        log.debug(
            "smtp connection closed by the server; sending on a new one",
            extra={"delivery_id": did, "smtp_server": self._where()},
        )

    async def _settle(self, conn: aiosmtplib.SMTP, index: int, did: str, exc: Exception) -> _Sent:
        """What a failed transaction means for its notice and its connection.

        A reply belongs to this notice (5xx permanent, else transient) and the envelope is reset
        so the connection can carry the next one; timeouts, refused or dropped connections are
        transient and end the connection.
        """
        if isinstance(exc, SMTPResponseException):
            await self._reset(conn)
            outcome = SendOutcome(
                did, ok=False, permanent=is_permanent(exc.code), error=describe(exc)
            )
            return _Sent([(index, outcome)], broken=not conn.is_connected)
        if isinstance(exc, ValueError):  # an address aiosmtplib will not put in a command
            await self._reset(conn)
            outcome = SendOutcome(did, ok=False, permanent=True, error=str(exc))
            return _Sent([(index, outcome)], broken=not conn.is_connected)
        if not isinstance(exc, (SMTPException, OSError)):
            log.error(
                "unexpected error sending mail for delivery %s via %s: %s",
                did,
                self._where(),
                describe(exc),
                exc_info=exc,
                extra={"delivery_id": did, "smtp_server": self._where()},
            )
        return _Sent([(index, SendOutcome(did, ok=False, error=describe(exc)))], broken=True)

    async def _reset(self, conn: aiosmtplib.SMTP) -> None:
        """RSET after a refusal, so the next notice starts a clean envelope on this connection."""
        if not conn.is_connected:
            return
        try:
            await conn.rset()
        except (SMTPException, OSError):
            conn.close()

    async def _give_back(self, conn: aiosmtplib.SMTP, generation: int) -> None:
        reusable = conn.is_connected and generation == self._generation
        if reusable and len(self._idle) < self.settings.pool_size:
            self._idle.append(conn)
        else:
            await self._quit(conn)

    async def _quit(self, conn: aiosmtplib.SMTP) -> None:
        try:
            if conn.is_connected:
                await conn.quit()
        except Exception:
            log.debug("smtp quit failed", exc_info=True)
        finally:
            conn.close()

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"


__all__ = ["SmtpSender", "describe", "is_permanent"]
