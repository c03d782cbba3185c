"""Where the CPU went during a measured window: the servers, the sink, PostgreSQL, the harness,
the kernel's interrupt work, the hypervisor, and everything else sharing the machine's cores.

The machine is small and shared, so every figure's notes say how much of it the benchmark had.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu() -> float:
    """CPU used so far by PostgreSQL (every database, other users' too): its live processes, plus
    what the postmaster has reaped from backends that already exited."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (proc / "comm").read_text().strip() == "postgres":
                stats[int(proc.name)] = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    total = 0.0
    for fields in stats.values():
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        if int(fields[1]) not in stats:  # the postmaster: add its reaped children
            total += (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime
    return total


def _machine() -> tuple[float, float, float]:
    """From /proc/stat, CPU seconds (all cores) so far: busy in all, of which interrupts and
    softirqs (loopback networking mostly; charged to no process), and stolen by the hypervisor."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq + steal
    return busy / tick, (irq + softirq) / tick, steal / tick


class CpuMeter:
    """CPU seconds spent by each party during a window: the servers, the sink, PostgreSQL, this
    harness, the kernel's interrupt work, time stolen by the hypervisor, and every other process
    on the machine (other work sharing its cores)."""

    def __init__(self, parties: Mapping[str, int]) -> None:
        self._parties = dict(parties)
        self._start: dict[str, float] = {}
        self.spent: dict[str, float] = {}
        self.wall = 0.0

    def _read(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self._parties.items()}
        now["postgres (all databases)"] = _postgres_cpu()
        now["harness"] = time.process_time()
        now["machine"], now["kernel irq"], now["stolen"] = _machine()
        now["wall"] = time.monotonic()
        return now

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *exc_info: object) -> None:
        end = self._read()
        spent = {k: end[k] - self._start[k] for k in end}
        self.wall = spent.pop("wall")
        machine = spent.pop("machine")
        spent["other processes"] = max(0.0, machine - sum(spent.values()))
        self.spent = spent

    def describe(self, per: float = 0.0, unit: str = "") -> str:
        """One line: each party's CPU seconds (and ms per `unit` when `per` is given)."""
        cores = os.cpu_count() or 1
        parts = []
        for name, seconds in self.spent.items():
            each = f", {seconds * 1000 / per:.1f} ms/{unit}" if per else ""
            parts.append(f"{name} {seconds:.1f} s{each}")
        return (
            f"CPU in the {self.wall:.1f} s window ({cores} cores = {cores * self.wall:.1f} "
            f"CPU-s): " + "; ".join(parts)
        )
