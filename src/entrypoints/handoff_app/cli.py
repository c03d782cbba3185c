"""The `handoff` command: serve, worker, db upgrade, members, token and demo (SPEC §7)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

from handoff_app.settings import Settings, SettingsError
from handoff_core.errors import HandoffError, ValidationError
from handoff_core.model import check_id

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
log = logging.getLogger("handoff.serve")


class CommandError(Exception):
    """A command could not do what was asked; the message is the one line to print (exit 1)."""


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one line, like every other error of the command (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1 to 65535)")
    return value


# What a host name (IDNA-encoded), an IPv4 or an IPv6 address (bracketed or not, with a zone) is
# made of: anything else, whitespace above all, no resolver would take.
_HOST_CHARACTERS = re.compile(r"[A-Za-z0-9._:%\[\]-]+")


def _host(raw: str) -> str:
    """A name or address to listen on, as the resolver will take it (IDNA for a non-ASCII name):
    bytes that are not UTF-8, a name IDNA refuses or characters no host name or address has are
    a usage mistake, not an error from getaddrinfo after the command started."""
    if not raw:
        raise argparse.ArgumentTypeError("must not be empty")
    try:
        ascii_form = raw.encode("idna").decode("ascii")
    except UnicodeError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a host name or an address") from None
    if not _HOST_CHARACTERS.fullmatch(ascii_form):
        raise argparse.ArgumentTypeError(f"{raw!r} is not a host name or an address")
    return raw


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="handoff",
        description="Hand off AI-assisted troubleshooting sessions: park, escalate, claim.",
        epilog="Settings come from HANDOFF_* environment variables; see the README.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP API (and the delivery worker)")
    serve.add_argument("--host", type=_host, default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="server processes (PostgreSQL)")
    serve.add_argument("--no-worker", action="store_true", help="do not run the delivery worker")

    worker = sub.add_parser("worker", help="run the delivery worker alone")
    worker.add_argument("--once", action="store_true", help="one pass, then exit")
    worker.add_argument(
        "--metrics-port", type=_port, default=None,
        help="serve this worker's /metrics (its heartbeat) on --metrics-host:PORT",
    )  # fmt: skip
    worker.add_argument("--metrics-host", type=_host, default="127.0.0.1")

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_sub.add_parser("upgrade", help="create or upgrade the schema (Alembic)")

    members = sub.add_parser("members", help="mirror the account's users in")
    m_sub = members.add_subparsers(dest="members_command", metavar="ACTION", required=True)
    add = m_sub.add_parser("add", help="create or update a member")
    add.add_argument("--account", required=True)
    add.add_argument("--id", required=True)
    add.add_argument("--email", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--role", required=True, choices=["owner", "admin", "engineer", "viewer"])
    add.add_argument("--inactive", action="store_true", help="store the member as inactive")
    listing = m_sub.add_parser("list", help="list the account's members")
    listing.add_argument("--account", required=True)
    remove = m_sub.add_parser("remove", help="soft-delete a member")
    remove.add_argument("--account", required=True)
    remove.add_argument("--id", required=True)

    token = sub.add_parser("token", help="mint a JWT for local use")
    token.add_argument("--account", required=True)
    token.add_argument("--member", required=True)
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")

    login = sub.add_parser("login-link", help="print a one-time sign-in link to the inbox page")
    login.add_argument("--account", required=True)
    login.add_argument("--member", required=True)
    login.add_argument("--ttl", type=float, default=900.0, help="seconds (default 900)")

    demo = sub.add_parser("demo", help="the whole product in one run, on SQLite and Maildir")
    demo.add_argument(
        "--dir", help="work in this folder, and keep it (default: a new temporary one)"
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the folder, to serve it again afterwards"
    )
    return parser


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything starts: a port in use is one line, not a
    start-up run for nothing and then uvicorn's complaint."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)  # `--workers N` hands it to the server processes
    return sock


def _check_serve(args: argparse.Namespace, settings: Settings) -> None:
    if args.workers < 1:
        raise SettingsError("--workers must be at least 1")
    if args.workers > 1 and not settings.is_postgres:
        raise SettingsError(
            "--workers N needs PostgreSQL (HANDOFF_DATABASE_URL): with SQLite, live push and "
            "presence live in one process"
        )
    if not settings.jwt_secret:
        raise SettingsError("HANDOFF_JWT_SECRET is not set; the HTTP API needs it to check tokens")


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    """One process: the services are opened before the server listens, so a store that cannot
    be used stops the start with one line and the server never answers 500 for it."""
    import uvicorn

    from handoff_app.container import build_services
    from handoff_app.serve import server_app

    _check_serve(args, settings)
    with _listen(args.host, args.port) as sock:
        services = await build_services(settings)
        app = server_app(
            settings, run_worker=not args.no_worker, services=services, close_services=True
        )
        server = uvicorn.Server(uvicorn.Config(app, timeout_graceful_shutdown=5))
        host, port = sock.getsockname()[:2]
        log.info("handoff serving on http://%s:%d (Ctrl-C stops it)", host, port)
        try:
            await server.serve(sockets=[sock])
        finally:
            if not server.started:  # the lifespan that closes them never ran
                await services.close()
    return 0


def _serve_many(args: argparse.Namespace, settings: Settings) -> int:
    """`--workers N`: check the store once here, bind, then let uvicorn's supervisor run N server
    processes on the one socket; each opens its own services (`serve.app_from_env`)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from handoff_app.serve import RUN_WORKER_ENV, check_store

    _check_serve(args, settings)
    asyncio.run(check_store(settings))
    sock = _listen(args.host, args.port)
    os.environ[RUN_WORKER_ENV] = "0" if args.no_worker else "1"
    config = uvicorn.Config(
        "handoff_app.serve:app_from_env",
        factory=True,
        workers=args.workers,
        timeout_graceful_shutdown=5,
    )
    host, port = sock.getsockname()[:2]
    log.info("handoff serving on http://%s:%d with %d processes", host, port, args.workers)
    with sock:
        Multiprocess(config, sockets=[sock]).run()
    return 0


async def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from handoff_app.container import build_services
    from handoff_app.serve import tune_collector

    services = await build_services(settings)
    try:
        if args.once:
            sent = await services.delivery.run_once()
            print(f"sent {sent}")
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        stop_metrics = None
        if args.metrics_port is not None:
            from handoff_app.metrics import serve_worker_metrics

            where = f"{args.metrics_host}:{args.metrics_port}"
            try:
                stop_metrics = serve_worker_metrics(
                    services.delivery, args.metrics_host, args.metrics_port
                )
            except OSError as exc:
                raise SettingsError(f"--metrics-port: cannot serve on {where}: {exc}") from None
            print(f"handoff worker metrics on http://{where}/metrics", flush=True)
        tune_collector()
        print(f"handoff worker {services.delivery.worker_id} running; SIGTERM stops it", flush=True)
        wake = asyncio.Event()
        services.hub.on_event(wake.set)  # PostgreSQL: a commit anywhere wakes this worker
        try:
            await services.delivery.run(
                stop,
                poll_seconds=settings.worker_poll_seconds,
                lanes=settings.worker_lanes,
                wake=wake,
            )
        finally:
            if stop_metrics is not None:
                stop_metrics()
        return 0
    finally:
        await services.close()


async def _db(args: argparse.Namespace, settings: Settings) -> int:
    if settings.is_memory:
        raise SettingsError("HANDOFF_DATABASE_URL=memory:// has no schema to upgrade")
    from handoff_sql import ensure_schema, head

    await ensure_schema(settings.database_url)
    print(f"schema at revision {head()}")
    return 0


async def _members(args: argparse.Namespace, settings: Settings) -> int:
    from handoff_app.container import build_services

    # Only `add` may make a SQLite store; listing or removing in one that does not exist yet
    # must not leave an empty database behind.
    services = await build_services(settings, create_store=args.members_command == "add")
    try:
        if args.members_command == "add":
            m = await services.members.upsert(
                args.account,
                args.id,
                email=args.email,
                name=args.name,
                role=args.role,
                active=not args.inactive,
            )
            print(
                f"{m.account_id}/{m.id} {m.role} {m.email} ({'active' if m.active else 'inactive'})"
            )
        elif args.members_command == "list":
            rows = await services.members.members(args.account)
            if not rows:
                print(f"no members in account {args.account}")
            for m in rows:
                state = "active" if m.active else "inactive"
                print(f"{m.id:<20} {m.role:<9} {state:<8} {m.name} <{m.email}>")
        else:
            await services.members.remove(args.account, args.id)
            print(f"removed {args.account}/{args.id}")
        return 0
    finally:
        await services.close()


async def _token(args: argparse.Namespace, settings: Settings) -> int:
    from handoff_app.container import build_services
    from handoff_app.http import mint_token

    if args.ttl <= 0 or args.ttl != args.ttl or args.ttl > TOKEN_TTL_MAX:
        raise SettingsError(f"--ttl must be a positive number of seconds, at most {TOKEN_TTL_MAX}")
    if not settings.jwt_secret:
        raise SettingsError("HANDOFF_JWT_SECRET is not set; a token is signed with it")
    services = await build_services(settings, create_store=False)
    try:
        member = await services.members.get(args.account, args.member)
    finally:
        await services.close()
    if member is None or not member.is_current:
        state = "unknown" if member is None else "inactive or removed"
        raise CommandError(
            f"member {args.member} of account {args.account} is {state}: no token for them "
            "(add them with `handoff members add`)"
        )
    print(mint_token(settings, args.account, args.member, args.ttl))
    return 0


async def _login_link(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta

    from handoff_app.container import build_services
    from handoff_app.http.pages import login_link
    from handoff_core.services.signin import SignInService

    if not 0 < args.ttl <= 7 * 86400:
        raise SettingsError("--ttl must be more than 0 and at most 604800 seconds (7 days)")
    services = await build_services(settings, create_store=False)
    try:
        code = await SignInService(services.uow, services.clock).issue(
            args.account, args.member, timedelta(seconds=args.ttl)
        )
    finally:
        await services.close()
    print(login_link(settings.public_url, code))
    return 0


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from handoff_app.demo import run_demo

    return await run_demo(args.dir, keep=args.keep)


TOKEN_TTL_MAX = 366 * 86400

COMMANDS: dict[str, Command] = {
    "serve": _serve,
    "worker": _worker,
    "db": _db,
    "members": _members,
    "token": _token,
    "login-link": _login_link,
    "demo": _demo,
}


def _loop_factory(command: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """`serve` awaits uvicorn inside this process's own loop, where uvicorn's own choice of loop
    never applies: so make that loop the one uvicorn would pick (uvloop, when installed). A
    `worker` runs on it too: its socket writes to the relay are most of its CPU (B6)."""
    if command not in ("serve", "worker"):
        return None
    import uvicorn

    config = uvicorn.Config("handoff_app.serve:app_from_env", log_config=None)  # never loaded
    pick = getattr(config, "get_loop_factory", None)
    return pick() if pick is not None else None  # an older uvicorn: the default loop


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a usage mistake, as argparse has it for a missing command
        parser.error(f"a command is required: one of {', '.join(COMMANDS)}")
    logging.basicConfig(
        level=logging.INFO if args.command in ("serve", "worker") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        _check_ids(args)
        _check_options(args)
        settings = Settings.from_env() if args.command != "demo" else Settings()
        if args.command == "serve" and args.workers > 1:
            return _serve_many(args, settings)
        with asyncio.Runner(loop_factory=_loop_factory(args.command)) as runner:
            return runner.run(COMMANDS[args.command](args, settings))
    except SettingsError as exc:
        return _fail(str(exc), 2)
    except ValidationError as exc:  # a value given on the command line: a usage mistake
        return _fail(f"{_option(args, exc.field)}: {exc.detail.removeprefix(exc.field + ': ')}", 2)
    except HandoffError as exc:
        return _fail(exc.detail, 1)
    except CommandError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): nothing to report
        return _reader_gone()
    except OSError as exc:
        return _fail(str(exc), 1)
    except Exception as exc:  # a bug: still one line (the traceback goes to the debug log)
        logging.getLogger("handoff").debug("unexpected error", exc_info=True)
        return _fail(f"unexpected error ({type(exc).__name__}): {exc}", 1)


# The options that name an account or a member, in every command that has them.
ID_OPTIONS = ("account", "id", "member")


def _check_ids(args: argparse.Namespace) -> None:
    """Hold every id given on the command line to `check_id` before anything opens the store, as
    `members add` always did: an empty id, or bytes that are not UTF-8 (which arrive as lone
    surrogates), is a usage mistake (exit 2) and never reaches a query.

    Raises `ValidationError` naming the option (`account`, `id` or `member`)."""
    for name in ID_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            check_id(name, value)


def _check_options(args: argparse.Namespace) -> None:
    """Every other option that is not checked by argparse itself, before anything opens the
    store or writes a file: a bad value is a usage mistake (exit 2) that changes nothing.
    (`demo --dir` is checked by the demo itself, before it writes anything.)

    Raises `ValidationError` naming the field, or `SettingsError`."""
    if args.command == "members" and args.members_command == "add":
        from handoff_core.model import Member
        from handoff_mail import check_address

        member = Member.register(
            account_id=args.account, id=args.id, email=args.email, name=args.name, role=args.role
        )
        check_address(member.email)  # what MemberService.upsert holds it to


def _option(args: argparse.Namespace, field: str) -> str:
    """The command-line option that gave the value of `field` (`account_id` came from
    `--account`), or the field itself when no option did."""
    for name in (field, field.removesuffix("_id")):
        if name and hasattr(args, name):
            return "--" + name.replace("_", "-")
    return field


def _reader_gone() -> int:
    """Stop quietly, as a Unix tool that SIGPIPE ends does: exit 141 (128 + SIGPIPE), no message,
    and stdout pointed at /dev/null so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def _fail(message: str, code: int) -> int:
    """Every error of the command is this one line on stderr."""
    line = " ".join(message.split())
    print(f"handoff: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
