"""The wire form of a notice: built once per notice body, addressed per recipient.

A fan-out sends one body to many people, so the multipart/alternative body (both parts, encoded)
and the Subject are rendered once per `NoticeBody` with the compat32 `email.mime` classes, which
are an order of magnitude cheaper than `EmailMessage`; each recipient then costs only a few
header lines. Every header value is folded to one logical line and RFC 2047-encoded when it is not
ASCII, so a summary or name carrying CR/LF can never start a header of its own.

A body that is ASCII with no line over 998 octets (RFC 5322 §2.1.1) goes as it is written
(`7bit`); any other is quoted-printable. Unencoded, a typical notice is about a third fewer
lines and bytes, which the relay reads line by line.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from email import quoprimime
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import compat32
from email.utils import format_datetime, parseaddr
from io import BytesIO

from attrs import frozen

from handoff_core.notice import Notice, NoticeBody
from handoff_mail.address import ascii_address, plain_address, wire_address

CRLF = "\r\n"
_UTF8_QP = Charset("utf-8")
# Quoted-printable for every part: 7-bit safe, readable in a raw mailbox, and it wraps the HTML
# part (one long line) under SMTP's 998-octet line limit.
_UTF8_QP.body_encoding = QP
MAX_LINE = 998  # octets in a line of a message, CRLF aside (RFC 5322 §2.1.1)


def plain_enough(text: str) -> bool:
    """Whether `text` can go unencoded as 7bit: ASCII, no line over MAX_LINE."""
    return text.isascii() and all(len(line) <= MAX_LINE for line in text.split("\n"))


def date_header() -> str:
    """Now, as RFC 5322 writes it in UTC (`+0000`)."""
    return format_datetime(datetime.now(UTC))


def one_line(text: str) -> str:
    """Collapse every kind of line break and control character into single spaces."""
    if not text.isprintable():  # most text is: then only runs of spaces are left to collapse
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())


def encode_header(name: str, value: str, linesep: str) -> str:
    """`Name: value` folded under 78 columns, encoded words when the value is not ASCII."""
    text = one_line(value)
    charset = "us-ascii" if text.isascii() else "utf-8"
    encoded = Header(text, charset, header_name=name).encode(linesep=linesep)
    return f"{name}: {encoded}"


def format_address(
    name: str, address: str, linesep: str, header: str = "To", *, utf8: bool = False
) -> str:
    """`Name <address>` with the name quoted or encoded as RFC 5322 asks.

    The address must be plain ASCII unless `utf8` (a message for an SMTPUTF8 server, whose
    headers may carry UTF-8 as RFC 6532 allows); ValueError otherwise.
    """
    if utf8:
        plain_address(address)
    else:
        ascii_address(address)
    name = one_line(name)
    if not name:
        return address
    if name.isascii():
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{address}>'
    encoded = Header(name, "utf-8", header_name=header).encode(linesep=linesep)
    return f"{encoded} <{address}>"


def envelope_sender(mail_from: str) -> str:
    """The bare address of a From that may carry a display name."""
    _, address = parseaddr(mail_from)
    return ascii_address(address)


def from_header(mail_from: str, linesep: str = CRLF) -> str:
    name, address = parseaddr(mail_from)
    return f"From: {format_address(name, address, linesep, 'From')}"


@frozen
class Template:
    """What every recipient of one notice body shares, already on the wire.

    A body with a claim-link slot is kept as the encoded pieces `around` the lines that hold the
    slot (`lines`: each line's text and whether it is HTML); a recipient costs only the encoding
    of those few short lines with their own link. `whole` is False when the slot could not be
    placed that way, and each recipient's body is then encoded in full.
    """

    subject: bytes
    body: bytes
    around: tuple[bytes, ...] = ()
    lines: tuple[tuple[str, bool], ...] = ()
    slot: str = ""
    linesep: str = CRLF
    whole: bool = True
    seven_bit: bool = False


def _encoded_line(line: str, linesep: str, seven_bit: bool) -> bytes:
    """One line of a part as the shared body encodes it: as it is (7bit), or UTF-8
    quoted-printable with soft breaks."""
    if seven_bit:
        return line.encode("ascii")
    latin = line.encode("utf-8").decode("latin-1")
    return quoprimime.body_encode(latin, maxlinelen=76, eol=linesep).encode("ascii")


def _split_at_slot(
    body: NoticeBody, encoded: bytes, linesep: str, seven_bit: bool
) -> Template | None:
    """`encoded` cut around each line that holds the slot, or None if one cannot be found."""
    slot = body.link_slot
    assert slot is not None
    around: list[bytes] = []
    lines: list[tuple[str, bool]] = []
    start = 0
    for content, is_html in ((body.text, False), (body.html, True)):
        for line in content.split("\n"):
            if slot not in line:
                continue
            needle = (
                linesep.encode("ascii")
                + _encoded_line(line, linesep, seven_bit)
                + linesep.encode("ascii")
            )
            at = encoded.find(needle, start)
            if at < 0 or linesep.encode("ascii") in needle[len(linesep) : -len(linesep)]:
                return None  # wrapped or not where expected: encode per recipient instead
            around.append(encoded[start : at + len(linesep)])
            lines.append((line, is_html))
            start = at + len(needle) - len(linesep)
    around.append(encoded[start:])
    return Template(
        subject=b"", body=b"", around=tuple(around), lines=tuple(lines), slot=slot,
        linesep=linesep, seven_bit=seven_bit,
    )  # fmt: skip


def template(body: NoticeBody, linesep: str = CRLF, *, encode: bool = False) -> Template:
    """The Subject line and the encoded multipart/alternative of one notice body: 7bit when
    both parts are plain enough (see `plain_enough`) and not `encode`, else quoted-printable."""
    seven_bit = not encode and plain_enough(body.text) and plain_enough(body.html)
    multipart = MIMEMultipart("alternative")
    for content, subtype in ((body.text, "plain"), (body.html, "html")):
        if seven_bit:
            part = MIMENonMultipart("text", subtype, charset="us-ascii")
            part.set_payload(content, "us-ascii")  # says Content-Transfer-Encoding: 7bit
        else:
            part = MIMENonMultipart("text", subtype, charset="utf-8")
            part.set_payload(content, _UTF8_QP)
        del part["MIME-Version"]  # said once, at the top
        multipart.attach(part)
    buffer = BytesIO()
    # No ">From " escaping: that is for mbox files, and SMTP carries a line starting "From " as is.
    generator = BytesGenerator(buffer, mangle_from_=False, policy=compat32.clone(linesep=linesep))
    generator.flatten(multipart)
    subject = encode_header("Subject", body.subject, linesep) + linesep
    encoded = buffer.getvalue()
    if body.link_slot is None:
        return Template(subject=subject.encode("ascii"), body=encoded)
    pieces = _split_at_slot(body, encoded, linesep, seven_bit)
    if pieces is None:
        return Template(subject=subject.encode("ascii"), body=b"", whole=False)
    return Template(
        subject=subject.encode("ascii"),
        body=encoded,
        around=pieces.around,
        lines=pieces.lines,
        slot=pieces.slot,
        linesep=linesep,
        seven_bit=seven_bit,
    )


def _body_for(notice: Notice, shared: Template, linesep: str) -> bytes:
    """The encoded body of one recipient's message: the shared one, its link filled in."""
    if not shared.whole:
        return template(notice.body, linesep, encode=True).body
    if not shared.lines:
        return shared.body
    out = [shared.around[0]]
    for (line, is_html), after in zip(shared.lines, shared.around[1:], strict=True):
        url = html.escape(notice.claim_url, quote=True) if is_html else notice.claim_url
        filled = line.replace(shared.slot, url)
        if shared.seven_bit and not plain_enough(filled):  # this recipient's link won't fit
            return template(notice.body, linesep, encode=True).body
        out += [_encoded_line(filled, shared.linesep, shared.seven_bit), after]
    return b"".join(out)


def render(
    notice: Notice,
    shared: Template,
    *,
    sender_line: str,
    date: str | None = None,
    linesep: str = CRLF,
    to_address: str | None = None,
    utf8: bool = False,
) -> bytes:
    """One recipient's message: its own address lines in front of the shared part.

    `to_address` is the recipient's address as it goes on the wire (see `wire_address`;
    by default the notice's own, which must then be ASCII); with `utf8` the header may carry it
    in UTF-8, for a server that took SMTPUTF8. ValueError when the address or the message id
    cannot be put in a header.
    """
    message_id = one_line(notice.message_id)
    if not (message_id.startswith("<") and message_id.endswith(">") and message_id.isascii()):
        raise ValueError(f"message id {notice.message_id!r} is not of the form <id@host>")
    if " " in message_id:
        raise ValueError(f"message id {notice.message_id!r} must not contain spaces")
    to = notice.to_address if to_address is None else to_address
    lines = (
        sender_line,
        f"To: {format_address(notice.to_name, to, linesep, utf8=utf8)}",
        f"Date: {date or date_header()}",
        f"Message-ID: {message_id}",
        "Auto-Submitted: auto-generated",
    )
    head = linesep.join(lines) + linesep
    return (
        head.encode("utf-8" if utf8 else "ascii")
        + shared.subject
        + _body_for(notice, shared, linesep)
    )


def build_message(
    notice: Notice,
    mail_from: str,
    *,
    date: str | None = None,
    linesep: str = CRLF,
    smtputf8: bool = False,
) -> bytes:
    """A whole message for one notice, for callers that send one at a time.

    `smtputf8`: the message goes to a server (or store) that takes UTF-8 addresses; without it a
    non-ASCII domain is written in IDNA and a non-ASCII local part is refused (ValueError).
    """
    to_address = wire_address(notice.to_address, smtputf8=smtputf8)
    return render(
        notice,
        template(notice.template, linesep),
        sender_line=from_header(mail_from, linesep),
        date=date,
        linesep=linesep,
        to_address=to_address,
        utf8=not to_address.isascii(),
    )
