"""What the benchmarks run against, all on 127.0.0.1: fresh PostgreSQL databases, the real server
(uvicorn, `handoff serve`) in a subprocess, and an aiosmtpd sink in a process of its own.

Every process started here is stopped by its own pid; every database made here is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
from attrs import define

from bench.cpu import alive, process_tree
from bench.wire import answers

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / "bench" / "hooks"  # its sitecustomize.py installs bench.hooks in every process
OUT = ROOT / "bench" / "out"
PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
SECRET = "bench-" + "s" * 40  # a throwaway HS256 key for tokens the harness mints itself
START_SECONDS = 30.0
STOP_SECONDS = 20.0
OUTLIVE_SECONDS = 2.0  # how long a server's process may outlive it before SIGKILL


class BenchError(RuntimeError):
    """Something the harness needs did not work; the message says what."""


@define
class Context:
    """What every benchmark of one run shares."""

    databases: Databases
    sink: Sink
    workdir: Path
    quick: bool
    profile: bool = False

    def server(self, database: str, name: str, **options: Any) -> Server:
        """A server on `database`, mailing the sink, logging and profiling into the workdir."""
        return Server(
            Databases.url(database), smtp_port=self.sink.port, name=name, workdir=self.workdir,
            profile=self.profile, **options,
        )  # fmt: skip


def raise_nofile() -> int:
    """Lift this process's open-file limit to its hard limit (1,000 streams need 1,000 sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise BenchError(f"no VmRSS for pid {pid}")


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child: this one, the repo on the path, and no stray HANDOFF_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_")}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    env.update(extra)
    return env


# --- PostgreSQL --------------------------------------------------------------------------------


class Databases:
    """Fresh databases with one random prefix per run; `drop_all` removes every one of them."""

    def __init__(self) -> None:
        self.prefix = f"handoff_bench_{secrets.token_hex(4)}"
        self.made: list[str] = []

    @staticmethod
    def dsn(name: str) -> str:
        return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"

    @classmethod
    def url(cls, name: str) -> str:
        return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"

    async def _admin(self) -> Any:
        last: Exception | None = None
        for maintenance in ("postgres", "test"):
            try:
                return await asyncpg.connect(self.dsn(maintenance), timeout=10)
            except Exception as exc:  # try the next maintenance database
                last = exc
        raise BenchError(f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable: {last}")

    async def server_version(self) -> str:
        conn = await self._admin()
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    async def fresh(self, label: str) -> str:
        """A new database with the handoff schema (`handoff db upgrade`); returns its name."""
        from handoff_sql import ensure_schema

        name = await self.empty(label)
        await ensure_schema(self.url(name))
        return name

    async def empty(self, label: str) -> str:
        """A new database with no schema (for a program that makes its own); returns its name."""
        name = f"{self.prefix}_{label}"
        conn = await self._admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.made.append(name)
        return name

    async def vacuum(self) -> None:
        """VACUUM (ANALYZE) every database of this run, as autovacuum would between two storms.

        This machine's PostgreSQL runs with autovacuum off (its CI configuration), so without this
        a storm would meet every dead row and stale statistic that the runs before it left; a
        deployment runs with autovacuum on, PostgreSQL's default."""
        for name in self.made:
            conn = await asyncpg.connect(self.dsn(name), timeout=10)
            try:
                await conn.execute("VACUUM (ANALYZE)")
            finally:
                await conn.close()

    async def drop_all(self) -> None:
        if not self.made:
            return
        conn = await self._admin()
        try:
            for name in self.made:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.made.clear()


# --- the server --------------------------------------------------------------------------------


class Server:
    """`handoff serve` in a subprocess (through bench.server), bench.hooks in each of its
    processes (the commit log, the SQL log): with `workers` > 1, uvicorn's supervisor and its
    `workers` server processes, all stopped with it."""

    def __init__(
        self,
        database_url: str,
        *,
        smtp_port: int | None,
        name: str,
        workdir: Path,
        worker: bool = True,
        sql_log: bool = False,
        env: Mapping[str, str] | None = None,
        profile: bool = False,
        split: int = 0,
        workers: int = 1,
        worker_nice: int = 0,
        sends: bool = True,
    ) -> None:
        """`split` > 0: the PostgreSQL layout for storms (README, "Running on PostgreSQL"): `serve
        --no-worker` sends nothing itself (HANDOFF_DISPATCH_CONCURRENCY=0) and one `handoff
        worker` process beside it sends `split` batches at once, woken by each commit.
        `workers` > 1: `serve --workers N` (PostgreSQL only), `pid` being uvicorn's supervisor.
        `worker_nice`: the worker runs under `nice -n` that (README: answers first in a storm).
        `sends` False (with `split`): no worker is started, so the server only answers and its
        notices stay in the outbox (B6's requests beside raw aiosmtplib)."""
        self.port = free_port()
        self.split = split
        self.sends = sends
        self.worker_nice = worker_nice
        self.name = name
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.commit_log = workdir / f"{name}.commits"
        self.sql_log = workdir / f"{name}.sql.jsonl" if sql_log else None
        settings = {
            "HANDOFF_DATABASE_URL": database_url,
            "HANDOFF_JWT_SECRET": SECRET,
            "HANDOFF_PUBLIC_URL": self.base_url,
            "HANDOFF_MAILDIR": str(workdir / f"{name}-mail"),
            "BENCH_COMMIT_LOG": str(self.commit_log),
            **({"HANDOFF_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}"} if smtp_port else {}),
            **({"BENCH_SQL_LOG": str(self.sql_log)} if self.sql_log else {}),
            **(env or {}),
        }
        if split:
            settings["HANDOFF_DISPATCH_CONCURRENCY"] = "0"
            settings["HANDOFF_WORKER_LANES"] = str(split)
            settings["HANDOFF_WORKER_POLL_SECONDS"] = "5"
            worker = False
        self._env = child_env(settings)
        # Only the server's processes load the hooks at start, not the worker beside it.
        self._server_env = {
            **self._env,
            "PYTHONPATH": f"{HOOKS}{os.pathsep}{self._env['PYTHONPATH']}",
        }
        self._workdir = workdir
        self.workers = workers
        self._args = [
            "--port", str(self.port), *([] if worker else ["--no-worker"]),
            *(["--workers", str(workers)] if workers > 1 else []),
        ]  # fmt: skip
        self._tree: set[tuple[int, int]] = set()  # the server's processes, seen while it ran
        self._worker: asyncio.subprocess.Process | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._profile = workdir / f"{name}.pyspy.txt" if profile else None
        self._spy: subprocess.Popen[bytes] | None = None
        self._worker_spy: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f"server {self.name} is not running")
        return self.process.pid

    async def start(self) -> None:
        if self.split and self.sends:
            worker_log = self._workdir / f"{self.name}-worker.log"
            with worker_log.open("wb") as log:
                nice = ["nice", "-n", str(self.worker_nice)] if self.worker_nice else []
                self._worker = await asyncio.create_subprocess_exec(
                    *nice, sys.executable, "-m", "handoff_app.cli", "worker",
                    env=self._env, cwd=self._workdir, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.server", *self._args,
                env=self._server_env, cwd=self._workdir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        exited = asyncio.ensure_future(self.process.wait())
        try:
            for _ in range(int(START_SECONDS / 0.1)):
                if exited.done():
                    raise BenchError(f"server {self.name} exited at start:\n{self.log_tail()}")
                if await answers(self.port, "/readyz"):
                    self._tree.update(process_tree(self.process.pid))
                    if self._profile is not None:
                        from bench.profile import attach

                        many = self.workers > 1  # uvicorn's children do the work
                        self._spy = attach(self.process.pid, self._profile, subprocesses=many)
                        if self._worker is not None:
                            self._worker_spy = attach(self._worker.pid, self._worker_profile)
                    return
                await asyncio.wait({exited}, timeout=0.1)
        finally:
            exited.cancel()
        await self.stop()
        raise BenchError(f"server {self.name} was not ready in {START_SECONDS:g} s")

    def signal(self, signum: int) -> None:
        """Send `signum` to each of the server's processes (SIGUSR1: stop the SQL log)."""
        if self.process is not None and self.process.returncode is None:
            for pid, _ in process_tree(self.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    async def stop(self) -> None:
        spy, self._spy = self._spy, None
        if spy is not None and self._profile is not None:
            from bench.profile import detach

            await asyncio.to_thread(detach, spy, self._profile)
        worker_spy, self._worker_spy = self._worker_spy, None
        if worker_spy is not None:
            from bench.profile import detach

            await asyncio.to_thread(detach, worker_spy, self._worker_profile)
        worker, self._worker = self._worker, None
        await terminate(worker)
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            self._tree.update(process_tree(process.pid))
        await terminate(process)
        await self._outlived()

    async def _outlived(self) -> None:
        """Stop any process of the server that outlived it (uvicorn's supervisor stops its
        children before it exits, unless it was killed): a short grace, then SIGKILL."""
        tree, self._tree = self._tree, set()
        if not await _gone(tree, OUTLIVE_SECONDS):
            for pid, _ in filter(alive, tree):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not await _gone(tree, STOP_SECONDS):
                left = [pid for pid, _ in filter(alive, tree)]
                raise BenchError(f"server {self.name}: processes {left} survived SIGKILL")

    @property
    def _worker_profile(self) -> Path:
        return self._workdir / f"{self.name}-worker.pyspy.txt"

    @property
    def worker_pid(self) -> int | None:
        """The `handoff worker` process beside the server (the storm layout), if any."""
        return None if self._worker is None else self._worker.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def commits(self) -> dict[str, float]:
        """handoff id → monotonic time its escalation's COMMIT returned (bench.server writes it)."""
        found: dict[str, float] = {}
        with contextlib.suppress(FileNotFoundError):
            for line in self.commit_log.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3:
                    found[parts[2]] = float(parts[1])
        return found

    async def commit_of(self, handoff_id: str, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.commits().get(handoff_id)
            if found is not None:
                return found
            await asyncio.sleep(0.01)
        raise BenchError(f"no commit logged for handoff {handoff_id} by server {self.name}")


async def _gone(processes: set[tuple[int, int]], seconds: float) -> bool:
    """Wait up to `seconds` for every process (pid, start time) to exit; whether they all did."""
    for _ in range(int(seconds / 0.05)):
        if not any(alive(p) for p in processes):
            return True
        await asyncio.sleep(0.05)
    return not any(alive(p) for p in processes)


async def terminate(process: asyncio.subprocess.Process | None) -> None:
    """SIGTERM, then SIGKILL after STOP_SECONDS: a child of the harness, stopped either way."""
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def running(*servers: Server) -> AsyncIterator[None]:
    try:
        for server in servers:
            await server.start()
        yield
    finally:
        for server in servers:
            await server.stop()


# --- child processes spoken to over stdin/stdout -----------------------------------------------


class Child:
    """A bench child process that answers one JSON line per command line."""

    def __init__(self, module: str, *args: str, name: str, workdir: Path) -> None:
        self._argv = [sys.executable, "-m", module, *args]
        self.name = name
        self._log_path = workdir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f"{self.name} is not running")
        return self.process.pid

    async def start(self, ready_timeout: float = 30.0) -> dict[str, Any]:
        with self._log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=child_env({}),
                limit=1 << 24,
            )
        return await self.answer(ready_timeout)

    async def answer(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            raise BenchError(f"{self.name} did not answer within {timeout:g} s") from None
        if not line:
            tail = self._log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"{self.name} exited:\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def tell(self, command: str) -> None:
        """Write one command line now, without waiting (read its answer with `answer`)."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")

    async def ask(self, command: str, timeout: float = 30.0) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.tell(command)
        await self.process.stdin.drain()
        return await self.answer(timeout)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert process.stdin is not None
            process.stdin.write(b"quit\n")
            await process.stdin.drain()
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()


class Sink(Child):
    """The aiosmtpd sink (bench.sink): counts what it accepted and when."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        super().__init__("bench.sink", "--port", str(self.port), name="sink", workdir=workdir)

    async def stats(self) -> dict[str, Any]:
        return await self.ask("stats")

    async def reset(self, *, keep: bool = False) -> None:
        """Zero the counts; with `keep`, also keep every message accepted from now on."""
        await self.ask("reset keep" if keep else "reset")

    async def wait_for(self, count: int, timeout: float) -> dict[str, Any]:
        """Poll until the sink has accepted `count` messages (or the time is up)."""
        deadline = time.monotonic() + timeout
        stats = await self.stats()
        while stats["count"] < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            stats = await self.stats()
        return stats
