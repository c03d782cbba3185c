"""The `handoff` command as an operator runs it: a real process, real SQLite, real output."""

from __future__ import annotations

import mailbox
import os
import re
import subprocess
from pathlib import Path

import jwt
import pytest
from tests.support.cli import HANDOFF, add_member, environment, handoff, one_line

SECRET = "an-operator-secret-of-at-least-32-bytes"


def test_demo_exits_0_in_a_fresh_folder_and_leaves_its_mail(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    done = handoff("demo", "--dir", str(folder), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "escalation.created" in done.stdout
    assert "already_claimed" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    subjects = {m["Subject"] for m in mailbox.Maildir(str(folder / "mail"), create=False)}
    assert subjects == {
        "Escalation: VPN won't connect after Win update",
        "Escalation: Printer queue stuck on the 3rd floor",
        "Escalation: Mailbox full for the whole sales team",  # the two-tier part (SPEC §14)
    }
    assert "escalation.claimed for" in done.stdout and "signature verified" in done.stdout
    assert "tier 2 (owner, admin) told" in done.stdout
    assert (folder / "handoff.db").exists()
    assert re.search(
        r"the inbox, signed in as Ada \(one-time link\): http://127\.0\.0\.1:\d+/login/\S+",
        done.stdout,
    )
    assert re.search(
        r"the claim link of Ada's email: +http://127\.0\.0\.1:\d+/claim/\S+", done.stdout
    )
    assert f"The folder {folder.resolve()} is kept" in done.stdout
    assert (folder / "handoff.env").stat().st_mode & 0o077 == 0  # it holds the secret


def test_demo_says_its_temporary_folder_is_deleted_unless_kept(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path)}
    gone = handoff("demo", cwd=tmp_path, env=env, timeout=120)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert "is deleted when the demo ends" in gone.stdout and "--keep" in gone.stdout
    assert list(tmp_path.glob("handoff-demo-*")) == []
    kept = handoff("demo", "--keep", cwd=tmp_path, env=env, timeout=120)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    [folder] = tmp_path.glob("handoff-demo-*")
    assert f"The folder {folder} is kept" in kept.stdout
    assert (folder / "handoff.db").exists() and (folder / "handoff.env").exists()


def test_login_link_prints_a_one_time_link_for_a_current_member_only(tmp_path: Path) -> None:
    env = {
        "HANDOFF_JWT_SECRET": SECRET,
        "HANDOFF_PUBLIC_URL": "https://desk.example.com/",
        "HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
    }
    assert handoff("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    added = add_member(
        "acme", "eve", email="eve@acme.test", name="Eve", role="engineer", cwd=tmp_path, env=env
    )
    assert added.returncode == 0, added.stderr
    done = handoff("login-link", "--account", "acme", "--member", "eve", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"https://desk\.example\.com/login/[\w-]{40,}\n", done.stdout)
    unknown = handoff("login-link", "--account", "acme", "--member", "zed", cwd=tmp_path, env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.count("\n") == 1 and "zed is not an active member" in unknown.stderr
    bad_ttl = handoff(
        "login-link", "--account", "acme", "--member", "eve", "--ttl", "0", cwd=tmp_path, env=env
    )
    assert bad_ttl.returncode == 2 and "--ttl" in bad_ttl.stderr


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    done = handoff("demo", "--dir", str(tmp_path), cwd=tmp_path)
    assert (
        one_line(done, 2)
        == f"handoff: demo folder {tmp_path} is not empty; give a new or empty one"
    )
    assert done.stdout == ""  # the error used to go to stdout, with nothing on stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("folder", "says"),
    [
        ("", "--dir: must not be empty (leave it out for a temporary folder)"),
        ("\udcff", "--dir: must be valid UTF-8 (its path is printed and put in the database URL)"),
        (
            "\udcff/sub",
            "--dir: must be valid UTF-8 (its path is printed and put in the database URL)",
        ),
    ],
    ids=["empty", "undecodable", "undecodable-nested"],
)
@pytest.mark.parametrize("occupied", [False, True])
def test_demo_refuses_a_dir_it_cannot_use_before_writing_anything(
    tmp_path: Path, folder: str, says: str, occupied: bool
) -> None:
    """`--dir ''` in an empty folder used to run the demo in the current folder; `--dir $'\\xff'`
    made the folder, printed its progress and ended with `unexpected error (UnicodeEncodeError)`."""
    if occupied:
        (tmp_path / "keep.txt").write_text("mine")
    done = handoff("demo", "--dir", folder, cwd=tmp_path, timeout=120)
    assert one_line(done, 2) == f"handoff: {says}"
    assert done.stdout == ""
    assert [p.name for p in tmp_path.iterdir()] == (["keep.txt"] if occupied else [])


def test_members_add_list_remove_on_sqlite(tmp_path: Path) -> None:
    env = {"HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"}
    added = add_member(
        "acme", "eve", email="eve@acme.test", name="Eve", role="engineer", cwd=tmp_path, env=env
    )
    assert added.returncode == 0, added.stderr
    add_member(
        "acme", "vic", email="vic@acme.test", name="Vic", role="viewer", cwd=tmp_path, env=env
    )
    listed = handoff("members", "list", "--account", "acme", cwd=tmp_path, env=env)
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["eve", "vic"]
    removed = handoff(
        "members", "remove", "--account", "acme", "--id", "vic", cwd=tmp_path, env=env
    )
    assert removed.returncode == 0
    listed = handoff("members", "list", "--account", "acme", cwd=tmp_path, env=env)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["eve"]
    other = handoff("members", "list", "--account", "other", cwd=tmp_path, env=env)
    assert "no members" in other.stdout


def test_bad_member_input_is_one_clear_line_and_changes_nothing(tmp_path: Path) -> None:
    env = {"HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"}
    bad = add_member(
        "acme", "eve", email="nope", name="Eve", role="engineer", cwd=tmp_path, env=env
    )
    assert bad.returncode == 2  # a bad value on the command line is a usage mistake
    assert bad.stderr.strip() == "handoff: --email: must be an address like name@example.com"
    spaced = add_member(
        "acme", "a b", email="ab@acme.test", name="A B", role="engineer", cwd=tmp_path, env=env
    )
    assert spaced.returncode == 2
    assert spaced.stderr.strip() == "handoff: --id: must not contain whitespace"
    assert list(tmp_path.iterdir()) == []  # not even the database
    assert handoff("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    gone = handoff("members", "remove", "--account", "acme", "--id", "ghost", cwd=tmp_path, env=env)
    assert gone.returncode == 1 and "not found" in gone.stderr
    listed = handoff("members", "list", "--account", "acme", cwd=tmp_path, env=env)
    assert "no members" in listed.stdout


def test_a_bad_setting_stops_the_start_with_one_line_naming_it(tmp_path: Path) -> None:
    done = handoff("worker", "--once", cwd=tmp_path, env={"HANDOFF_RETRY_ATTEMPTS": "many"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "handoff: HANDOFF_RETRY_ATTEMPTS='many' is not a whole number"
    ]


def test_token_mints_a_jwt_the_api_accepts(tmp_path: Path) -> None:
    env = {
        "HANDOFF_JWT_SECRET": SECRET,
        "HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
    }
    add_member(
        "acme", "eve", email="eve@acme.test", name="Eve", role="engineer", cwd=tmp_path, env=env
    )
    done = handoff(
        "token", "--account", "acme", "--member", "eve", "--ttl", "60", cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["account_id"]) == ("eve", "acme")
    assert claims["exp"] - claims["iat"] == 60


def test_a_reader_that_went_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """`handoff token … | true`: the pipe is closed before anything is written; the command
    stops as a Unix tool ended by SIGPIPE does (141), with nothing on stderr."""
    env = {
        "HANDOFF_JWT_SECRET": SECRET,
        "HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
    }
    add_member(
        "acme", "eve", email="eve@acme.test", name="Eve", role="engineer", cwd=tmp_path, env=env
    )
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [*HANDOFF, "token", "--account", "acme", "--member", "eve"],
            cwd=tmp_path,
            env=environment(env),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_token_without_a_secret_says_so(tmp_path: Path) -> None:
    done = handoff("token", "--account", "acme", "--member", "eve", cwd=tmp_path)
    assert done.returncode == 2
    assert "HANDOFF_JWT_SECRET" in done.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    """It creates the file in an existing folder (missing folders are refused: see
    test_operator_cli)."""
    (tmp_path / "new").mkdir()
    env = {"HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'new' / 'h.db'}"}
    done = handoff("db", "upgrade", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "schema at revision" in done.stdout
    assert (tmp_path / "new" / "h.db").exists()


@pytest.mark.parametrize("args", [["serve", "--workers", "2"], ["serve", "--workers", "0"]])
def test_serve_refuses_what_it_cannot_do_well(tmp_path: Path, args: list[str]) -> None:
    done = handoff(*args, cwd=tmp_path, env={"HANDOFF_JWT_SECRET": SECRET})
    assert done.returncode == 2
    assert "--workers" in done.stderr


def test_no_command_is_a_usage_mistake_naming_the_commands(tmp_path: Path) -> None:
    """argparse's convention for a missing command (exit 2, on stderr), in the one line every
    error of the command is; `handoff --help` prints the help to stdout with exit 0."""
    done = handoff(cwd=tmp_path)
    assert one_line(done, 2) == (
        "handoff: a command is required: one of serve, worker, db, members, token, login-link, "
        "demo (see handoff --help)"
    )
    assert done.stdout == ""
    helped = handoff("--help", cwd=tmp_path)
    assert helped.returncode == 0 and "serve" in helped.stdout and "demo" in helped.stdout
    assert list(tmp_path.iterdir()) == []
