"""The wire message: headers, both parts, Unicode, and no way for a value to add a header."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest

from handoff_core.links import ClaimLinks
from handoff_core.model import Channel, Delivery, NoticeKind
from handoff_core.notice import Notice, NoticeBody, address
from handoff_mail import build_message
from handoff_mail.message import from_header, render, template

FROM = "Handoff <handoff@acme.test>"


def parse(raw: bytes) -> EmailMessage:
    """Read the wire form as a mail store keeps it, with local line endings."""
    local = raw.replace(b"\r\n", b"\n")
    return email.message_from_bytes(local, policy=default_policy)


def make(
    subject: str = "Escalation: printer on fire",
    *,
    name: str = "Bob Smith",
    address: str = "bob@acme.test",
    text: str = "Plain words.\n",
    html: str = "<p>HTML words.</p>",
    message_id: str = "<d1@handoff>",
) -> Notice:
    return Notice(
        delivery_id="d1",
        message_id=message_id,
        to_address=address,
        to_name=name,
        body=NoticeBody(subject=subject, text=text, html=html),
    )


def test_headers_and_both_parts_round_trip() -> None:
    message = parse(build_message(make(), FROM, date="Mon, 05 Jan 2026 09:00:00 +0000"))

    assert message["Subject"] == "Escalation: printer on fire"
    assert message["From"].addresses[0].display_name == "Handoff"
    assert message["From"].addresses[0].addr_spec == "handoff@acme.test"
    assert message["To"].addresses[0].display_name == "Bob Smith"
    assert message["To"].addresses[0].addr_spec == "bob@acme.test"
    assert message["Message-ID"] == "<d1@handoff>"
    assert message["Date"].datetime == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content()) for p in message.iter_parts()]
    assert parts == [("text/plain", "Plain words.\n"), ("text/html", "<p>HTML words.</p>")]


def test_non_ascii_names_summaries_and_bodies_survive_and_the_wire_stays_7_bit() -> None:
    notice = make(
        "Escalation: VPN wön't connect — 日本語のエラー",
        name="Zoë Ørsted-Łukasz",
        text="Zoë says: ça ne marche pas ✓\n",
        html="<p>日本語 ✓</p>",
    )

    raw = build_message(notice, "Ärger Bot <handoff@acme.test>")
    message = parse(raw)

    assert raw.isascii()
    assert message["Subject"] == "Escalation: VPN wön't connect — 日本語のエラー"
    assert message["To"].addresses[0].display_name == "Zoë Ørsted-Łukasz"
    assert message["From"].addresses[0].display_name == "Ärger Bot"
    plain, html = message.iter_parts()
    assert plain.get_content() == "Zoë says: ça ne marche pas ✓\n"
    assert html.get_content() == "<p>日本語 ✓</p>"


@pytest.mark.parametrize(
    "evil",
    [
        "Escalation: x\r\nBcc: victim@else.test",
        "Escalation: x\nBcc: victim@else.test",
        "Escalation: x\rBcc: victim@else.test",
        "Escalation: x\u2028Bcc: victim@else.test",
        "Escalation: ü\r\nBcc: victim@else.test",
    ],
)
def test_a_summary_with_line_breaks_cannot_add_a_header(evil: str) -> None:
    raw = build_message(make(evil), FROM)
    message = parse(raw)

    assert message["Bcc"] is None
    assert b"\nBcc:" not in raw
    assert "Bcc: victim@else.test" in message["Subject"]
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    assert sorted(message.keys()) == sorted(
        [
            *("From", "To", "Date", "Message-ID", "Auto-Submitted", "Subject"),
            *("Content-Type", "MIME-Version"),
        ]
    )


def test_a_name_with_line_breaks_or_quotes_cannot_add_a_header() -> None:
    raw = build_message(make(name='Bob "the boss"\r\nX-Evil: 1\\'), FROM)
    message = parse(raw)

    assert message["X-Evil"] is None
    assert message["To"].addresses[0].display_name == 'Bob "the boss" X-Evil: 1\\'
    assert message["To"].addresses[0].addr_spec == "bob@acme.test"


@pytest.mark.parametrize(
    "address",
    [
        "bob@acme.test\r\nBcc: victim@else.test",
        "bob@acme.test>, victim@else.test",
        "bob smith@acme.test",
        "böb@acme.test",
        "no-at-sign",
        "",
    ],
)
def test_an_address_that_cannot_be_put_on_the_wire_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        build_message(make(address=address), FROM)


def test_a_message_id_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="message id"):
        build_message(make(message_id="<d1@handoff>\r\nBcc: victim@else.test"), FROM)


def test_long_lines_are_wrapped_under_the_smtp_limit() -> None:
    notes = "word " * 2000
    notice = make("Escalation: " + "long summary " * 38, text=notes, html=f"<p>{notes}</p>")

    raw = build_message(notice, FROM)
    message = parse(raw)

    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert message["Subject"] == ("Escalation: " + "long summary " * 38).strip()
    plain, html = message.iter_parts()
    assert plain.get_content() == notes
    assert html.get_content() == f"<p>{notes}</p>"


def test_one_template_serves_every_recipient_with_their_own_address_lines() -> None:
    body = NoticeBody(subject="Escalation: shared", text="Same for all.\n", html="<p>Same</p>")
    shared = template(body)
    sender = from_header(FROM)
    notices = [
        Notice(f"d{i}", f"<d{i}@handoff>", f"s{i}@acme.test", f"Senior {i}", body) for i in range(3)
    ]

    messages = [parse(render(n, shared, sender_line=sender)) for n in notices]

    assert [m["To"].addresses[0].addr_spec for m in messages] == [n.to_address for n in notices]
    assert [m["Message-ID"] for m in messages] == [n.message_id for n in notices]
    assert {m.get_body(("plain",)).get_content() for m in messages} == {"Same for all.\n"}  # type: ignore[union-attr]


def test_a_missing_name_leaves_the_bare_address() -> None:
    message = parse(build_message(make(name="  "), FROM))

    assert message["To"] == "bob@acme.test"


def _linked(recipient: str, links: ClaimLinks, body: NoticeBody) -> Notice:
    delivery = Delivery(
        id=f"d-{recipient}",
        account_id="acme",
        handoff_id="h1",
        recipient_id=recipient,
        address=f"{recipient}@acme.test",
        channel=Channel.EMAIL,
        kind=NoticeKind.ESCALATION,
        created_at=datetime(2026, 1, 5, tzinfo=UTC),
        next_attempt_at=datetime(2026, 1, 5, tzinfo=UTC),
    )
    return address(delivery, recipient.title(), body, links)


@pytest.mark.parametrize("linesep", ["\r\n", "\n"])
def test_a_shared_body_is_encoded_once_and_each_recipient_gets_only_their_own_link(
    linesep: str,
) -> None:
    class Clock:
        def now(self) -> datetime:
            return datetime(2026, 1, 5, 9, tzinfo=UTC)

    links = ClaimLinks("message-test-secret-of-32-bytes!!", "https://desk.example.com/é", Clock())
    long_notes = "Ünïcode notes, long enough to wrap: " + "x" * 300
    body = NoticeBody(
        subject="Escalation: printer",
        text=f"Intro.\n\nNotes:\n{long_notes}\n\nClaim it: [[claim-0001]]\n\nBye.\n",
        html=f'<p>{long_notes}</p>\n<p><a href="[[claim-0001]]">Claim</a></p>\n<p>Bye.</p>',
        link_slot="[[claim-0001]]",
    )
    shared = template(body, linesep)
    assert shared.whole and len(shared.lines) == 2  # the slot lines alone are per recipient

    for recipient in ("bob", "carol"):
        notice = _linked(recipient, links, body)
        assert notice.template is body and "[[claim-" not in notice.body.text
        raw = render(notice, shared, sender_line=from_header(FROM), linesep=linesep)
        whole = render(notice, template(notice.body, linesep), sender_line=from_header(FROM),
                       linesep=linesep)  # fmt: skip
        message, expected = parse(raw), parse(whole)
        for kind in ("plain", "html"):
            part = message.get_body((kind,))
            assert part is not None
            assert part.get_content() == expected.get_body((kind,)).get_content()  # type: ignore[union-attr]
            assert notice.claim_url in part.get_content()
        assert max(len(line) for line in raw.split(linesep.encode())) <= 998
        assert links.read(notice.claim_url.rsplit("/", 1)[1]).member_id == recipient
