"""HANDOFF_SMTP_URL parsing: what it accepts, and a clear error for what it does not."""

from __future__ import annotations

import pytest

from handoff_mail import SmtpSettings


def test_a_full_url_is_parsed() -> None:
    s = SmtpSettings.from_url(
        "smtp://mailer:s3cr%40t@mail.acme.test:2525?starttls=true&timeout=2.5&pool=8",
        mail_from="Handoff <handoff@acme.test>",
    )

    assert (s.host, s.port, s.username, s.password) == ("mail.acme.test", 2525, "mailer", "s3cr@t")
    assert (s.starttls, s.implicit_tls, s.timeout, s.pool_size) == (True, False, 2.5, 8)
    assert s.mail_from == "Handoff <handoff@acme.test>"
    assert "s3cr" not in repr(s)


@pytest.mark.parametrize(
    ("url", "port", "starttls", "implicit_tls"),
    [
        ("smtp://mail.acme.test", 25, False, False),
        ("smtp://mail.acme.test?starttls=true", 587, True, False),
        ("smtp://mail.acme.test?starttls=false", 25, False, False),
        ("smtps://mail.acme.test", 465, False, True),
        ("SMTPS://mail.acme.test:4650", 4650, False, True),
    ],
)
def test_ports_and_tls_default_by_scheme(
    url: str, port: int, starttls: bool, implicit_tls: bool
) -> None:
    s = SmtpSettings.from_url(url)

    assert (s.port, s.starttls, s.implicit_tls) == (port, starttls, implicit_tls)
    assert (s.timeout, s.pool_size, s.username, s.password) == (10.0, 4, None, None)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("", "empty"),
        ("http://mail.acme.test", "scheme"),
        ("mail.acme.test:25", "scheme"),
        ("smtp://", "host"),
        ("smtp://mail.acme.test:99999", "port"),
        ("smtp://mail.acme.test:abc", "port"),
        ("smtp://mail.acme.test/inbox", "path"),
        ("smtp://mail.acme.test?startls=true", "startls"),
        ("smtp://mail.acme.test?starttls=maybe", "starttls"),
        ("smtp://mail.acme.test?timeout=soon", "timeout"),
        ("smtp://mail.acme.test?timeout=0", "timeout"),
        ("smtp://mail.acme.test?pool=0", "pool"),
        ("smtp://mail.acme.test?pool=four", "pool"),
        ("smtp://mail.acme.test?pool=2&pool=3", "pool"),
        ("smtps://mail.acme.test?starttls=true", "starttls"),
        ("smtp://:hunter2@mail.acme.test", "user"),
    ],
)
def test_a_bad_url_names_what_is_wrong(url: str, named: str) -> None:
    with pytest.raises(ValueError, match=named) as raised:
        SmtpSettings.from_url(url)

    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    "mail_from", ["", "handoff", "Handoff <handoff>", "handoff@acme.test\r\nBcc: x@y.test"]
)
def test_a_bad_from_address_is_refused(mail_from: str) -> None:
    with pytest.raises(ValueError, match="from address"):
        SmtpSettings.from_url("smtp://mail.acme.test", mail_from=mail_from)
