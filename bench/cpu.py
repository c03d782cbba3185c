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


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: [0] state, [1] ppid, [11] utime,
    [12] stime, [13] cutime, [14] cstime (clock ticks), [19] start time."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _all_stats() -> dict[int, list[str]]:
    stats: dict[int, list[str]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                stats[int(proc.name)] = _stat(proc.name)
    return stats


def _subtree(root: int, stats: Mapping[int, list[str]]) -> list[int]:
    """`root` and every live descendant of it (children, their children, ...), root first."""
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found = [root] if root in stats else []
    for pid in found:  # grows while it is walked: breadth first
        found.extend(children.get(pid, ()))
    return found


def process_tree(pid: int) -> list[tuple[int, int]]:
    """A process and its live descendants (uvicorn's supervisor and its children, say), as
    (pid, start time in clock ticks since boot): the pair names a process even after its pid is
    reused. Empty when `pid` is gone."""
    stats = _all_stats()
    return [(p, int(stats[p][19])) for p in _subtree(pid, stats)]


def alive(process: tuple[int, int]) -> bool:
    """Whether the process (pid, start time) from `process_tree` is still running (a zombie,
    exited and not yet reaped, is not)."""
    pid, started = process
    try:
        fields = _stat(pid)
    except OSError:
        return False
    return int(fields[19]) == started and fields[0] != "Z"


def _tree_cpu(root: int, stats: Mapping[int, list[str]]) -> float:
    """User + system CPU used so far by `root` and its descendants: each live one's own, plus
    what each has reaped from children that already exited (cutime, cstime)."""
    ticks = 0
    for pid in _subtree(root, stats):
        fields = stats[pid]
        ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process and all its descendants have used so far, from /proc (Linux):
    for `handoff serve --workers N`, the supervisor and every server process it started."""
    stats = _all_stats()
    if pid not in stats:
        raise ProcessLookupError(f"no process {pid}")
    return _tree_cpu(pid, stats)


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
    """CPU seconds spent by each party during a window (a party: a process and its descendants):
    the servers, the sink, PostgreSQL, this harness, the kernel's interrupt work, time stolen by
    the hypervisor, and every other process on the machine (other work sharing its cores)."""

    def __init__(self, parties: Mapping[str, int]) -> None:
        self._parties = dict(parties)
        self._start: dict[str, float] = {}
        self.spent: dict[str, float] = {}
        self.wall = 0.0

    def _read(self) -> dict[str, float]:
        stats = _all_stats()
        missing = [pid for pid in self._parties.values() if pid not in stats]
        if missing:
            raise ProcessLookupError(f"no process {missing[0]}")
        now = {name: _tree_cpu(pid, stats) for name, pid in self._parties.items()}
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
