"""The `handoff` command as an operator runs it: a real process with only the HANDOFF_* settings
the test gives (none leak in from the environment the tests run in)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

HANDOFF = [sys.executable, "-m", "handoff_app.cli"]


def environment(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any HANDOFF_* variable, plus `settings`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_")}
    return {**clean, **(settings or {})}


def handoff(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `handoff ARGS` to the end; `env` holds its HANDOFF_* settings."""
    return subprocess.run(
        [*HANDOFF, *args],
        cwd=cwd,
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def add_member(
    account: str,
    member: str,
    *,
    email: str,
    name: str,
    role: str,
    cwd: Path,
    env: Mapping[str, str],
) -> subprocess.CompletedProcess[str]:
    """`handoff members add` with every option spelled out."""
    return handoff(
        "members", "add", "--account", account, "--id", member, "--email", email,
        "--name", name, "--role", role, cwd=cwd, env=env,
    )  # fmt: skip


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The single line an error leaves on stderr, once the exit code and the absence of any
    traceback are checked."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]
