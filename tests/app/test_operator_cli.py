"""SPEC §13 through the real `handoff` command: every error an operator can meet at the start is
one line on stderr with a non-zero exit code, and never a traceback."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest
from tests.support.cli import add_member, handoff, one_line
from tests.support.databases import fresh_database
from tests.support.net import free_port
from tests.support.process import serving_process

SECRET = "an-operator-secret-of-at-least-32-bytes"


def sqlite(tmp_path: Path, query: str = "") -> dict[str, str]:
    return {
        "HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}{query}",
        "HANDOFF_JWT_SECRET": SECRET,
        "HANDOFF_MAILDIR": str(tmp_path / "mail"),
    }


@pytest.mark.parametrize(
    ("port", "says"),
    [
        ("99999", "argument --port: 99999 is not a port number (1 to 65535)"),
        ("0", "argument --port: 0 is not a port number (1 to 65535)"),
        ("http", "argument --port: 'http' is not a port number"),
    ],
)
def test_serve_refuses_a_port_out_of_range_in_one_line(
    tmp_path: Path, port: str, says: str
) -> None:
    done = handoff("serve", "--port", port, cwd=tmp_path, env=sqlite(tmp_path))
    assert says in one_line(done, 2)
    assert not (tmp_path / "h.db").exists()  # refused before anything started


def test_serve_on_a_port_in_use_says_so_in_one_line_before_starting_anything(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = handoff("serve", "--port", str(port), cwd=tmp_path, env=sqlite(tmp_path))
    line = one_line(done, 1)
    assert line == f"handoff: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert "uvicorn" not in done.stdout.lower() + done.stderr.lower()
    assert "startup" not in done.stdout.lower() + done.stderr.lower()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        (
            "HANDOFF_BODY_LIMIT_BYTES",
            "-1",
            "handoff: HANDOFF_BODY_LIMIT_BYTES='-1' must be between 1024 and 67108864",
        ),
        ("HANDOFF_METRICS", "maybe", "handoff: HANDOFF_METRICS='maybe' must be on or off"),
        (
            "HANDOFF_DATABASE_URL",
            "postgresql+asyncpg://h@127.0.0.1/h?pool_size=abc",
            "handoff: HANDOFF_DATABASE_URL: database URL option pool_size='abc' must be an integer",
        ),
        (
            "HANDOFF_DATABASE_URL",
            "postgresql+asyncpg://h@127.0.0.1/h?poolsize=3",
            "handoff: HANDOFF_DATABASE_URL: database URL option(s) poolsize are not known; "
            "pool options are pool_size, max_overflow, pool_timeout, pool_recycle, pool_pre_ping",
        ),
        (
            "HANDOFF_SMTP_URL",
            "smtp://relay:abc",
            "handoff: HANDOFF_SMTP_URL: SMTP URL has a bad port or address: "
            "Port could not be cast to integer value as 'abc'",
        ),
        (
            "HANDOFF_SMTP_URL",
            "smtp://relay:25?timeout=soon",
            "handoff: HANDOFF_SMTP_URL: SMTP URL option timeout='soon' must be a number of seconds",
        ),
        (
            "HANDOFF_DATABASE_URL",
            "mysql://h@127.0.0.1/h",
            "handoff: HANDOFF_DATABASE_URL has scheme 'mysql'; use sqlite+aiosqlite://, "
            "postgresql+asyncpg:// or memory://",
        ),
    ],
)
@pytest.mark.parametrize("command", [["serve"], ["members", "list", "--account", "acme"]])
def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, name: str, value: str, says: str, command: list[str]
) -> None:
    done = handoff(*command, cwd=tmp_path, env={**sqlite(tmp_path), name: value})
    assert one_line(done, 2) == says


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (
            "sqlite+aiosqlite:///\udcff.db",
            "handoff: HANDOFF_DATABASE_URL must be valid UTF-8 (it holds bytes that are not)",
        ),
        (
            "postgresql+asyncpg://postgres@[::1/x",
            "handoff: HANDOFF_DATABASE_URL is not a URL: Invalid IPv6 URL",
        ),
        (
            "postgresql+asyncpg://postgres@127.0.0.1:99999/x",
            "handoff: HANDOFF_DATABASE_URL: database URL port 99999 is not a port number "
            "(1 to 65535)",
        ),
        (
            "postgresql+asyncpg://postgres@127.0.0.1/x?connect_timeout=1e999",
            "handoff: HANDOFF_DATABASE_URL: database URL option connect_timeout='1e999' "
            "must be a finite number",
        ),
    ],
    ids=["undecodable-sqlite-path", "unclosed-ipv6", "port-out-of-range", "infinite-timeout"],
)
@pytest.mark.parametrize(
    "command", [["serve"], ["db", "upgrade"], ["members", "list", "--account", "acme"]]
)
def test_a_database_url_no_driver_could_use_is_a_setting_error(
    tmp_path: Path, url: str, says: str, command: list[str]
) -> None:
    """These used to reach the driver and come back as `unexpected error (...)`, exit 1."""
    done = handoff(*command, cwd=tmp_path, env={**sqlite(tmp_path), "HANDOFF_DATABASE_URL": url})
    assert one_line(done, 2) == says
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [["serve"], ["db", "upgrade"], ["worker", "--once"], ["members", "list", "--account", "a"],
     ["members", "add", "--account", "a", "--id", "o", "--email", "o@a.test", "--name", "O",
      "--role", "owner"]],
)  # fmt: skip
def test_a_sqlite_folder_that_does_not_exist_is_refused_and_not_made(
    tmp_path: Path, command: list[str]
) -> None:
    """Creating the file is the command's business; creating the folders a typo in the path
    names is not (they used to appear silently, and `members list` then said "no members")."""
    folder = tmp_path / "no" / "such"
    env = {**sqlite(tmp_path), "HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'h.db'}"}
    done = handoff(*command, cwd=tmp_path, env=env)
    assert one_line(done, 2) == (
        f"handoff: HANDOFF_DATABASE_URL: the folder {folder} of the SQLite database does not "
        "exist or is not a folder; create it first"
    )
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_postgres_url_without_the_driver_names_the_extra_to_install(tmp_path: Path) -> None:
    """An install without `handoff[postgres]`: asyncpg cannot be imported."""
    hidden = tmp_path / "no-asyncpg"
    (hidden / "asyncpg").mkdir(parents=True)
    (hidden / "asyncpg" / "__init__.py").write_text("raise ImportError('no asyncpg here')\n")
    env = {
        **sqlite(tmp_path),
        "HANDOFF_DATABASE_URL": "postgresql://h@127.0.0.1/h",
        "PYTHONPATH": str(hidden),
    }
    for command in (["serve"], ["db", "upgrade"], ["members", "list", "--account", "a"]):
        done = handoff(*command, cwd=tmp_path, env=env)
        assert one_line(done, 2) == (
            "handoff: HANDOFF_DATABASE_URL: PostgreSQL needs the asyncpg driver: "
            "pip install 'handoff[postgres]'"
        )


def test_pool_options_in_a_sqlite_url_serve_every_command(tmp_path: Path) -> None:
    env = sqlite(tmp_path, "?pool_size=3")
    upgraded = handoff("db", "upgrade", cwd=tmp_path, env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    added = add_member(
        "acme", "olga", email="olga@acme.test", name="Olga", role="owner", cwd=tmp_path, env=env
    )
    assert added.returncode == 0, added.stderr
    assert handoff("worker", "--once", cwd=tmp_path, env=env).stdout.strip() == "sent 0"


def test_token_refuses_a_member_who_is_unknown_inactive_or_removed(tmp_path: Path) -> None:
    env = sqlite(tmp_path)
    add_member(
        "acme", "eve", email="eve@a.test", name="Eve", role="engineer", cwd=tmp_path, env=env
    )
    handoff(
        "members", "add", "--account", "acme", "--id", "ivan", "--email", "ivan@a.test",
        "--name", "Ivan", "--role", "engineer", "--inactive", cwd=tmp_path, env=env,
    )  # fmt: skip
    add_member(
        "acme", "dora", email="dora@a.test", name="Dora", role="admin", cwd=tmp_path, env=env
    )
    handoff("members", "remove", "--account", "acme", "--id", "dora", cwd=tmp_path, env=env)

    def token(member: str, account: str = "acme") -> subprocess.CompletedProcess[str]:
        return handoff("token", "--account", account, "--member", member, cwd=tmp_path, env=env)

    assert one_line(token("nobody"), 1) == (
        "handoff: member nobody of account acme is unknown: no token for them "
        "(add them with `handoff members add`)"
    )
    assert "eve of account other is unknown" in one_line(token("eve", "other"), 1)
    assert "ivan of account acme is inactive or removed" in one_line(token("ivan"), 1)
    assert "dora of account acme is inactive or removed" in one_line(token("dora"), 1)
    for refused in ("nobody", "ivan", "dora"):
        assert token(refused).stdout == ""  # nothing that looks like a token
    good = token("eve")
    assert good.returncode == 0 and good.stdout.count(".") == 2


@pytest.mark.parametrize(
    ("member_id", "says"),
    [
        ("ops/team2", "handoff: --id: must not contain '/' (ids are URL path segments)"),
        ("..", "handoff: --id: must not be '.' or '..' (ids are URL path segments)"),
        ("a b", "handoff: --id: must not contain whitespace"),
        ("bell\x07", "handoff: --id: must not contain control characters"),
    ],
)
def test_a_member_id_the_api_could_not_address_is_refused_where_it_is_made(
    tmp_path: Path, member_id: str, says: str
) -> None:
    env = sqlite(tmp_path)
    done = add_member(
        "acme", member_id, email="x@a.test", name="X", role="owner", cwd=tmp_path, env=env
    )
    assert one_line(done, 2) == says  # a bad value on the command line: a usage mistake
    assert list(tmp_path.iterdir()) == []  # refused before the store was opened (or made)


def test_an_account_id_follows_the_same_rule(tmp_path: Path) -> None:
    done = add_member(
        "acme/eu",
        "olga",
        email="o@a.test",
        name="O",
        role="owner",
        cwd=tmp_path,
        env=sqlite(tmp_path),
    )
    assert (
        one_line(done, 2) == "handoff: --account: must not contain '/' (ids are URL path segments)"
    )


UNDECODABLE = "\udcff"  # what Python makes of the byte 0xff in argv (and gives back on exec)
NOT_UNICODE, EMPTY = "must be valid Unicode (no surrogates)", "must not be empty"


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A migrated SQLite database with one member, eve of acme: the commands below change nothing
    in it."""
    folder = tmp_path_factory.mktemp("acme")
    env = sqlite(folder)
    added = add_member(
        "acme", "eve", email="eve@a.test", name="Eve", role="owner", cwd=folder, env=env
    )
    assert added.returncode == 0, added.stderr
    return folder, env


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["members", "list", "--account", UNDECODABLE], f"--account: {NOT_UNICODE}"),
        (["members", "list", "--account", ""], f"--account: {EMPTY}"),
        (["members", "remove", "--account", UNDECODABLE, "--id", "eve"],
         f"--account: {NOT_UNICODE}"),
        (["members", "remove", "--account", "acme", "--id", UNDECODABLE], f"--id: {NOT_UNICODE}"),
        (["members", "remove", "--account", "acme", "--id", ""], f"--id: {EMPTY}"),
        (["members", "add", "--account", UNDECODABLE, "--id", "x", "--email", "x@a.test",
          "--name", "X", "--role", "owner"], f"--account: {NOT_UNICODE}"),
        (["token", "--account", "acme", "--member", UNDECODABLE], f"--member: {NOT_UNICODE}"),
        (["token", "--account", UNDECODABLE, "--member", "eve"], f"--account: {NOT_UNICODE}"),
        (["token", "--account", "acme", "--member", ""], f"--member: {EMPTY}"),
        (["login-link", "--account", "acme", "--member", UNDECODABLE], f"--member: {NOT_UNICODE}"),
        (["login-link", "--account", "", "--member", "eve"], f"--account: {EMPTY}"),
        (["members", "list", "--account", "acme/eu"],
         "--account: must not contain '/' (ids are URL path segments)"),
    ],
    ids=[
        "list-undecodable-account",
        "list-empty-account",
        "remove-undecodable-account",
        "remove-undecodable-id",
        "remove-empty-id",
        "add-undecodable-account",
        "token-undecodable-member",
        "token-undecodable-account",
        "token-empty-member",
        "login-link-undecodable-member",
        "login-link-empty-account",
        "list-slash-account",
    ],
)  # fmt: skip
def test_every_account_and_member_option_holds_to_the_id_rule(
    acme: tuple[Path, dict[str, str]], args: list[str], says: str
) -> None:
    """`members add` always refused such ids as a usage mistake; every other command that takes
    an account or member id does the same, before it asks the store anything."""
    folder, env = acme
    done = handoff(*args, cwd=folder, env=env)
    assert one_line(done, 2) == f"handoff: {says}"
    assert done.stdout == ""
    listed = handoff("members", "list", "--account", "acme", cwd=folder, env=env)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["eve"]


async def test_undecodable_ids_on_postgresql_are_the_same_usage_mistake(tmp_path: Path) -> None:
    """On PostgreSQL such an id used to reach asyncpg and come back as a raw SQL error."""
    async with fresh_database("handoff_cli_ids") as url:
        env = {**sqlite(tmp_path), "HANDOFF_DATABASE_URL": url}
        assert handoff("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
        listed = handoff("members", "list", "--account", UNDECODABLE, cwd=tmp_path, env=env)
        assert one_line(listed, 2) == f"handoff: --account: {NOT_UNICODE}"
        minted = handoff(
            "token", "--account", "acme", "--member", UNDECODABLE, cwd=tmp_path, env=env
        )
        assert one_line(minted, 2) == f"handoff: --member: {NOT_UNICODE}"


LONG_NAME = "x" * 100_000


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--email", UNDECODABLE, f"--email: {NOT_UNICODE}"),
        ("--email", "", f"--email: {EMPTY}"),
        ("--email", "nope", "--email: must be an address like name@example.com"),
        ("--email", "a<b>@acme.test", "--email: 'a<b>@acme.test' cannot be sent to: "),
        ("--name", "", f"--name: {EMPTY}"),
        ("--name", "a\x01b", "--name: must be one line, without control characters"),
        ("--name", LONG_NAME, "--name: must be at most 200 characters"),
        ("--name", UNDECODABLE, f"--name: {NOT_UNICODE}"),
    ],
    ids=["email-undecodable", "email-empty", "email-no-at", "email-unsendable", "name-empty",
         "name-control", "name-100k", "name-undecodable"],
)  # fmt: skip
def test_members_add_checks_every_option_before_the_store_is_made(
    tmp_path: Path, option: str, value: str, says: str
) -> None:
    """These were refused with the right line, but only once ./handoff.db (the default store)
    had been created."""
    values = {"--email": "eve@a.test", "--name": "Eve", option: value}
    done = add_member(
        "acme", "eve", email=values["--email"], name=values["--name"], role="owner",
        cwd=tmp_path, env={"HANDOFF_JWT_SECRET": SECRET},
    )  # fmt: skip
    assert one_line(done, 2).startswith(f"handoff: {says}")
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [["members", "list", "--account", "acme"],
     ["members", "remove", "--account", "acme", "--id", "eve"],
     ["token", "--account", "acme", "--member", "eve"],
     ["login-link", "--account", "acme", "--member", "eve"]],
    ids=["list", "remove", "token", "login-link"],
)  # fmt: skip
def test_a_command_that_only_reads_never_makes_the_store(tmp_path: Path, args: list[str]) -> None:
    """They used to create ./handoff.db (and `members list` said "no members"): a store that
    does not exist is said so, and left for `db upgrade` (or `members add`) to make."""
    done = handoff(*args, cwd=tmp_path, env={"HANDOFF_JWT_SECRET": SECRET})
    assert one_line(done, 1) == (
        "handoff: the database sqlite+aiosqlite:///./handoff.db does not exist; "
        "run `handoff db upgrade` first"
    )
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_command_that_only_reads_says_an_empty_file_has_no_schema(tmp_path: Path) -> None:
    (tmp_path / "h.db").touch()
    done = handoff("members", "list", "--account", "acme", cwd=tmp_path, env=sqlite(tmp_path))
    assert one_line(done, 1) == (
        f"handoff: the database sqlite+aiosqlite:///{tmp_path / 'h.db'} has no handoff schema; "
        "run `handoff db upgrade` first"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["h.db"]
    assert (tmp_path / "h.db").stat().st_size == 0


@pytest.mark.parametrize(
    ("host", "says"),
    [
        (UNDECODABLE, "argument --host: '\\udcff' is not a host name or an address"),
        ("", "argument --host: must not be empty"),
        ("a b", "argument --host: 'a b' is not a host name or an address"),
        ("host;rm", "argument --host: 'host;rm' is not a host name or an address"),
    ],
)
def test_serve_refuses_a_host_no_resolver_could_take(tmp_path: Path, host: str, says: str) -> None:
    """`--host $'\\xff'` used to end in `unexpected error (UnicodeError)`, exit 1."""
    done = handoff("serve", "--host", host, cwd=tmp_path, env=sqlite(tmp_path))
    assert one_line(done, 2) == f"handoff serve: {says} (see handoff serve --help)"
    assert list(tmp_path.iterdir()) == []


def test_a_usage_mistake_is_one_line_too(tmp_path: Path) -> None:
    done = handoff("members", "add", "--account", "acme", cwd=tmp_path)
    line = one_line(done, 2)
    assert line.startswith("handoff members add: the following arguments are required: --id")
    assert line.endswith("(see handoff members add --help)")


def test_a_sqlite_file_migrated_by_a_newer_release_is_refused_in_one_line(tmp_path: Path) -> None:
    env = sqlite(tmp_path)
    assert handoff("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    with sqlite3.connect(tmp_path / "h.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'f00d'")
    for command in (["serve", "--port", str(free_port())], ["members", "list", "--account", "a"],
                    ["db", "upgrade"]):  # fmt: skip
        done = handoff(*command, cwd=tmp_path, env=env)
        assert one_line(done, 1) == (
            f"handoff: the database sqlite+aiosqlite:///{tmp_path / 'h.db'} has schema revision "
            "f00d, which this release does not know; a newer release migrated it: "
            "upgrade handoff instead"
        )


def test_a_sqlite_folder_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    env = {**sqlite(tmp_path), "HANDOFF_DATABASE_URL": f"sqlite:///{tmp_path / 'file' / 'h.db'}"}
    for command in (["serve", "--port", str(free_port())], ["members", "list", "--account", "a"]):
        line = one_line(handoff(*command, cwd=tmp_path, env=env), 2)
        assert line == (
            f"handoff: HANDOFF_DATABASE_URL: the folder {tmp_path / 'file'} of the SQLite "
            "database does not exist or is not a folder; create it first"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_serve_starts_on_a_new_sqlite_file_with_pool_options(tmp_path: Path) -> None:
    with serving_process(sqlite(tmp_path, "?pool_size=3&max_overflow=1"), tmp_path) as served:
        ready = httpx.get(f"{served.url}/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
    assert "Traceback" not in served.log
