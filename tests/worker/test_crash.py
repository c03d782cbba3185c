"""A worker process that dies or is stopped in the middle of a batch loses nothing (SPEC §5,
Workers): killed, its lease expires and another worker sends what it held (at most once more);
stopped with SIGTERM, it finishes or gives back what it held and nothing is sent twice."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable

from tests.worker.harness import (
    SinkServer,
    Store,
    WorkerProcess,
    eventually,
    seed_outbox,
    worker_env,
    worker_in_process,
)

SLOW = 0.03  # seconds the sink takes per message, so a batch lasts a quarter of a second
BATCH = 8


async def test_a_worker_killed_mid_batch_loses_nothing(
    database_url: str,
    start_sink: Callable[..., SinkServer],
    start_worker: Callable[..., WorkerProcess],
    open_store: Callable[[str], Store],
) -> None:
    total = 40
    await seed_outbox(database_url, seniors=total)
    store = open_store(database_url)
    assert await store.statuses() == Counter({"pending": total})
    server = start_sink(delay=SLOW)
    env = worker_env(
        database_url,
        f"{server.url}?pool=1",
        HANDOFF_WORKER_LEASE_SECONDS="2",
        HANDOFF_WORKER_BATCH=str(BATCH),
    )

    doomed = start_worker(env, "doomed")
    # One connection, one message at a time: the 19th is in the third batch, and the worker dies
    # waiting for the sink to acknowledge it.
    server.sink.at(19, lambda: doomed.signal(signal.SIGKILL))
    await doomed.started()
    assert await doomed.exit_code(timeout=20) == -signal.SIGKILL
    assert 0 < server.sink.count() < total
    held = [r for r in await store.outbox() if r.status == "pending" and r.leased_by]
    assert 0 < len(held) <= BATCH, "the dead worker's batch is still leased to it"

    survivor = start_worker(env, "survivor")
    await survivor.started()
    await eventually(lambda: store.all_sent(total), timeout=30, what=f"all {total} deliveries sent")
    survivor.signal(signal.SIGTERM)
    assert await survivor.exit_code() == 0, survivor.output()

    rows = await store.outbox()
    assert all(r.leased_by is None for r in rows)
    seen = server.sink.message_ids()
    assert set(seen) == {r.message_id for r in rows}
    assert max(seen.values()) <= 2
    # Only what the dead worker held can have gone out twice (SMTP is at-least-once).
    twice = {mid for mid, n in seen.items() if n > 1}
    assert twice <= {r.message_id for r in held}


async def test_sigterm_mid_batch_exits_cleanly_and_nothing_is_sent_twice(
    database_url: str,
    start_sink: Callable[..., SinkServer],
    start_worker: Callable[..., WorkerProcess],
    open_store: Callable[[str], Store],
) -> None:
    total = 16
    await seed_outbox(database_url, seniors=total)
    store = open_store(database_url)
    server = start_sink(delay=SLOW)
    # A lease far longer than the test: anything the stopped worker kept would stay stuck.
    env = worker_env(
        database_url,
        f"{server.url}?pool=1",
        HANDOFF_WORKER_LEASE_SECONDS="600",
        HANDOFF_WORKER_BATCH=str(BATCH),
    )

    stopping = start_worker(env, "stopping")
    server.sink.at(3, lambda: stopping.signal(signal.SIGTERM))  # the third of a batch of eight
    await stopping.started()
    assert await stopping.exit_code(timeout=20) == 0, stopping.output()

    rows = await store.outbox()
    sent_by_first = server.sink.count()
    assert 0 < sent_by_first < total
    # What it held is either sent (and recorded as such) or back in the queue, free to take.
    assert all(r.status == "sent" or (r.status == "pending" and r.leased_by is None) for r in rows)
    assert Counter(r.status for r in rows)["sent"] == sent_by_first

    async with worker_in_process(env):  # another worker, the same settings
        await eventually(
            lambda: store.all_sent(total), timeout=20, what=f"all {total} deliveries sent"
        )

    seen = server.sink.message_ids()
    assert seen == Counter({r.message_id: 1 for r in await store.outbox()})
