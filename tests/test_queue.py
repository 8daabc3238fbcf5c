"""The claim, the lease fence and the watcher, against a real Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from stasis_app.domain.request import CallbackRequest, Outcome
from stasis_app.store import queries
from stasis_app.store.batching import WriteBatch
from stasis_app.store.listener import APPLICATION_NAME, NotifyListener
from stasis_app.store.requests import RequestStore
from stasis_app.store.watcher import QueueWatcher


async def insert(pool: asyncpg.Pool, n: int = 1, delay: float = 0.0) -> list[int]:
    rows = await pool.fetch(
        "INSERT INTO callback_requests (username, md5secret, original_cli, original_cld, next_call)"
        " SELECT '801', 'x', g::text, '2way_1', now() + make_interval(secs => $2)"
        " FROM generate_series(1, $1) g RETURNING id",
        n,
        delay,
    )
    return [r["id"] for r in rows]


async def test_claim_takes_due_rows_once_oldest_first(pool: asyncpg.Pool) -> None:
    ids = await insert(pool, 3)
    await insert(pool, 2, delay=3600)
    store = RequestStore(pool, "inst-1", 60)
    claimed = await store.claim(10)
    assert [r.id for r in claimed] == ids
    assert {r.status for r in claimed} == {"calling"}
    assert await store.claim(10) == []
    row = await pool.fetchrow(
        "SELECT claimed_by, lease_until > now() AS leased FROM callback_requests WHERE id = $1",
        ids[0],
    )
    assert (row["claimed_by"], row["leased"]) == ("inst-1", True)


async def test_two_claimers_never_get_the_same_row(pool: asyncpg.Pool) -> None:
    await insert(pool, 300)
    stores = [RequestStore(pool, f"inst-{i}", 60) for i in range(2)]

    async def drain(store: RequestStore) -> list[int]:
        got: list[int] = []
        while batch := await store.claim(7):
            got += [r.id for r in batch]
        return got

    first, second = await asyncio.gather(*(drain(s) for s in stores))
    assert len(first) + len(second) == 300
    assert not set(first) & set(second)


async def test_write_backs_are_fenced_by_the_lease(pool: asyncpg.Pool) -> None:
    await insert(pool)
    store = RequestStore(pool, "inst-1", 60)
    (req,) = await store.claim(1)
    stale = replace(req, lease_token=uuid.uuid4())
    assert await store.start_attempt(stale, "cid", "chan") is None
    pickup = await store.start_attempt(req, "cid", "chan")
    assert pickup is not None and pickup >= 0
    failed = Outcome(status="failed", result="callback_busy", leg_a_cause=17)
    assert not await store.finish(stale, failed)
    assert await store.finish(req, failed)
    row = await pool.fetchrow(
        "SELECT status, result, leg_a_cause, call_id, attempts FROM callback_requests"
    )
    assert tuple(row) == ("failed", "callback_busy", 17, "cid", 1)


async def test_finish_keeps_a_concurrent_cancel(pool: asyncpg.Pool) -> None:
    await insert(pool)
    store = RequestStore(pool, "inst-1", 60)
    (req,) = await store.claim(1)
    await pool.execute("UPDATE callback_requests SET status = 'cancelled'")
    assert await store.finish(req, Outcome(status="completed", result="answered"))
    row = await pool.fetchrow("SELECT status, result FROM callback_requests")
    assert tuple(row) == ("cancelled", "cancelled")


def _scans(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Every (node type, index name) of a JSON plan whose relation is callback_requests."""
    found: list[tuple[str, str | None]] = []
    if plan.get("Relation Name") == "callback_requests":
        found.append((plan["Node Type"], plan.get("Index Name")))
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


async def test_claim_stays_an_index_scan_with_many_rows_waiting(pool: asyncpg.Pool) -> None:
    """The claim's cost must not grow with the table: 20,000 rows pending for later and 5,000
    finished ones, 100 due; the due rows are found through the partial index on next_call and
    each row is updated through its primary key, never by a sequential scan."""
    await insert(pool, 20_000, delay=86_400)
    done = await insert(pool, 5_000)
    await pool.execute(
        "UPDATE callback_requests SET status = 'completed', result = 'answered' WHERE id = ANY($1)",
        done,
    )
    await insert(pool, 100)
    await pool.execute("ANALYZE callback_requests")
    async with pool.acquire() as conn:
        for query, args in (
            (queries.CLAIM, (100, "inst-1", 60.0)),
            (queries.NEXT_DUE_IN, ()),
        ):
            plan = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query}", *args))
            scans = _scans(plan[0]["Plan"])
            assert scans, plan
            assert all(kind != "Seq Scan" for kind, _ in scans), scans
            assert {"Index Scan", "Index Only Scan"} & {
                kind for kind, index in scans if index == "callback_requests_due_idx"
            }, scans


class _Counted:
    """A WriteBatch's way to the database that counts its statements."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements = 0

    async def __call__(
        self, what: str, query: str, columns: list[list[object]]
    ) -> list[asyncpg.Record]:
        self.statements += 1
        rows: list[asyncpg.Record] = await self.pool.fetch(query, *columns)
        return rows


def _finish_args(req: CallbackRequest, status: str = "completed") -> tuple[object, ...]:
    return (req.id, req.lease_token, status, "answered", "caller hung up", *([None] * 6))


async def test_write_backs_of_many_calls_share_one_statement(pool: asyncpg.Pool) -> None:
    await insert(pool, 50)
    claimed = await RequestStore(pool, "inst-1", 60).claim(50)
    run = _Counted(pool)
    batch = WriteBatch("finish", queries.FINISH, run)
    stale = replace(claimed[0], lease_token=uuid.uuid4())
    results = await asyncio.gather(
        batch.write(*_finish_args(stale)), *(batch.write(*_finish_args(r)) for r in claimed[1:])
    )
    assert results[0] is None  # fenced off, alone: the others are applied
    assert all(row is not None for row in results[1:])
    assert run.statements == 1  # all came in one turn of the loop
    assert (
        await pool.fetchval("SELECT count(*) FROM callback_requests WHERE status = 'completed'")
        == len(claimed) - 1
    )


async def test_a_bad_row_fails_alone_and_a_locked_row_waits(pool: asyncpg.Pool) -> None:
    await insert(pool, 4)
    first, bad, locked, good = await RequestStore(pool, "inst-1", 60).claim(4)
    batch = WriteBatch("finish", queries.FINISH, _Counted(pool))
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM callback_requests WHERE id = $1 FOR UPDATE", locked.id)
        writes = [
            asyncio.ensure_future(batch.write(*_finish_args(req, status)))
            for req, status in ((first, "completed"), (bad, "bogus"), (good, "completed"))
        ]
        await asyncio.sleep(0)  # the three are out together; the fourth comes after
        writes.append(asyncio.ensure_future(batch.write(*_finish_args(locked))))
        await asyncio.wait_for(asyncio.wait(writes[:3]), 10)
        assert not writes[3].done()  # waits for the lock; the rows beside it did not
    assert await asyncio.wait_for(writes[3], 10) is not None
    assert writes[0].result() is not None and writes[2].result() is not None
    with pytest.raises(asyncpg.CheckViolationError):
        writes[1].result()
    rows = await pool.fetch("SELECT id, status FROM callback_requests ORDER BY id")
    assert {r["id"]: r["status"] for r in rows} == {
        first.id: "completed",
        bad.id: "calling",
        locked.id: "completed",
        good.id: "completed",
    }


async def test_release_returns_undialled_rows(pool: asyncpg.Pool) -> None:
    await insert(pool, 2)
    store = RequestStore(pool, "inst-1", 60)
    first, second = await store.claim(2)
    await store.start_attempt(second, "cid", "chan")
    assert await store.release(first)
    assert not await store.release(second)  # dialled already: not silently requeued
    assert await store.status_of(first.id) == "pending"


class Harness:
    """A watcher with a LISTEN connection, recording what it claims."""

    def __init__(self, db_url: str, pool: asyncpg.Pool, max_sleep: float) -> None:
        self.claimed: asyncio.Queue[CallbackRequest] = asyncio.Queue()
        self.store = RequestStore(pool, "inst-w", 60)
        self.watcher = QueueWatcher(
            self.store,
            batch=10,
            max_sleep=max_sleep,
            free_slots=lambda: 100,
            on_claimed=self._claimed,
        )
        self.listener = NotifyListener(
            db_url,
            on_notify=lambda _p: self.watcher.wake(),
            on_up=self.watcher.wake,
            probe_interval=0.5,
        )

    def _claimed(self, rows: list[CallbackRequest]) -> None:
        for row in rows:
            self.claimed.put_nowait(row)


@pytest.fixture
async def harness(db_url: str, pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    # max_sleep far above every wait below: only a NOTIFY or the due-time timer can explain
    # a claim within the bounded waits.
    h = Harness(db_url, pool, max_sleep=120)
    tasks = [asyncio.create_task(h.watcher.run()), asyncio.create_task(h.listener.run())]
    yield h
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_listening(listener: NotifyListener) -> None:
    async def poll() -> None:
        while not listener.connected:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 10)


async def test_notify_wakes_the_watcher(harness: Harness, pool: asyncpg.Pool) -> None:
    await wait_listening(harness.listener)
    (rid,) = await insert(pool)
    got = await asyncio.wait_for(harness.claimed.get(), 10)
    assert got.id == rid


async def test_future_row_is_claimed_when_due(harness: Harness, pool: asyncpg.Pool) -> None:
    await wait_listening(harness.listener)
    (rid,) = await insert(pool, delay=2.0)
    got = await asyncio.wait_for(harness.claimed.get(), 15)
    assert got.id == rid
    # Claimed after it became due, by the database's clock.
    assert await pool.fetchval(
        "SELECT claimed_at >= next_call FROM callback_requests WHERE id = $1", rid
    )


async def test_listen_connection_comes_back(harness: Harness, pool: asyncpg.Pool) -> None:
    await wait_listening(harness.listener)
    await pool.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        APPLICATION_NAME,
    )

    async def reconnected() -> None:
        while harness.listener.reconnects < 1 or not harness.listener.connected:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(reconnected(), 15)
    (rid,) = await insert(pool)
    got = await asyncio.wait_for(harness.claimed.get(), 10)
    assert got.id == rid
