"""The seed-style reference app (SPEC §9 B6), run as it is from its own folder in its own venv.

The reference lives outside this repo (`../shared/peer/` beside the checkout, or `BENCH_PEER_DIR`)
and is never imported or copied: the harness makes a venv for it under the user's cache folder
(`$XDG_CACHE_HOME/handoff-bench/`, or `BENCH_CACHE_DIR`), installing the packages its README's
`pip install` line names, seeds a fresh PostgreSQL database with its own `seed` command and starts
it with uvicorn as the README says. The venv is kept between runs, keyed by those packages and this
Python's version; its process is stopped by its own pid.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from attrs import define

from bench.stack import ROOT, BenchError, Context, Databases, free_port, terminate
from bench.wire import HttpConnection, answers

APP = "seedstyle_app"
INSTALL_SECONDS = 600.0
SEED_SECONDS = 120.0
START_SECONDS = 30.0
NOTES = "Stuck on the auth handshake; logs attached in the session"


def peer_dir() -> Path:
    """The reference's folder: BENCH_PEER_DIR, else `shared/peer` beside (or above) the checkout."""
    given = os.environ.get("BENCH_PEER_DIR")
    candidates = (
        [Path(given)]
        if given
        else [ROOT.parent / "shared" / "peer", ROOT.parent.parent / "shared" / "peer"]
    )
    for folder in candidates:
        if (folder / f"{APP}.py").is_file():
            return folder.resolve()
    shown = ", ".join(str(c) for c in candidates)
    raise BenchError(f"the seed-style reference ({APP}.py) is not in {shown}; set BENCH_PEER_DIR")


def requirements(readme: Path) -> list[str]:
    """The packages the reference's README installs (its `pip install ...` line)."""
    for line in readme.read_text().splitlines():
        if not line.strip().startswith("pip install "):
            continue
        words = shlex.split(line.split("#", 1)[0])
        if words[:2] == ["pip", "install"]:
            found = [w for w in words[2:] if not w.startswith("-")]
            if found:
                return found
    raise BenchError(f"no `pip install` line in {readme}")


def _cache_dir() -> Path:
    given = os.environ.get("BENCH_CACHE_DIR")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "handoff-bench"


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without the repo on the path or another venv, plus `extra`."""
    dropped = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in dropped and not k.startswith(("HANDOFF_", "BENCH_"))
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the reference's folder may be read-only
    env.update(extra)
    return env


async def _run(argv: list[str], *, log: Path, timeout: float, what: str, **kw: Any) -> bytes:
    """Run a command to its end; its stdout. Stderr goes to `log`; a failure raises BenchError."""
    with log.open("ab") as err:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, **kw
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise BenchError(f"{what} did not finish in {timeout:g} s (log: {log})") from None
    if process.returncode != 0:
        raise BenchError(f"{what} failed ({process.returncode}); its log: {log}")
    return out


async def venv_python(folder: Path, log: Path) -> Path:
    """The Python of the reference's venv, made (once per set of packages) if need be."""
    packages = requirements(folder / "README.md")
    key = hashlib.sha256(json.dumps([packages, sys.version]).encode()).hexdigest()[:12]
    home = _cache_dir() / f"peer-venv-{key}"
    python = home / "bin" / "python"
    if (home / ".ready").exists() and python.exists():
        return python
    building = home.with_name(home.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    try:
        await _run([sys.executable, "-m", "venv", str(building)], log=log,
                   timeout=INSTALL_SECONDS, what="making the reference's venv")  # fmt: skip
        await _run([str(building / "bin" / "python"), "-m", "pip", "install", "-q", *packages],
                   log=log, timeout=INSTALL_SECONDS, what="pip install for the reference",
                   env=_clean_env({}))  # fmt: skip
        # Built aside and renamed, so that a half-made venv is never taken for a ready one. The
        # scripts in bin/ keep the old folder in their first line; the harness runs only
        # `python -m ...`, which finds its venv from where the interpreter is.
        shutil.rmtree(home, ignore_errors=True)
        building.rename(home)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    (home / ".ready").write_text(" ".join(packages) + "\n")
    return python


class Peer:
    """The seed-style reference served by uvicorn in a subprocess, on its own database."""

    def __init__(
        self, python: Path, folder: Path, *, database_url: str, smtp_port: int, workdir: Path
    ) -> None:
        self.python = python
        self.folder = folder
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "peer.log"
        self._env = _clean_env({
            "PEER_DB_URL": database_url,
            "PEER_SMTP_HOST": "127.0.0.1",
            "PEER_SMTP_PORT": str(smtp_port),
        })  # fmt: skip
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError("the reference is not running")
        return self.process.pid

    async def seed(self, accounts: int, members: int, sessions: int) -> list[dict[str, int]]:
        """Its own `seed` command: per account, the escalator, the other members and sessions."""
        out = await _run(
            [str(self.python), f"{APP}.py", "seed", "--accounts", str(accounts),
             "--members", str(members), "--sessions", str(sessions)],
            log=self.log_path, timeout=SEED_SECONDS, what="seeding the reference",
            cwd=self.folder, env=self._env,
        )  # fmt: skip
        try:
            found: list[dict[str, int]] = json.loads(out.decode().strip().splitlines()[-1])[
                "accounts"
            ]
        except (ValueError, KeyError, IndexError) as exc:
            raise BenchError(f"the reference's seed printed no accounts: {out[-300:]!r}") from exc
        return found

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                str(self.python), "-m", "uvicorn", f"{APP}:app", "--host", "127.0.0.1",
                "--port", str(self.port), "--app-dir", str(self.folder),
                env=self._env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        exited = asyncio.ensure_future(self.process.wait())
        try:
            for _ in range(int(START_SECONDS / 0.1)):
                if exited.done():
                    raise BenchError(f"the reference exited at start (log: {self.log_path})")
                if await answers(self.port, "/openapi.json"):
                    return
                await asyncio.wait({exited}, timeout=0.1)
        finally:
            exited.cancel()
        await self.stop()
        raise BenchError(f"the reference was not ready in {START_SECONDS:g} s")

    async def stop(self) -> None:
        process, self.process = self.process, None
        await terminate(process)


@define
class Reference:
    """The seed-style reference, seeded: per client, its session ids, escalator and recipients."""

    peer: Peer
    sessions: list[list[int]]
    escalators: list[int]
    recipients: list[set[str]]

    def expect(self, client: int, _: str) -> tuple[set[str], set[str]]:
        """Who should be told of an escalation by `client`: its recipients, by email."""
        return self.recipients[client], set()

    def part(self, take: slice) -> list[list[bytes]]:
        """Per client (account), the escalation requests of its sessions[take], as its README
        says: the caller named by X-User-Id, 201 once the emails were handed to SMTP."""
        conn = HttpConnection("127.0.0.1", self.peer.port)
        body = {"intent": "escalate", "engineer_notes": NOTES}
        out = []
        for sessions, escalator in zip(self.sessions, self.escalators, strict=True):
            who = {"X-User-Id": str(escalator)}
            path = "/api/v1/ai-sessions/{}/handoff"
            out.append(
                [
                    conn.encode("POST", path.format(s), body=body, headers=who)
                    for s in sessions[take]
                ]
            )
        return out


async def seeded(ctx: Context, accounts: int, recipients: int, sessions: int) -> Reference:
    """The reference in its venv on a fresh database, seeded with `accounts` accounts of one
    escalator, `recipients` eligible members and `sessions` sessions each; not yet started."""
    folder = peer_dir()
    python = await venv_python(folder, ctx.workdir / "peer-venv.log")
    name = await ctx.databases.empty("b6_peer")
    peer = Peer(python, folder, database_url=Databases.url(name), smtp_port=ctx.sink.port,
                workdir=ctx.workdir)  # fmt: skip
    made = await peer.seed(accounts, recipients + 1, sessions)
    if len(made) != accounts:
        raise BenchError(f"the reference seeded {len(made)} accounts, not {accounts}")
    told = []
    for a in made:
        first = int(a["escalator_id"])
        # Its seed numbers an account's members from the escalator on; the next ones are eligible.
        told.append(
            {f"m{first + k}@acct{a['account_id']}.example" for k in range(1, recipients + 1)}
        )
    return Reference(
        peer=peer,
        sessions=[list(range(a["first_session_id"], a["last_session_id"] + 1)) for a in made],
        escalators=[int(a["escalator_id"]) for a in made],
        recipients=told,
    )
