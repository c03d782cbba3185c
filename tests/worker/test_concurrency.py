"""Two worker processes over one PostgreSQL outbox: FOR UPDATE SKIP LOCKED hands each delivery
to exactly one of them, so without crashes every notice reaches the SMTP sink exactly once."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable

from tests.worker.harness import (
    SinkServer,
    Store,
    WorkerProcess,
    add_team,
    escalate,
    eventually,
    worker_env,
)


async def test_two_workers_send_each_of_500_deliveries_exactly_once(
    postgres_url: str,
    start_sink: Callable[..., SinkServer],
    start_worker: Callable[..., WorkerProcess],
    open_store: Callable[[str], Store],
) -> None:
    seniors, escalations = 100, 5
    total = seniors * escalations
    await add_team(postgres_url, seniors)
    store = open_store(postgres_url)
    server = start_sink(delay=0.002)
    # Each worker signs its envelope with its own sender, so the sink can tell who sent what.
    workers = [
        start_worker(
            worker_env(
                postgres_url,
                server.url,
                HANDOFF_WORKER_BATCH="20",
                HANDOFF_WORKER_LEASE_SECONDS="60",
                HANDOFF_MAIL_FROM=f"{name}@workers.test",
            ),
            name,
        )
        for name in ("left", "right")
    ]
    for worker in workers:
        await worker.started()

    # Both are polling before the first delivery exists, so they race for every batch.
    await escalate(postgres_url, escalations)
    await eventually(lambda: store.all_sent(total), timeout=40, every=0.1, what=f"all {total} sent")
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert await worker.exit_code() == 0, worker.output()

    rows = await store.outbox()
    assert len(rows) == total
    assert all(r.leased_by is None for r in rows)
    seen = server.sink.message_ids()
    assert seen == Counter({r.message_id: 1 for r in rows})
    senders = server.sink.by_sender()
    assert set(senders) == {"left@workers.test", "right@workers.test"}, senders
