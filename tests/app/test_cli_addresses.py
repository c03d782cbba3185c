"""`handoff members add` holds addresses to the same check as the HTTP API: one line, non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.cli import add_member, handoff


@pytest.mark.parametrize("address", ["a<b>@acme.test", "a@b@acme.test"])
def test_an_address_nothing_could_send_to_is_one_line_and_changes_nothing(
    tmp_path: Path, address: str
) -> None:
    env = {"HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"}

    bad = add_member(
        "acme", "eve", email=address, name="Eve", role="engineer", cwd=tmp_path, env=env
    )

    assert bad.returncode == 2
    assert bad.stderr.startswith("handoff: --email: ") and bad.stderr.count("\n") == 1
    assert address in bad.stderr and "Traceback" not in bad.stderr
    assert list(tmp_path.iterdir()) == []  # refused before the store was opened (or made)


def test_an_internationalised_address_is_stored_as_given(tmp_path: Path) -> None:
    env = {"HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"}

    added = add_member(
        "acme", "jose", email="jösé@exämple.test", name="José", role="engineer", cwd=tmp_path,
        env=env,
    )  # fmt: skip

    assert added.returncode == 0, added.stderr
    listed = handoff("members", "list", "--account", "acme", cwd=tmp_path, env=env)
    assert "<jösé@exämple.test>" in listed.stdout
