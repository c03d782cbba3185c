"""`handoff serve`, unchanged, with the measuring hooks of bench.hooks in each of its processes.

Run by the harness as `python -m bench.server --port P [--no-worker] [--workers N]` with the
HANDOFF_* settings in its environment, and bench/hooks first on its PYTHONPATH: the hooks are
installed at interpreter start (bench/hooks/sitecustomize.py) in this process and in each of
uvicorn's `--workers N` children, and here again (once per process) in case the path lacks them.
"""

from __future__ import annotations

import argparse
import sys

from bench.hooks import install_from_env
from bench.stack import raise_nofile


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-worker", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help="server processes (uvicorn)")
    args = parser.parse_args()
    raise_nofile()
    install_from_env()
    from handoff_app.cli import main as handoff

    argv = ["serve", "--host", "127.0.0.1", "--port", str(args.port)]
    if args.workers > 1:
        argv += ["--workers", str(args.workers)]
    return handoff([*argv, "--no-worker"] if args.no_worker else argv)


if __name__ == "__main__":
    sys.exit(main())
