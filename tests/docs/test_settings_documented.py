"""Every setting the service reads is in the settings tables of the README and of
docs/service.md, with the default the code uses, and the SMTP URL's row names every option the
URL accepts: an operator reading either page sees every knob there is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from handoff_app.settings import Settings
from handoff_mail import settings as mail_settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_SOURCE = ROOT / "src" / "entrypoints" / "handoff_app" / "settings.py"
PAGES = ["README.md", "docs/service.md"]


def variables() -> list[str]:
    """The HANDOFF_* names settings.py reads (a name is only ever read there as a string)."""
    found = set(re.findall(r'"(HANDOFF_[A-Z_]+)', SETTINGS_SOURCE.read_text(encoding="utf-8")))
    assert len(found) >= 20, found
    return sorted(found)


def rows(page: str) -> dict[str, tuple[str, str]]:
    """The settings table of a page: variable -> (default cell, meaning cell)."""
    table: dict[str, tuple[str, str]] = {}
    for line in (ROOT / page).read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `(HANDOFF_[A-Z_]+)` \| (.*?) \| (.*) \|$", line)
        if match:
            table[match[1]] = (match[2], match[3])
    return table


def expected_default(variable: str) -> str | None:
    """The default cell the code implies, where it is a plain value (None: told in words)."""
    value = getattr(Settings(), variable.removeprefix("HANDOFF_").lower())
    if variable == "HANDOFF_METRICS":
        return "`on`" if value else "`off`"
    if isinstance(value, bool):
        return f"`{int(value)}`"
    if isinstance(value, int | float):
        return f"`{value:g}`"
    if isinstance(value, str):
        return f"`{value}`"
    return None


@pytest.mark.parametrize("page", PAGES)
def test_every_setting_is_in_the_table_with_its_default(page: str) -> None:
    table = rows(page)
    missing = [v for v in variables() if v not in table]
    assert not missing, f"{page} lacks {missing}"
    unknown = sorted(set(table) - set(variables()))
    assert not unknown, f"{page} documents settings the code does not read: {unknown}"
    for variable in variables():
        default = expected_default(variable)
        if default is not None:
            assert table[variable][0] == default, (page, variable)


@pytest.mark.parametrize("page", PAGES)
def test_the_smtp_url_row_names_every_option_with_its_default(page: str) -> None:
    meaning = rows(page)["HANDOFF_SMTP_URL"][1]
    for option in mail_settings._OPTIONS:
        assert f"`{option}=" in meaning, (page, option)
    assert f"(default `{mail_settings.DEFAULT_TIMEOUT:g}`" in meaning
    assert f"(default `{mail_settings.DEFAULT_POOL}`, 1 to {mail_settings.MAX_POOL})" in meaning


def test_the_two_pages_agree() -> None:
    assert rows("README.md") == rows("docs/service.md")
