"""Figures, the machine they were measured on, and where they are written.

Each benchmark returns `Figure`s: the ratios that carry a target, and the absolute figures beside
them for context. They are printed as a table, written to docs/benchmarks.md with the command,
the date and the machine, and to bench/results.json as one key per figure.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

from attrs import define, field


@define
class Figure:
    key: str  # e.g. "B1.ratio_to_pgbench"
    label: str
    value: float | None
    unit: str = ""
    target: str = ""  # words, e.g. "≥ 0.5x"; empty for context figures
    met: bool | None = None  # None: no target, or not measured
    note: str = ""

    @property
    def shown(self) -> str:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return "—"
        value = self.value
        if (float(value).is_integer() and not self.unit.startswith("x")) or abs(value) >= 100:
            text = f"{value:,.0f}"
        elif abs(value) >= 10:
            text = f"{value:.1f}"
        else:
            text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
        return f"{text} {self.unit}".strip()

    @property
    def verdict(self) -> str:
        if self.met is None:
            return ""
        return "met" if self.met else "MISSED"


def _server_stack() -> str:
    """What `handoff serve` runs on: uvloop and httptools when installed (uvicorn[standard])."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "the asyncio loop"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} and {http}"


def check(value: float | None, ok: bool) -> bool | None:
    if value is None or math.isnan(value):
        return None
    return ok


@define
class Outcome:
    """One benchmark's figures, or why it could not be measured."""

    name: str
    title: str
    figures: list[Figure] = field(factory=list)
    error: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(factory=list)


def machine(pg_version: str) -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count() or "unknown"),
        "memory": memory,
        "cpu": cpu,
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "postgresql": pg_version,
        "os": platform.platform(),
    }


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("figure", "value", "target", "")]
    for outcome in outcomes:
        if outcome.error:
            rows.append((f"{outcome.name} {outcome.title}", "FAILED", "", outcome.error[:60]))
            continue
        for f in outcome.figures:
            rows.append((f"{f.key}  {f.label}", f.shown, f.target, f.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def results_json(outcomes: Sequence[Outcome], meta: dict[str, object]) -> str:
    data: dict[str, object] = {"meta": meta}
    for outcome in outcomes:
        for f in outcome.figures:
            data[f.key] = None if f.value is None or math.isnan(f.value) else round(f.value, 6)
        if outcome.error:
            data[f"{outcome.name}.error"] = outcome.error
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def markdown(
    outcomes: Sequence[Outcome],
    meta: dict[str, object],
    facts: dict[str, str],
    findings: str,
) -> str:
    out = [
        "# Benchmarks",
        "",
        "The benchmarks of SPEC §9 (the product specification, kept outside this repository).",
        "Throughput figures are ratios against a limit measured in the same run on the",
        "same machine (pgbench running the adapter's own SQL, raw aiosmtplib sending the same",
        "messages, the policy's own smallest size); latency and memory targets are budgets. The",
        "absolute times are context only: the machine is small and shared, and they move from run",
        "to run (each benchmark's notes say how much CPU went to other work on the machine).",
        "",
        f"- command: `{meta['command']}` ({meta['mode']}, {meta['seconds']:.0f} s in all)",
        f"- date: {meta['date']}",
        f"- machine: {facts['nproc']} CPUs ({facts['cpu']}), {facts['memory']} memory, "
        f"{facts['os']}",
        f"- software: {facts['python']}, PostgreSQL {facts['postgresql']}, "
        f"uvicorn with {_server_stack()}",
        "",
        "| figure | value | target | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for outcome in outcomes:
        if outcome.error:
            out.append(f"| **{outcome.name}** {outcome.title} | not measured | | {outcome.error} |")
            continue
        for f in outcome.figures:
            label = f"`{f.key}` {f.label}"
            out.append(f"| {label} | {f.shown} | {f.target} | {f.verdict} |")
    out.append("")
    for outcome in outcomes:
        out += [f"## {outcome.name} — {outcome.title}", ""]
        if outcome.error:
            out += [f"Not measured: {outcome.error}", ""]
        out += [f"- {n}" for n in outcome.notes]
        out.append("")
    if findings:
        out += [findings.rstrip(), ""]
    return "\n".join(out)
