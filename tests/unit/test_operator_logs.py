"""What an operator reads in the log with the default format, which shows no `extra`: each
warning names what failed (the account, the handoff, how many) and why, in its own words."""

from __future__ import annotations

import logging

import pytest
from tests.unit.stage import ACME, Stage, address_of, build_stage, instant_retry, seed_team


def _lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


async def test_a_mail_batch_that_raises_is_logged_with_its_size_and_error(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    _, handoff = await stage.escalated(notes="help")
    stage.mail.fail_with = RuntimeError("SMTP down: relay.internal:25 refused")

    with caplog.at_level(logging.WARNING, logger="handoff.delivery"):
        assert await stage.delivery.dispatch(ACME, handoff.id) == 0

    assert _lines(caplog, "handoff.delivery") == [
        "mail batch of 3 notices failed: RuntimeError('SMTP down: relay.internal:25 refused')"
    ]


async def test_a_presence_lookup_that_fails_is_logged_naming_the_account(
    stage: Stage, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> frozenset[str]:
        raise ConnectionError("presence store gone")

    monkeypatch.setattr(stage.presence, "online", broken)

    with caplog.at_level(logging.WARNING):
        _, handoff = await stage.escalated(notes="help")
        assert await stage.delivery.dispatch(ACME, handoff.id) == 3  # everyone by email

    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"presence lookup for account {ACME} failed; emailing everyone" in messages
    shown = [r for r in caplog.records if r.exc_info]
    assert shown and all("presence store gone" in str(r.exc_info[1]) for r in shown if r.exc_info)


async def test_a_delivery_that_goes_dead_is_logged_with_its_recipient_attempts_and_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stage = build_stage(retry=instant_retry(attempts=1))
    await seed_team(stage)
    stage.mail.defer.add(address_of(ACME, "bob"))
    _, handoff = await stage.escalated()

    with caplog.at_level(logging.WARNING, logger="handoff.delivery"):
        await stage.delivery.dispatch(ACME, handoff.id)

    [bob] = [d for d in await stage.deliveries(handoff.id) if d.recipient_id == "bob"]
    assert _lines(caplog, "handoff.delivery") == [
        f"delivery {bob.id} to bob (email, handoff {handoff.id}) is dead after 1 attempts: "
        "451 try again later"
    ]
