"""TLS and AUTH against a real aiosmtpd: implicit TLS, STARTTLS, login, and their failures."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from handoff_core.notice import Notice
from handoff_mail import SmtpSender, SmtpSettings

if TYPE_CHECKING:
    from conftest import SinkServer

MakeSender = Callable[..., SmtpSender]
MakeNotice = Callable[..., Notice]
StartServer = Callable[..., "SinkServer"]


def only_mailer(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"mailer", b"s3cr@t")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


async def test_implicit_tls_with_smtps(
    start_smtp_server: StartServer,
    server_tls: ssl.SSLContext,
    make_notice: MakeNotice,
) -> None:
    server = start_smtp_server(ssl_context=server_tls)
    sender = SmtpSender(SmtpSettings.from_url(f"smtps://127.0.0.1:{server.port}?verify=false"))
    try:
        outcomes = await sender.send([make_notice(1), make_notice(2)])
    finally:
        await sender.close()

    assert [o.ok for o in outcomes] == [True, True]
    assert sorted(server.sink.recipients()) == ["senior1@acme.test", "senior2@acme.test"]


async def test_starttls_and_login_when_the_server_requires_both(
    start_smtp_server: StartServer,
    server_tls: ssl.SSLContext,
    make_sender: MakeSender,
    make_notice: MakeNotice,
) -> None:
    server = start_smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        authenticator=only_mailer,
        auth_required=True,
    )
    sender = SmtpSender(
        SmtpSettings.from_url(
            f"smtp://mailer:s3cr%40t@127.0.0.1:{server.port}?starttls=true&verify=false"
        )
    )
    try:
        outcomes = await sender.send([make_notice(1)])
    finally:
        await sender.close()

    assert [(o.ok, o.error) for o in outcomes] == [(True, None)]
    assert server.sink.recipients() == ["senior1@acme.test"]


async def test_a_wrong_password_is_a_transient_failure_naming_the_refusal(
    start_smtp_server: StartServer, server_tls: ssl.SSLContext, make_notice: MakeNotice
) -> None:
    server = start_smtp_server(
        tls_context=server_tls, require_starttls=True, authenticator=only_mailer, auth_required=True
    )
    sender = SmtpSender(
        SmtpSettings.from_url(
            f"smtp://mailer:wrong@127.0.0.1:{server.port}?starttls=true&verify=false"
        )
    )
    try:
        outcomes = await sender.send([make_notice(1), make_notice(2)])
    finally:
        await sender.close()

    assert [(o.ok, o.permanent) for o in outcomes] == [(False, False), (False, False)]
    assert all(o.error and "535" in o.error and "wrong" not in o.error for o in outcomes)
    assert server.sink.recipients() == []


async def test_an_untrusted_certificate_is_refused_unless_verify_is_off(
    start_smtp_server: StartServer, server_tls: ssl.SSLContext, make_notice: MakeNotice
) -> None:
    server = start_smtp_server(ssl_context=server_tls)
    sender = SmtpSender(SmtpSettings.from_url(f"smtps://127.0.0.1:{server.port}?timeout=5"))
    try:
        outcomes = await sender.send([make_notice(1)])
    finally:
        await sender.close()

    assert [(o.ok, o.permanent) for o in outcomes] == [(False, False)]
    assert outcomes[0].error is not None and "certificate" in outcomes[0].error.lower()
    assert server.sink.recipients() == []
