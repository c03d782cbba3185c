"""`--profile`: sample each server with py-spy while it runs, and sum the samples up by frame.

py-spy is not a dependency of the project: `pip install py-spy` to use this. The raw samples
(`<server>.pyspy.txt`, collapsed stacks) and a summary (`<server>.profile.txt`, the frames with
the most samples, on their own and with what they call) land in the run's bench/out folder.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r" \((?:.*/)?([^/]+\.py):\d+\)")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    return found


def attach(pid: int, raw: Path, subprocesses: bool = False) -> subprocess.Popen[bytes]:
    """Start sampling `pid` (without pausing it) until `detach`; with `subprocesses`, its
    children too (uvicorn's `--workers N`), each stack under a frame naming its process."""
    return subprocess.Popen(
        [py_spy(), "record", "--pid", str(pid), "--output", str(raw), "--format", "raw",
         "--rate", "100", "--nonblocking", *(["--subprocesses"] if subprocesses else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def detach(spy: subprocess.Popen[bytes], raw: Path) -> None:
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
    if raw.exists():
        raw.with_suffix(".summary.txt").write_text(summary(raw))


AREAS = (
    ("HTTP requests (uvicorn → FastAPI → handler)", "RequestResponseCycle.run_asgi"),
    ("  of which the escalation use case", "HandoffService._hand_off"),
    ("  of which the claim use case", "HandoffService.claim"),
    ("  of which authentication (member lookup)", "_caller_of"),
    ("background dispatch after commit", "BackgroundDispatch._run"),
    ("the delivery worker's passes", "DeliveryService.run"),
    ("  leasing deliveries", "DeliveryService._lease"),
    ("  reading the batch's context", "DeliveryService._context"),
    ("  pushing (presence + publish)", "DeliveryService._push"),
    ("  sending over SMTP", "SmtpSender._work"),
    ("  recording outcomes", "DeliveryService._record"),
    ("    UPDATE per delivery", "SqlDeliveries.record"),
    ("    INSERT timeline per delivery", "SqlTimeline.add"),
    ("NOTIFY publish", "PgNotifyHub.publish"),
    ("NOTIFY heard → local fan-out", "PgNotifyHub._heard"),
    ("SSE streams (sse-starlette)", "EventSourceResponse._stream_response"),
    ("presence heartbeats", "SqlPresence.heartbeat"),
    (
        "socket writes (incl. waiting for a CPU after waking the peer)",
        "_SelectorSocketTransport.write",
    ),
)


def summary(raw: Path, top: int = 40) -> str:
    own: Counter[str] = Counter()
    within: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [FRAME.sub(r" (\1)", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            within[frame] += n
        names = {f.split(" (", 1)[0] for f in frames}
        for label, marker in AREAS:
            if marker in names:
                areas[label] += n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples at 100 Hz (threads waiting idle are not sampled)", "", "areas:"]
    lines += [f"{areas[label] / total * 100:6.1f}%  {label}" for label, _ in AREAS]
    lines += ["", "self:"]
    lines += [f"{n / total * 100:6.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive (the frame and what it calls):"]
    lines += [f"{n / total * 100:6.1f}%  {frame}" for frame, n in within.most_common(top * 2)]
    return "\n".join(lines) + "\n"
