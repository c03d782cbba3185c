"""Run by Python at the start of every process whose PYTHONPATH begins with this folder (the
server's, bench.stack.Server): the measuring hooks of bench.hooks, when BENCH_COMMIT_LOG or
BENCH_SQL_LOG is set, and nothing otherwise. uvicorn's `--workers N` children are spawned afresh
(multiprocessing's "spawn"), so this is where they get the hooks.

It shadows any other `sitecustomize` on the path (the benchmark's interpreters have none).
"""

import os
import sys
import traceback

if os.environ.get("BENCH_COMMIT_LOG") or os.environ.get("BENCH_SQL_LOG"):
    try:
        from bench.hooks import install_from_env

        install_from_env()
    except Exception:  # Python would print one line and go on: print why, in the server log
        print(f"bench.hooks not installed in pid {os.getpid()}:", file=sys.stderr)
        traceback.print_exc()
        raise
