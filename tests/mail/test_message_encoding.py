"""Which transfer encoding a notice's parts take, and that every recipient reads the same words.

A plain body (ASCII, no line over 998 octets) goes unencoded as 7bit; anything else is
quoted-printable. Either way the parsed message must give back the words and the recipient's
own link exactly, and no line on the wire may break SMTP's limit.
"""

from __future__ import annotations

import email
from email.message import Message
from email.policy import compat32

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handoff_core.notice import Notice, NoticeBody, fill_link
from handoff_mail.message import MAX_LINE, from_header, render, template

SLOT = "[[claim-0123456789abcdef]]"
SENDER = from_header("handoff@acme.test")


def _body(notes: str, summary: str = "VPN won't connect") -> NoticeBody:
    return NoticeBody(
        subject=f"Escalation: {summary}",
        text=f"Problem: {summary}\n\nNotes:\n{notes}\n\nClaim it: {SLOT}\n",
        html=f'<p>{summary}</p>\n<pre>{notes}</pre>\n<p><a href="{SLOT}">Claim</a></p>',
        link_slot=SLOT,
    )


def _notice(body: NoticeBody, url: str, n: int = 1) -> Notice:
    return Notice(
        delivery_id=f"d{n}",
        message_id=f"<d{n}@handoff>",
        to_address=f"senior{n}@acme.test",
        to_name=f"Senior {n}",
        body=fill_link(body, url),
        shared=body,
        claim_url=url,
    )


def _wire(body: NoticeBody, url: str) -> bytes:
    return render(_notice(body, url), template(body), sender_line=SENDER, date="now")


def _parts(raw: bytes) -> list[Message]:
    message = email.message_from_bytes(raw, policy=compat32)
    return [p for p in message.walk() if p.get_content_maintype() == "text"]


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "ascii")


def _check_lines(raw: bytes) -> None:
    for line in raw.split(b"\r\n"):
        assert len(line) <= MAX_LINE
        assert line.isascii()


def test_a_plain_body_goes_unencoded_with_each_recipients_link_as_written() -> None:
    body = _body("Stuck on the auth handshake; logs attached. Long line: " + "x" * 300)
    url = "http://127.0.0.1:8000/claim/eyJ0b2tlbiI6MX0.c2lnbmF0dXJl"
    raw = _wire(body, url)
    parts = _parts(raw)
    assert [p["Content-Transfer-Encoding"] for p in parts] == ["7bit", "7bit"]
    assert f"Claim it: {url}\r\n".encode() in raw  # on its own line, not wrapped or escaped
    assert _decoded(parts[0]).replace("\r\n", "\n") == fill_link(body, url).text
    assert _decoded(parts[1]).replace("\r\n", "\n") == fill_link(body, url).html
    assert b"x" * 300 + b"</pre>\r\n" in raw  # a long line as written: no soft breaks
    _check_lines(raw)


def test_a_body_that_is_not_ascii_is_quoted_printable() -> None:
    body = _body("Zoë saw the handshake fail at 03:00", summary="Café VPN")
    url = "http://127.0.0.1:8000/claim/abc.def"
    raw = _wire(body, url)
    parts = _parts(raw)
    assert [p["Content-Transfer-Encoding"] for p in parts] == [
        "quoted-printable",
        "quoted-printable",
    ]
    assert "Zoë saw the handshake" in _decoded(parts[0])
    assert _decoded(parts[0]).replace("\r\n", "\n") == fill_link(body, url).text
    _check_lines(raw)


@pytest.mark.parametrize("notes", ["From the logs: nothing\nFrom: header-like", "café\nFrom me"])
def test_a_line_starting_with_from_reads_as_written(notes: str) -> None:
    """ ">From " escaping is for mbox files; a notice carries such a line as it was typed."""
    body = _body(notes)
    url = "http://127.0.0.1:8000/claim/abc.def"
    text, html = _parts(_wire(body, url))
    assert _decoded(text).replace("\r\n", "\n") == fill_link(body, url).text
    assert _decoded(html).replace("\r\n", "\n") == fill_link(body, url).html


def test_a_line_over_998_octets_is_quoted_printable() -> None:
    body = _body("y" * (MAX_LINE + 1))
    raw = _wire(body, "http://127.0.0.1:8000/claim/abc.def")
    parts = _parts(raw)
    assert {p["Content-Transfer-Encoding"] for p in parts} == {"quoted-printable"}
    assert "y" * (MAX_LINE + 1) in _decoded(parts[0])
    _check_lines(raw)


def test_a_recipient_whose_link_makes_a_line_too_long_gets_their_own_encoded_body() -> None:
    """The shared body fits 7bit, but one recipient's (very long) link would not: that one
    message is quoted-printable, the others stay unencoded, and both read right."""
    body = _body("Stuck on the auth handshake")
    short = "http://127.0.0.1:8000/claim/abc.def"
    long = "http://127.0.0.1:8000/claim/" + "a" * MAX_LINE
    shared = template(body)
    raws = [
        render(_notice(body, url, n), shared, sender_line=SENDER, date="now")
        for n, url in enumerate((short, long))
    ]
    encodings = [{p["Content-Transfer-Encoding"] for p in _parts(raw)} for raw in raws]
    assert encodings == [{"7bit"}, {"quoted-printable"}]
    for raw, url in zip(raws, (short, long), strict=True):
        assert _decoded(_parts(raw)[0]).replace("\r\n", "\n") == fill_link(body, url).text
        _check_lines(raw)


LINE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("x .=-"),
    max_size=1200,
)


@settings(max_examples=150, deadline=None)
@given(notes=st.lists(LINE_TEXT, min_size=1, max_size=4).map("\n".join))
def test_any_notes_read_back_exactly_and_every_wire_line_fits(notes: str) -> None:
    body = _body(notes)
    url = "http://127.0.0.1:8000/claim/eyJ0b2tlbiI6MX0.c2ln"
    raw = _wire(body, url)
    _check_lines(raw)
    text, _ = _parts(raw)
    assert _decoded(text).replace("\r\n", "\n") == fill_link(body, url).text.replace("\r", "")
