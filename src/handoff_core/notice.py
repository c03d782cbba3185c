"""The words of a notice: built once per escalation, addressed per recipient.

Kept as plain strings so a sender can put them on the wire in whatever way is cheapest; building
a full `email.message.EmailMessage` per recipient is the hot path of a large fan-out.
"""

from __future__ import annotations

import html
import secrets
from typing import TYPE_CHECKING

from attrs import evolve, frozen

from handoff_core.model import Delivery, Handoff, Member, NoticeKind

if TYPE_CHECKING:
    from handoff_core.links import ClaimLinks


@frozen
class NoticeBody:
    """What every recipient of one handoff's notice of one kind reads.

    `link_slot` marks where each recipient's own claim link goes (filled in by `address`); it
    stands on a short line of its own in each part, so a sender can encode the shared body once
    and only that line per recipient. `inbox_url` stands in for the link when no claim links are
    issued.
    """

    subject: str
    text: str
    html: str
    link_slot: str | None = None
    inbox_url: str = ""


@frozen
class Notice:
    """One message to one recipient, ready for a MailSender."""

    delivery_id: str
    message_id: str
    to_address: str
    to_name: str
    body: NoticeBody
    shared: NoticeBody | None = None
    claim_url: str = ""

    @property
    def template(self) -> NoticeBody:
        """The body every recipient shares (with the link slot, when it has one): what a sender
        may encode once and fill in per recipient with `claim_url`. `body` is this recipient's
        own words, the link filled in."""
        return self.shared if self.shared is not None else self.body


def inbox_link(public_url: str) -> str:
    """The escalation inbox page (SPEC §12)."""
    return f"{public_url.rstrip('/')}/"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def compose(
    handoff: Handoff, escalator: Member | None, public_url: str, kind: NoticeKind, round: int = 0
) -> NoticeBody:
    """The shared words of one notice. The claim link is a slot filled per recipient by
    `address`: a random marker, so no summary or note can ever be mistaken for it."""
    summary = _one_line(str(handoff.snapshot.get("problem_summary", ""))) or "(no summary)"
    who = escalator.name if escalator is not None else handoff.created_by
    link = f"[[claim-{secrets.token_hex(8)}]]"
    notes = handoff.engineer_notes or "(no notes)"
    if kind is NoticeKind.REMINDER:
        subject = f"Reminder {round}: still unclaimed: {summary}"
        opening = f"Reminder: this escalation from {who} is still waiting for someone to claim it."
    else:
        subject = f"Escalation: {summary}"
        opening = f"{who} escalated a troubleshooting session and needs a senior to take it."
    text = (
        f"{opening}\n\nProblem: {summary}\n\nNotes from {who}:\n{notes}\n\n"
        f"Claim it: {link}\n\nThe link is yours alone: it opens the escalation, and only the "
        "button on that page claims it.\n"
    )
    esc = html.escape
    html_body = "\n".join(
        (
            f"<p>{esc(opening)}</p>",
            f"<p><strong>Problem:</strong> {esc(summary)}</p>",
            f"<p><strong>Notes from {esc(who)}:</strong></p>",
            f'<pre style="white-space:pre-wrap">{esc(notes)}</pre>',
            f'<p><a href="{link}">Claim this escalation</a></p>',
            "<p>The link is yours alone: it opens the escalation, and only the button on that "
            "page claims it.</p>",
        )
    )
    return NoticeBody(
        subject=subject, text=text, html=html_body, link_slot=link, inbox_url=inbox_link(public_url)
    )


def address(
    delivery: Delivery,
    recipient_name: str,
    body: NoticeBody,
    links: ClaimLinks | None = None,
) -> Notice:
    """The notice for one recipient: `body` with the recipient's own claim link in its slot
    (from `links`), or the inbox's address when there are no claim links. The shared body rides
    along (`shared`, `claim_url`) for senders that encode it once per batch."""
    if body.link_slot is None:
        return Notice(
            delivery_id=delivery.id,
            message_id=delivery.message_id,
            to_address=delivery.address,
            to_name=recipient_name,
            body=body,
        )
    url = (
        links.url(delivery.account_id, delivery.recipient_id, delivery.handoff_id)
        if links is not None
        else body.inbox_url
    )
    return Notice(
        delivery_id=delivery.id,
        message_id=delivery.message_id,
        to_address=delivery.address,
        to_name=recipient_name,
        body=fill_link(body, url),
        shared=body,
        claim_url=url,
    )


def fill_link(body: NoticeBody, url: str) -> NoticeBody:
    """`body` with `url` in its link slot (escaped for the HTML part)."""
    if body.link_slot is None:
        return body
    return evolve(
        body,
        text=body.text.replace(body.link_slot, url),
        html=body.html.replace(body.link_slot, html.escape(url, quote=True)),
        link_slot=None,
    )
