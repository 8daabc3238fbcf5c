"""Every SQL statement of the request queue, in one place.

Write-backs are fenced by ``lease_token``: a claim issues a new token, so an instance that lost
its lease (another instance recovered the row) matches nothing and changes nothing.
"""

from dataclasses import dataclass

from stasis_app.domain.request import COLUMNS

# A claim returns every column the domain's CallbackRequest carries.
SELECT_COLUMNS = ", ".join(f"r.{name}" for name in COLUMNS)

LIVE = "('calling', 'connecting', 'bridged')"

CLAIM = f"""
WITH due AS (
    SELECT id FROM callback_requests
    WHERE status = 'pending' AND next_call <= now()
    ORDER BY next_call
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE callback_requests r
SET status = 'calling', claimed_by = $2, lease_token = gen_random_uuid(),
    lease_until = now() + make_interval(secs => $3), claimed_at = now(),
    -- cleared so a row in 'calling' without a channel id is known to be undialled
    leg_a_channel_id = NULL, leg_b_channel_id = NULL, bridge_id = NULL
FROM due WHERE r.id = due.id
RETURNING {SELECT_COLUMNS}
"""

# Live rows whose instance stopped renewing the lease (it died, or lost the database for
# longer than the lease), and, once at start-up, the rows this instance id held before a restart.
RECOVER = f"""
WITH lost AS (
    SELECT id FROM callback_requests
    WHERE status IN {LIVE} AND (lease_until < now() OR (claimed_by = $2 AND $4))
    ORDER BY lease_until
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE callback_requests r
SET claimed_by = $2, lease_token = gen_random_uuid(),
    lease_until = now() + make_interval(secs => $3), claimed_at = now()
FROM lost WHERE r.id = lost.id
RETURNING {SELECT_COLUMNS}
"""

# Seconds from now to the earliest pending next_call (negative: something is due already).
NEXT_DUE_IN = """
SELECT EXTRACT(EPOCH FROM (min(next_call) - now()))::float8
FROM callback_requests WHERE status = 'pending'
"""

# A lease is ours while its token is: a row another instance recovered has a new one. A live
# row cancelled meanwhile stays ours until its session has hung up and finished it.
_HELD = f"""r.lease_token = l.token
  AND (r.status IN {LIVE} OR r.status = 'cancelled' AND r.lease_until IS NOT NULL)"""

RENEW_LEASES = f"""
UPDATE callback_requests r SET lease_until = now() + make_interval(secs => $1)
FROM unnest($2::bigint[], $3::uuid[]) AS l(id, token)
WHERE r.id = l.id AND {_HELD}
RETURNING r.id
"""

# The live sessions' rows, read back: which were cancelled, which are no longer ours.
RECONCILE = f"""
SELECT l.id, coalesce(r.status = 'cancelled', false) AS cancelled, coalesce({_HELD}, false) AS held
FROM unnest($1::bigint[], $2::uuid[]) AS l(id, token)
LEFT JOIN callback_requests r ON r.id = l.id
"""


@dataclass(frozen=True, slots=True)
class Batched:
    """A write-back for many rows at once: one statement, one round trip.

    Parameters are arrays, one element per row: ``$1`` ids, ``$2`` lease tokens, then the
    write's own columns. One result row per row locked: ``applied`` is false when the fence
    (lease token) or the state check said no. ``batch`` skips rows another transaction holds
    (``SKIP LOCKED``), so it never waits for a lock while holding others and cannot deadlock with
    an operator's bulk UPDATE; the store writes those rows alone with ``single``, which waits.
    """

    batch: str
    single: str


def _batched(
    columns: str, types: str, assignments: str, condition: str, returning: str = ""
) -> Batched:
    arrays = ", ".join(f"${n}::{t}[]" for n, t in enumerate(["bigint", "uuid", *types.split()], 1))

    def build(lock: str) -> str:
        return f"""
WITH v AS (SELECT * FROM unnest({arrays}) AS u(id, token, {columns})),
locked AS (
    SELECT r.id FROM callback_requests r JOIN v ON r.id = v.id ORDER BY r.id {lock}
),
done AS (
    UPDATE callback_requests r SET {assignments}
    FROM v
    WHERE r.id = v.id AND r.id IN (SELECT id FROM locked) AND r.lease_token = v.token
      AND ({condition})
    RETURNING r.id AS done_id{returning}
)
SELECT l.id, d.done_id IS NOT NULL AS applied, d.*
FROM locked l LEFT JOIN done d ON d.done_id = l.id
"""

    return Batched(batch=build("FOR UPDATE OF r SKIP LOCKED"), single=build("FOR UPDATE OF r"))


# Idempotent (a retry after a lost reply must not count twice): the channel id names the attempt.
START_ATTEMPT = _batched(
    "call_id, channel_id",
    "text text",
    """attempts = CASE WHEN r.leg_a_channel_id IS NOT DISTINCT FROM v.channel_id
                         THEN r.attempts ELSE r.attempts + 1 END,
        call_id = v.call_id, leg_a_channel_id = v.channel_id, dialled_at = now(),
        answered_at = NULL, connected_at = NULL, leg_b_channel_id = NULL, bridge_id = NULL,
        leg_a_sip_call_id = NULL, leg_b_sip_call_id = NULL,
        leg_a_cause = NULL, leg_a_sip_code = NULL, leg_b_cause = NULL, leg_b_sip_code = NULL,
        leg_a_duration = NULL, leg_b_duration = NULL""",
    "r.status = 'calling'",
    """, r.attempts,
        EXTRACT(EPOCH FROM clock_timestamp() - greatest(r.next_call, r.created_at))::float8
            AS pickup_seconds""",
)

LEG_A_ANSWERED = _batched(
    "sip_call_id, twoway_call_id, leg_b",
    "text text text",
    """status = 'connecting', answered_at = coalesce(r.answered_at, now()),
        leg_a_sip_call_id = v.sip_call_id, twoway_call_id = v.twoway_call_id,
        leg_b_channel_id = v.leg_b""",
    "r.status = 'calling' OR r.status = 'connecting' AND r.leg_b_channel_id = v.leg_b",
)

BRIDGED = _batched(
    "bridge, sip_call_id",
    "text text",
    """status = 'bridged', connected_at = coalesce(r.connected_at, now()), bridge_id = v.bridge,
        leg_b_sip_call_id = v.sip_call_id""",
    "r.status = 'connecting' OR r.status = 'bridged' AND r.bridge_id = v.bridge",
)

_LEG_COLUMNS = "a_cause, a_sip, b_cause, b_sip, a_duration, b_duration"
_LEG_TYPES = "int int int int float8 float8"
_LEG_VALUES = """leg_a_cause = v.a_cause, leg_a_sip_code = v.a_sip, leg_b_cause = v.b_cause,
        leg_b_sip_code = v.b_sip, leg_a_duration = v.a_duration, leg_b_duration = v.b_duration"""

# A cancel that raced the end keeps its status and result.
FINISH = _batched(
    f"status, result, reason, {_LEG_COLUMNS}",
    f"text text text {_LEG_TYPES}",
    f"""status = CASE WHEN r.status = 'cancelled' THEN r.status ELSE v.status END,
        result = CASE WHEN r.status = 'cancelled' THEN 'cancelled' ELSE v.result END,
        result_reason = v.reason, ended_at = now(), lease_until = NULL,
        {_LEG_VALUES}""",
    "r.status NOT IN ('completed', 'failed')",
)

RETRY = _batched(
    f"result, reason, delay, {_LEG_COLUMNS}, void",
    f"text text float8 {_LEG_TYPES} bool",
    f"""status = 'pending', result = v.result, result_reason = v.reason,
        next_call = now() + make_interval(secs => v.delay),
        claimed_by = NULL, lease_token = NULL, lease_until = NULL,
        -- void: Asterisk created no channel, the attempt does not count, its channel id is free
        attempts = r.attempts - CASE WHEN v.void THEN 1 ELSE 0 END,
        leg_a_channel_id = CASE WHEN v.void THEN NULL ELSE r.leg_a_channel_id END,
        {_LEG_VALUES}""",
    f"r.status IN {LIVE}",
)

# Claimed but never dialled: back to the queue with no attempt spent.
RELEASE = """
UPDATE callback_requests
SET status = 'pending', claimed_by = NULL, lease_token = NULL, lease_until = NULL
WHERE id = $1 AND lease_token = $2 AND status = 'calling' AND attempts = $3
"""

STATUS_OF = "SELECT status FROM callback_requests WHERE id = $1"

# Uses the partial index: cheap enough to run every few seconds.
QUEUE_DEPTH = """
SELECT count(*) FILTER (WHERE next_call <= now()) AS due, count(*) AS pending
FROM callback_requests WHERE status = 'pending'
"""
