"""Claim from the email (SPEC §11) over HTTP: the link in each email, its page, its button."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from tests.e2e.people import Api, mails
from tests.e2e.servers import serving

from handoff_app.container import Services
from handoff_app.settings import Settings
from handoff_core.links import ClaimLinks
from handoff_core.services.signin import SignInService

ERIN = ("acme", "erin")
ADAM = ("acme", "adam")
OLGA = ("acme", "olga")
XSS = "<img src=x onerror=alert(1)>"


class PastClock:
    def now(self) -> datetime:
        return datetime.now(UTC) - timedelta(days=3)


def link_path(url: str) -> str:
    return urlsplit(url).path


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no Claim form"
    return found.group(1)


async def handoff_of(api: Api, handoff_id: str) -> dict[str, object]:
    r = await api.call("GET", f"/handoffs/{handoff_id}", OLGA)
    assert r.status_code == 200
    return dict(r.json())


async def claim_form(client: httpx.AsyncClient, path: str, **fields: str) -> httpx.Response:
    headers = {"Origin": "http://handoff.test"}
    return await client.post(path, data=fields, headers=headers)


async def test_each_email_carries_its_recipients_own_link_to_a_page_that_claims_nothing(
    api: Api, client: httpx.AsyncClient, services: Services, maildir: Path
) -> None:
    _, handoff_id = await api.escalate(ERIN, summary="Printer on fire", notes="Smells of toner")
    await api.settled(ERIN, handoff_id)
    links: dict[str, str] = {}
    for message in mails(maildir):
        plain, html = message.get_payload()  # type: ignore[misc]
        text = plain.get_payload(decode=True).decode()
        [url] = re.findall(r"http://handoff\.test/claim/\S+", text)
        assert url in html.get_payload(decode=True).decode()
        links[str(message["To"])] = url
    assert len(set(links.values())) == len(links) >= 3  # one per recipient
    assert services.claim_links is not None
    olga_url = next(url for to, url in links.items() if "olga@" in to)
    ticket = services.claim_links.read(link_path(olga_url).rsplit("/", 1)[1])
    assert (ticket.account_id, ticket.member_id, ticket.handoff_id) == ("acme", "olga", handoff_id)

    before = await handoff_of(api, handoff_id)
    for _ in range(2):  # a mail scanner opening it twice changes nothing
        page = await client.get(link_path(olga_url))
        assert page.status_code == 200
        assert "Printer on fire" in page.text and "Smells of toner" in page.text
        assert "Erin" in page.text and ">Claim<" in page.text
    assert await handoff_of(api, handoff_id) == before
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["referrer-policy"] == "same-origin"


async def test_the_button_claims_as_the_recipient_and_the_page_then_says_who_has_it(
    api: Api, client: httpx.AsyncClient, services: Services
) -> None:
    _, handoff_id = await api.escalate(ERIN)
    assert services.claim_links is not None
    path = link_path(services.claim_links.url("acme", "olga", handoff_id))
    page = await client.get(path)
    done = await claim_form(client, path, csrf=csrf_of(page.text), handoff_id=handoff_id)
    assert done.status_code == 200
    assert "You claimed it" in done.text
    assert (await handoff_of(api, handoff_id))["claimed_by"] == "olga"

    adam_path = link_path(services.claim_links.url("acme", "adam", handoff_id))
    late = await client.get(adam_path)
    assert late.status_code == 200
    assert "Claimed by <strong>Olga</strong>" in late.text
    assert 'name="csrf"' not in late.text


async def test_a_second_claimer_by_link_is_told_who_was_first(
    api: Api, client: httpx.AsyncClient, services: Services
) -> None:
    _, handoff_id = await api.escalate(ERIN)
    assert services.claim_links is not None
    path = link_path(services.claim_links.url("acme", "adam", handoff_id))
    csrf = csrf_of((await client.get(path)).text)
    r = await api.call("POST", f"/handoffs/{handoff_id}/claim", OLGA)
    assert r.status_code == 200
    late = await claim_form(client, path, csrf=csrf, handoff_id=handoff_id)
    assert late.status_code == 409
    assert "Too late: Olga claimed it first" in late.text


@pytest.mark.parametrize(
    ("damage", "status", "words"),
    [
        (lambda t: t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB"), 400, "was changed"),
        (lambda t: "x" + t, 400, "was changed"),
        (lambda t: t.replace(".", ""), 400, "not a claim link"),
        (lambda t: "%00%ff.%00", 400, "not a claim link"),
        (lambda t: "é." * 10, 400, "not a claim link"),
        (lambda t: "a" * 5000, 422, None),
    ],
)
async def test_a_damaged_token_is_refused_with_a_page_that_says_why(
    api: Api, client: httpx.AsyncClient, services: Services, damage, status, words
) -> None:
    _, handoff_id = await api.escalate(ERIN)
    assert services.claim_links is not None
    token = services.claim_links.token("acme", "olga", handoff_id)
    bad = damage(token)
    page = await client.get(f"/claim/{bad}")
    assert page.status_code == status
    if words:
        assert words in page.text
    posted = await claim_form(client, f"/claim/{bad}", csrf="0" * 64, handoff_id=handoff_id)
    assert posted.status_code in (400, 403, 422)
    assert (await handoff_of(api, handoff_id))["status"] == "open"


@pytest.mark.parametrize(
    "odd",
    [
        ("\ud800", "olga", "{h}"),  # a lone surrogate: no store can even look it up
        ("acme", "\udfff", "{h}"),
        ("acme", "olga", "\ud800"),
        ("acme", "ol\x00ga", "{h}"),
        ("acme", "", "{h}"),
        ("acme", "../olga", "{h}"),
        ("acme", "o" * 400, "{h}"),
    ],
)
async def test_a_signed_link_with_ids_no_one_could_have_is_not_a_claim_link(
    api: Api, client: httpx.AsyncClient, services: Services, odd: tuple[str, str, str]
) -> None:
    _, handoff_id = await api.escalate(ERIN)
    assert services.claim_links is not None
    account, member, handoff = (part.format(h=handoff_id) for part in odd)
    path = f"/claim/{services.claim_links.token(account, member, handoff)}"

    page = await client.get(path)
    assert page.status_code == 400 and "not a claim link" in page.text
    posted = await claim_form(client, path, csrf="0" * 64, handoff_id=handoff_id)
    assert posted.status_code in (400, 403)
    assert (await client.get("/healthz")).status_code == 200  # the connection is still good
    assert (await handoff_of(api, handoff_id))["status"] == "open"


async def test_an_expired_a_foreign_and_a_removed_members_link_each_say_so(
    api: Api, client: httpx.AsyncClient, settings: Settings, services: Services
) -> None:
    _, handoff_id = await api.escalate(ERIN)
    assert settings.link_key is not None
    old = ClaimLinks(settings.link_key, settings.public_url, PastClock(), timedelta(days=1))
    expired = await client.get(link_path(old.url("acme", "olga", handoff_id)))
    assert expired.status_code == 410 and "This link has expired" in expired.text

    other = ClaimLinks("another-installation-secret-32-bytes!", settings.public_url, PastClock())
    foreign = await client.get(link_path(other.url("acme", "olga", handoff_id)))
    assert foreign.status_code == 400 and "another installation" in foreign.text

    assert services.claim_links is not None
    removed = await client.get(link_path(services.claim_links.url("acme", "dora", handoff_id)))
    assert removed.status_code == 403 and "no longer active" in removed.text

    elsewhere = await client.get(link_path(services.claim_links.url("globex", "gus", handoff_id)))
    assert elsewhere.status_code == 404 and "does not exist" in elsewhere.text

    path = link_path(services.claim_links.url("acme", "olga", handoff_id))
    csrf = csrf_of((await client.get(path)).text)
    mismatch = await claim_form(client, path, csrf=csrf, handoff_id="another-one")
    assert mismatch.status_code == 409 and "another escalation" in mismatch.text
    assert (await handoff_of(api, handoff_id))["status"] == "open"


async def test_a_withdrawn_escalation_and_the_escalators_own_link_offer_no_button(
    api: Api, client: httpx.AsyncClient, services: Services
) -> None:
    _, handoff_id = await api.escalate(ERIN)
    assert services.claim_links is not None
    own = await client.get(link_path(services.claim_links.url("acme", "erin", handoff_id)))
    assert own.status_code == 200 and "someone else has to take it" in own.text
    assert 'name="csrf"' not in own.text
    r = await api.call("POST", f"/handoffs/{handoff_id}/withdraw", ERIN)
    assert r.status_code == 200
    gone = await client.get(link_path(services.claim_links.url("acme", "olga", handoff_id)))
    assert "Withdrawn by the escalator" in gone.text and 'name="csrf"' not in gone.text


async def test_a_post_from_another_site_or_without_the_pages_token_claims_nothing(
    api: Api, client: httpx.AsyncClient, services: Services
) -> None:
    _, handoff_id = await api.escalate(ERIN)
    assert services.claim_links is not None
    path = link_path(services.claim_links.url("acme", "olga", handoff_id))
    csrf = csrf_of((await client.get(path)).text)
    fields = {"csrf": csrf, "handoff_id": handoff_id}
    evil = await client.post(path, data=fields, headers={"Origin": "https://evil.test"})
    assert evil.status_code == 403 and "Not claimed" in evil.text
    cross = await client.post(path, data=fields, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    no_token = await claim_form(client, path, handoff_id=handoff_id)
    assert no_token.status_code == 403
    assert (await handoff_of(api, handoff_id))["status"] == "open"


async def test_user_text_on_the_claim_page_is_text(
    api: Api, client: httpx.AsyncClient, services: Services
) -> None:
    _, handoff_id = await api.escalate(ERIN, summary=XSS, notes=f"notes {XSS}")
    assert services.claim_links is not None
    page = await client.get(link_path(services.claim_links.url("acme", "olga", handoff_id)))
    assert page.status_code == 200
    assert "<img" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b"csrf=1&csrf=2&handoff_id=a&handoff_id=b", "application/x-www-form-urlencoded"),
        (b"&".join(b"f%d=1" % i for i in range(500)), "application/x-www-form-urlencoded"),
        (b'{"csrf": "x"}', "application/json"),
        (b"csrf=%FF&handoff_id=x", "application/x-www-form-urlencoded"),  # not ASCII
        (b"csrf=%C3%A9&handoff_id=x", "application/x-www-form-urlencoded"),
        (b"", "text/plain"),
    ],
)
async def test_an_odd_claim_post_is_refused_plainly_never_a_500(
    api: Api, client: httpx.AsyncClient, services: Services, body: bytes, content_type: str
) -> None:
    _, handoff_id = await api.escalate(ERIN)
    assert services.claim_links is not None
    path = link_path(services.claim_links.url("acme", "olga", handoff_id))
    headers = {"Origin": "http://handoff.test", "Content-Type": content_type}
    r = await client.post(path, content=body, headers=headers)
    assert r.status_code == 403 and "Not claimed" in r.text
    assert (await handoff_of(api, handoff_id))["status"] == "open"


async def test_claim_tokens_and_sign_in_codes_never_reach_the_access_log(
    api: Api,
    app: FastAPI,
    services: Services,
    access_log: list[str],
) -> None:
    _, handoff_id = await api.escalate(ERIN)
    assert services.claim_links is not None
    token = services.claim_links.token("acme", "olga", handoff_id)
    code = await SignInService(services.uow, services.clock).issue(
        "acme", "olga", timedelta(minutes=5)
    )
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as remote:
        assert (await remote.get(f"/claim/{token}")).status_code == 200
        assert (await remote.get(f"/login/{code}?next=x")).status_code == 200
    lines = [line for line in access_log if "/claim/" in line or "/login/" in line]
    assert len(lines) == 2, access_log
    assert all("[redacted]" in line for line in lines)
    assert not any(token.split(".")[1] in line or code in line for line in access_log)
