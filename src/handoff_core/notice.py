"""The words of a notice: built once per escalation, addressed per recipient.

Kept as plain strings so a sender can put them on the wire in whatever way is cheapest; building
a full `email.message.EmailMessage` per recipient is the hot path of a large fan-out.
"""

from __future__ import annotations

import html
from urllib.parse import quote

from attrs import frozen

from handoff_core.model import Delivery, Handoff, Member, NoticeKind


@frozen
class NoticeBody:
    """What every recipient of one handoff's notice of one kind reads."""

    subject: str
    text: str
    html: str


@frozen
class Notice:
    """One message to one recipient, ready for a MailSender."""

    delivery_id: str
    message_id: str
    to_address: str
    to_name: str
    body: NoticeBody


def claim_link(public_url: str, handoff_id: str) -> str:
    return f"{public_url.rstrip('/')}/handoffs/{quote(handoff_id, safe='')}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def compose(
    handoff: Handoff, escalator: Member | None, public_url: str, kind: NoticeKind, round: int = 0
) -> NoticeBody:
    summary = _one_line(str(handoff.snapshot.get("problem_summary", ""))) or "(no summary)"
    who = escalator.name if escalator is not None else handoff.created_by
    link = claim_link(public_url, handoff.id)
    notes = handoff.engineer_notes or "(no notes)"
    if kind is NoticeKind.REMINDER:
        subject = f"Reminder {round}: still unclaimed: {summary}"
        opening = f"Reminder: this escalation from {who} is still waiting for someone to claim it."
    else:
        subject = f"Escalation: {summary}"
        opening = f"{who} escalated a troubleshooting session and needs a senior to take it."
    text = f"{opening}\n\nProblem: {summary}\n\nNotes from {who}:\n{notes}\n\nClaim it: {link}\n"
    esc = html.escape
    html_body = (
        f"<p>{esc(opening)}</p>"
        f"<p><strong>Problem:</strong> {esc(summary)}</p>"
        f"<p><strong>Notes from {esc(who)}:</strong></p>"
        f'<pre style="white-space:pre-wrap">{esc(notes)}</pre>'
        f'<p><a href="{esc(link, quote=True)}">Claim this escalation</a></p>'
    )
    return NoticeBody(subject=subject, text=text, html=html_body)


def address(delivery: Delivery, recipient_name: str, body: NoticeBody) -> Notice:
    return Notice(
        delivery_id=delivery.id,
        message_id=delivery.message_id,
        to_address=delivery.address,
        to_name=recipient_name,
        body=body,
    )
