"""The Maildir sender: the embedded default, readable by any mail client."""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import attrs

from handoff_core.notice import Notice, NoticeBody
from handoff_core.ports import WITHDRAWN
from handoff_mail import MaildirSender

MakeNotice = Callable[..., Notice]


def read(folder: Path) -> list[EmailMessage]:
    box = mailbox.Maildir(folder, factory=None, create=False)
    return [message_from_bytes(box.get_bytes(key), policy=default_policy) for key in box.iterkeys()]


async def test_each_notice_becomes_one_message_in_a_folder_created_on_demand(
    tmp_path: Path, make_notice: MakeNotice, notice_body: NoticeBody
) -> None:
    folder = tmp_path / "var" / "handoff-mail"
    sender = MaildirSender(folder, mail_from="Handoff <handoff@acme.test>")
    assert not folder.exists()  # nothing happens until something is sent
    batch = [make_notice(i) for i in range(3)]

    outcomes = await sender.send(batch)

    assert [(o.delivery_id, o.ok) for o in outcomes] == [(n.delivery_id, True) for n in batch]
    assert len(list((folder / "new").iterdir())) == 3
    messages = sorted(read(folder), key=lambda m: str(m["Message-ID"]))
    for n, message in zip(batch, messages, strict=True):
        assert message["Message-ID"] == n.message_id
        assert message["To"].addresses[0].addr_spec == n.to_address
        assert message["From"].addresses[0].addr_spec == "handoff@acme.test"
        assert message["Subject"] == notice_body.subject
        plain = message.get_body(("plain",))
        html = message.get_body(("html",))
        assert plain is not None and plain.get_content() == notice_body.text
        assert html is not None and html.get_content() == notice_body.html


async def test_later_sends_add_to_an_existing_folder(
    tmp_path: Path, make_notice: MakeNotice
) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()  # exists, but is not a Maildir yet
    sender = MaildirSender(folder)

    await sender.send([make_notice(1)])
    await sender.send([make_notice(2), make_notice(3)])

    assert sorted(str(m["Message-ID"]) for m in read(folder)) == [
        "<d1@handoff>",
        "<d2@handoff>",
        "<d3@handoff>",
    ]
    assert len(sender.messages()) == 3


async def test_unicode_survives_the_maildir(tmp_path: Path, make_notice: MakeNotice) -> None:
    body = NoticeBody(
        subject="Escalation: VPN wön't connect", text="Zoë: ça ✓\n", html="<p>日本語</p>"
    )
    notice = make_notice(1, body=body)
    sender = MaildirSender(tmp_path / "mail")

    await sender.send([notice])

    (message,) = read(tmp_path / "mail")
    assert message["Subject"] == "Escalation: VPN wön't connect"
    plain = message.get_body(("plain",))
    assert plain is not None and plain.get_content() == "Zoë: ça ✓\n"


async def test_a_bad_address_is_refused_for_good_and_the_rest_are_written(
    tmp_path: Path, make_notice: MakeNotice
) -> None:
    sender = MaildirSender(tmp_path / "mail")
    bad = make_notice(2, domain="acme.test\r\nBcc: victim@else.test")

    outcomes = await sender.send([make_notice(1), bad, make_notice(3)])

    assert [(o.ok, o.permanent) for o in outcomes] == [(True, False), (False, True), (True, False)]
    assert len(read(tmp_path / "mail")) == 2


async def test_a_withdrawn_notice_is_not_written(tmp_path: Path, make_notice: MakeNotice) -> None:
    sender = MaildirSender(tmp_path / "mail")
    batch = [make_notice(i) for i in range(4)]
    stopped = {batch[1].delivery_id, batch[3].delivery_id}

    outcomes = await sender.send(batch, lambda n: n.delivery_id in stopped)

    assert [(o.ok, o.withdrawn) for o in outcomes] == [(True, False), (False, True)] * 2
    assert {o.error for o in outcomes if o.withdrawn} == {WITHDRAWN}
    assert len(read(tmp_path / "mail")) == 2


async def test_an_unusable_folder_is_a_transient_failure_not_an_exception(
    tmp_path: Path, make_notice: MakeNotice
) -> None:
    blocker = tmp_path / "mail"
    blocker.write_text("a file where the Maildir should be")
    sender = MaildirSender(blocker)

    outcomes = await sender.send([make_notice(1), make_notice(2)])

    assert [(o.ok, o.permanent) for o in outcomes] == [(False, False), (False, False)]
    assert all(o.error and "maildir" in o.error for o in outcomes)
    assert blocker.read_text() == "a file where the Maildir should be"


async def test_an_internationalised_address_is_kept_as_given(
    tmp_path: Path, make_notice: MakeNotice
) -> None:
    sender = MaildirSender(tmp_path / "mail", mail_from="handoff@acme.test")
    notice = attrs.evolve(make_notice(1), to_address="jösé@exämple.test")

    outcomes = await sender.send([notice])

    assert [o.ok for o in outcomes] == [True]
    (raw,) = sender.messages()
    assert 'To: "Senior 1" <jösé@exämple.test>'.encode() in raw
