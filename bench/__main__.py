"""`python -m bench [B6 ...] [--only B1,B5] [--quick] [--write | --no-write]`: run, print, record.

A full run writes docs/benchmarks.md and bench/results.json; a selection or a quick smoke run
writes them only when asked (`--write`), so a partial run never overwrites the full figures.
Artifacts of each run (server logs, the pgbench script, captured SQL) stay in bench/out/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import attrs

from bench import b1_throughput, b2_fanout, b3_push, b4_claims, b5_policy, b6_storm
from bench.report import Figure, Outcome, machine, markdown, results_json, table
from bench.stack import OUT, ROOT, BenchError, Context, Databases, Sink, raise_nofile

Runner = Callable[[Context], Awaitable[Outcome]]

BENCHMARKS: dict[str, tuple[str, Runner]] = {
    "B1": ("escalation throughput", b1_throughput.run),
    "B2": ("fan-out to 1,000 by email", b2_fanout.run),
    "B3": ("push to 1,000 streams", b3_push.run),
    "B4": ("claim contention", b4_claims.run),
    "B5": ("policy plan", b5_policy.run),
    "B6": ("storm of escalations", b6_storm.run),
}
ORDER = ("B5", "B1", "B2", "B3", "B4", "B6")
FINDINGS = ROOT / "bench" / "findings.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run, e.g. b6 (same as --only)")
    parser.add_argument("--only", default="", help="comma-separated, e.g. B1,B5 (default: all)")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--profile", action="store_true", help="sample every server with py-spy (bench/out)"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="write the docs and JSON anyway")
    group.add_argument("--no-write", action="store_true", help="print only")
    group.add_argument(
        "--render", metavar="RUN_DIR", help="write the docs again from a saved run (bench/out/…)"
    )
    return parser


async def _run(
    selected: list[str], quick: bool, profile: bool
) -> tuple[list[Outcome], dict[str, str], Path]:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    workdir = OUT / f"run-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    raise_nofile()
    databases = Databases()
    try:
        pg_version = await databases.server_version()
    except BenchError as exc:  # B5 needs no database; the others will say what failed
        pg_version = f"unreachable ({exc})"
    sink = Sink(workdir)
    await sink.start()
    ctx = Context(databases=databases, sink=sink, workdir=workdir, quick=quick, profile=profile)
    outcomes: list[Outcome] = []
    try:
        for name in selected:
            title, runner = BENCHMARKS[name]
            print(f"-- {name} {title} ...", flush=True)
            started = time.monotonic()
            try:
                outcome = await runner(ctx)
            except Exception as exc:  # one benchmark failing must not lose the others' figures
                (workdir / f"{name}.error.txt").write_text(traceback.format_exc())
                outcome = Outcome(name, title, error=f"{type(exc).__name__}: {exc}"[:400])
            outcome.seconds = time.monotonic() - started
            print(f"   {name} took {outcome.seconds:.0f} s", flush=True)
            outcomes.append(outcome)
    finally:
        await sink.stop()
        await databases.drop_all()
    facts = machine(pg_version)
    saved = {"outcomes": [attrs.asdict(o) for o in outcomes], "facts": facts}
    (workdir / "outcomes.json").write_text(json.dumps(saved, indent=1))
    print(f"   artifacts in {workdir.relative_to(ROOT)}", flush=True)
    return outcomes, facts, workdir


def _load(run: Path) -> tuple[list[Outcome], dict[str, str]]:
    """The outcomes a run saved, to render the docs again (say, after editing findings.md)."""
    saved = json.loads((run / "outcomes.json").read_text())
    outcomes = []
    for raw in saved["outcomes"]:
        figures = [Figure(**f) for f in raw.pop("figures")]
        outcomes.append(Outcome(**raw, figures=figures))
    return outcomes, saved["facts"]


def _write(outcomes: list[Outcome], facts: dict[str, str], meta: dict[str, object]) -> None:
    findings = FINDINGS.read_text() if FINDINGS.exists() else ""
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "benchmarks.md").write_text(markdown(outcomes, meta, facts, findings))
    (ROOT / "bench" / "results.json").write_text(results_json(outcomes, meta))
    print("wrote docs/benchmarks.md and bench/results.json")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render:
        run = Path(args.render)
        saved, saved_facts = _load(run)
        _write(saved, saved_facts, json.loads((run / "meta.json").read_text()))
        return 0
    wanted = [n.strip().upper() for n in args.only.split(",") + args.names if n.strip()]
    unknown = [n for n in wanted if n not in BENCHMARKS]
    if unknown:
        print(f"bench: unknown benchmark {', '.join(unknown)}; choose from {', '.join(ORDER)}")
        return 2
    selected = [n for n in ORDER if not wanted or n in wanted]
    started = time.monotonic()
    try:
        outcomes, facts, workdir = asyncio.run(_run(selected, args.quick, args.profile))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    for outcome in outcomes:
        print(f"\n{outcome.name}: " + ("\n    ".join(outcome.notes) or "(no notes)"))
    print()
    print(table(outcomes))
    print(f"\n{len(selected)} benchmarks in {seconds:.0f} s")
    command = "python -m bench" + (" " + shlex.join(argv or sys.argv[1:])).rstrip()
    meta: dict[str, object] = {
        "command": command,
        "mode": "quick smoke run" if args.quick else "full run",
        "selected": selected,
        "seconds": round(seconds, 1),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "run": str(workdir.relative_to(ROOT)),
        **facts,
    }
    (workdir / "meta.json").write_text(json.dumps(meta, indent=1))
    full = not wanted and not args.quick and not args.profile
    if (full or args.write) and not args.no_write:
        _write(outcomes, facts, meta)
    failed = [o.name for o in outcomes if o.error]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
