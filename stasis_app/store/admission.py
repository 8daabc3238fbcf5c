"""The gate between a claim and the call flow: the destination policy and the limits.

Per claimed batch (never per event): one query for the batch's ``callback_policies`` rows;
when a limit applies, one transaction that locks the counted keys (so instances agree),
counts, and records the admissions; one UPDATE failing the refused rows. With no rule and no
limit configured it costs the one policy query and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import asyncpg

from stasis_app import metrics
from stasis_app.domain.policy import (
    AccountPolicy,
    Candidate,
    DestinationPolicy,
    Limits,
    Refusal,
    UserCounts,
    account_rules,
    decide_limits,
    destination_of,
    needs_limits,
)
from stasis_app.domain.request import CallbackRequest, Result, Status

log = logging.getLogger(__name__)

LIVE = "('calling', 'connecting', 'bridged')"

ACCOUNTS = """
SELECT username, destination_allow_prefixes, destination_deny_prefixes, callback_allow_prefixes,
       callback_deny_prefixes, max_live, max_per_hour, max_per_day
FROM callback_policies WHERE username = ANY($1::text[])
"""

# Sorted lock ids, taken in that order by every instance: no deadlock between them.
LOCK_KEYS = """
SELECT pg_advisory_xact_lock(k)
FROM (SELECT DISTINCT hashtext(key) AS k FROM unnest($1::text[]) AS key ORDER BY 1) AS keys
"""

# $2: the batch being decided (its rows are 'calling' already, they are not live yet).
USER_COUNTS = f"""
SELECT u.name,
       (SELECT count(*) FROM callback_admissions a JOIN callback_requests r ON r.id = a.request_id
        WHERE a.username = u.name AND r.status IN {LIVE} AND r.id <> ALL($2::bigint[])) AS live,
       (SELECT count(*) FROM callback_admissions a
        WHERE a.username = u.name AND a.admitted_at > now() - interval '1 hour') AS hour,
       (SELECT count(*) FROM callback_admissions a
        WHERE a.username = u.name AND a.admitted_at > now() - interval '1 day') AS day
FROM unnest($1::text[]) AS u(name)
"""

DESTINATION_COUNTS = """
SELECT p.prefix,
       (SELECT count(*) FROM callback_admissions a
        WHERE a.destination LIKE p.prefix || '%' AND a.admitted_at > now() - interval '1 hour')
FROM unnest($1::text[]) AS p(prefix)
"""

COUNTED = "SELECT request_id FROM callback_admissions WHERE request_id = ANY($1::bigint[])"

RECORD = """
INSERT INTO callback_admissions (request_id, username, destination)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
ON CONFLICT (request_id) DO NOTHING
"""

PRUNE = """
DELETE FROM callback_admissions
WHERE admitted_at < now() - interval '2 days'
  AND request_id IN (SELECT request_id FROM callback_admissions
                     WHERE admitted_at < now() - interval '2 days' LIMIT 1000)
"""

# Fenced like every write-back: a row we no longer hold is left alone.
REFUSE = """
UPDATE callback_requests r
SET status = 'failed', result = 'policy_refused', result_reason = v.reason, ended_at = now(),
    lease_until = NULL
FROM unnest($1::bigint[], $2::uuid[], $3::text[]) AS v(id, token, reason)
WHERE r.id = v.id AND r.lease_token = v.token AND r.status = 'calling'
RETURNING r.id
"""


def _account(record: Mapping[str, object]) -> AccountPolicy:
    def prefixes(name: str) -> tuple[str, ...]:
        value = record[name]
        return tuple(str(p) for p in value) if isinstance(value, list) else ()

    def limit(name: str) -> int | None:
        value = record[name]
        return value if isinstance(value, int) else None

    return account_rules(
        str(record["username"]),
        destination_allow=prefixes("destination_allow_prefixes"),
        destination_deny=prefixes("destination_deny_prefixes"),
        callback_allow=prefixes("callback_allow_prefixes"),
        callback_deny=prefixes("callback_deny_prefixes"),
        max_live=limit("max_live"),
        max_per_hour=limit("max_per_hour"),
        max_per_day=limit("max_per_day"),
    )


async def account_policies(
    conn: asyncpg.Pool | asyncpg.Connection, usernames: Iterable[str | None]
) -> dict[str, AccountPolicy]:
    names = sorted({name for name in usernames if name})
    if not names:
        return {}
    return {r["username"]: _account(r) for r in await conn.fetch(ACCOUNTS, names)}


def count_refusal(refusal: Refusal) -> None:
    metrics.POLICY_REFUSALS.labels(refusal.rule.value).inc()


class AdmissionGate:
    def __init__(self, pool: asyncpg.Pool, policy: DestinationPolicy, limits: Limits) -> None:
        self._pool = pool
        self._policy = policy
        self._limits = limits

    async def __call__(self, claimed: Sequence[CallbackRequest]) -> list[CallbackRequest]:
        """The claimed rows that may be dialled; the others are failed here."""
        if not claimed:
            return []
        accounts = await account_policies(self._pool, (r.username for r in claimed))
        refused: dict[int, Refusal] = {}
        limited: list[tuple[CallbackRequest, AccountPolicy | None]] = []
        for req in claimed:
            account = accounts.get(req.username or "")
            refusal = self._policy.check(req.original_cli, req.original_cld, account)
            if refusal is not None:
                refused[req.id] = refusal
            elif req.username and needs_limits(self._limits, account):
                limited.append((req, account))
        if limited:
            refused.update(await self._apply_limits(limited, [r.id for r in claimed]))
        if refused:
            await self._refuse([r for r in claimed if r.id in refused], refused)
        return [r for r in claimed if r.id not in refused]

    async def _apply_limits(
        self, limited: list[tuple[CallbackRequest, AccountPolicy | None]], batch: list[int]
    ) -> dict[int, Refusal]:
        numbering = self._policy.numbering
        destinations = {
            req.id: numbering.normalise(cld)
            for req, _ in limited
            if (cld := destination_of(req.original_cld)) is not None
        }
        users = sorted({req.username or "" for req, _ in limited})
        prefixes = sorted(
            {
                p
                for d in destinations.values()
                if (p := self._limits.destination_prefix(d)) is not None
            }
        )
        keys = [f"twoway-user:{u}" for u in users] + [f"twoway-dest:{p}" for p in prefixes]
        ids = [req.id for req, _ in limited]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK_KEYS, keys)
            user_counts = {
                r["name"]: UserCounts(r["live"], r["hour"], r["day"])
                for r in await conn.fetch(USER_COUNTS, users, batch)
            }
            prefix_counts: dict[str, int] = (
                {r[0]: r[1] for r in await conn.fetch(DESTINATION_COUNTS, prefixes)}
                if prefixes
                else {}
            )
            counted = {r[0] for r in await conn.fetch(COUNTED, ids)}
            candidates = [
                Candidate(req.username or "", destinations.get(req.id), account, req.id in counted)
                for req, account in limited
            ]
            verdicts = decide_limits(candidates, self._limits, user_counts, prefix_counts)
            admitted = [req for (req, _), v in zip(limited, verdicts, strict=True) if v is None]
            if admitted:
                await conn.execute(
                    RECORD,
                    [r.id for r in admitted],
                    [r.username for r in admitted],
                    [destinations.get(r.id) for r in admitted],
                )
                await conn.execute(PRUNE)
        return {req.id: v for (req, _), v in zip(limited, verdicts, strict=True) if v is not None}

    async def _refuse(self, rows: list[CallbackRequest], refused: Mapping[int, Refusal]) -> None:
        written = {
            r["id"]
            for r in await self._pool.fetch(
                REFUSE,
                [r.id for r in rows],
                [r.lease_token for r in rows],
                [refused[r.id].reason for r in rows],
            )
        }
        for req in rows:
            refusal = refused[req.id]
            count_refusal(refusal)
            log.warning(
                "refused by policy: %s",
                refusal.reason,
                extra={"action": "policy_refused", "request_id": req.id, "rule": refusal.rule},
            )
            if req.id in written:
                metrics.FINISHED.labels(Status.FAILED, Result.POLICY_REFUSED).inc()
