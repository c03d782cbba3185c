"""The embedded default: every notice becomes one message file in a Maildir's new/.

No server to run, and any mail client (or `mailbox.Maildir`) can read the result. Maildir writes
each message to tmp/ and renames it into new/, so a reader never sees half a message.
"""

from __future__ import annotations

import asyncio
import mailbox
import os
from collections.abc import Sequence
from pathlib import Path

from handoff_core.notice import Notice, NoticeBody
from handoff_core.ports import WITHDRAWN, MailSender, SendOutcome, Withdrawn
from handoff_mail.address import wire_address
from handoff_mail.message import Template, date_header, from_header, render, template
from handoff_mail.settings import DEFAULT_FROM, check_from

LF = "\n"


class MaildirSender(MailSender):
    """MailSender into a Maildir folder, created (with tmp/, new/, cur/) on the first send."""

    def __init__(self, path: str | os.PathLike[str], mail_from: str = DEFAULT_FROM) -> None:
        self.path = Path(path)
        self.mail_from = check_from(mail_from)
        self._sender_line = from_header(self.mail_from, LF)

    async def send(
        self, notices: Sequence[Notice], withdrawn: Withdrawn | None = None
    ) -> list[SendOutcome]:
        """Write each notice as one message file in new/; one outcome per notice, in order
        (a notice `withdrawn` says no to, asked just before its file is written, is not).

        A notice that cannot be made into a message (an address no mail system takes) fails for
        good; a folder that cannot be created or written (a full disk, no permission) fails the
        notice for now, to be retried. Never raises for either: the outcome says it.
        """
        if not notices:
            return []
        return await asyncio.to_thread(self._write, list(notices), withdrawn)

    async def close(self) -> None:
        """Nothing stays open between sends; here so either sender can be closed alike."""

    def messages(self) -> list[bytes]:
        """Every message in the folder, new and seen, as raw bytes (for tests and the demo)."""
        if not self.path.exists():
            return []
        box = mailbox.Maildir(self.path, factory=None, create=False)
        return [box.get_bytes(key) for key in sorted(box.keys())]

    def _write(self, notices: list[Notice], withdrawn: Withdrawn | None) -> list[SendOutcome]:
        try:
            box = self._open()
        except OSError as exc:
            error = f"cannot use maildir {self.path}: {exc.strerror or exc}"
            return [SendOutcome(n.delivery_id, ok=False, error=error) for n in notices]
        date = date_header()
        templates: dict[NoticeBody, Template] = {}
        outcomes: list[SendOutcome] = []
        for notice in notices:
            if withdrawn is not None and withdrawn(notice):  # a membership test: thread-safe
                outcomes.append(
                    SendOutcome(notice.delivery_id, ok=False, withdrawn=True, error=WITHDRAWN)
                )
                continue
            try:
                shared = templates.get(notice.template)
                if shared is None:
                    shared = templates[notice.template] = template(notice.template, LF)
                # A Maildir is read by mail clients, which take UTF-8 headers (RFC 6532) as an
                # SMTPUTF8 server would: an internationalised address is kept as it was given.
                to = wire_address(notice.to_address, smtputf8=True)
                raw = render(
                    notice,
                    shared,
                    sender_line=self._sender_line,
                    date=date,
                    linesep=LF,
                    to_address=to,
                    utf8=not to.isascii(),
                )
            except ValueError as exc:
                outcomes.append(
                    SendOutcome(notice.delivery_id, ok=False, permanent=True, error=str(exc))
                )
                continue
            try:
                box.add(raw)
            except OSError as exc:  # a full disk or a removed folder: worth trying again later
                error = f"cannot write to maildir {self.path}: {exc.strerror or exc}"
                outcomes.append(SendOutcome(notice.delivery_id, ok=False, error=error))
                continue
            outcomes.append(SendOutcome(notice.delivery_id, ok=True))
        return outcomes

    def _open(self) -> mailbox.Maildir:
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        return mailbox.Maildir(self.path, factory=None, create=False)
