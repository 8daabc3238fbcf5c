"""Every SQL statement of the request queue, in one place.

Write-backs are fenced by ``lease_token``: a claim issues a new token, so an instance that lost
its lease (another instance recovered the row) matches nothing and changes nothing.
"""

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

# Idempotent (a retry after a lost reply must not count twice): the channel id names the attempt.
START_ATTEMPT = """
UPDATE callback_requests
SET attempts = CASE WHEN leg_a_channel_id IS NOT DISTINCT FROM $4 THEN attempts
                    ELSE attempts + 1 END,
    call_id = $3, leg_a_channel_id = $4, dialled_at = now(),
    answered_at = NULL, connected_at = NULL, leg_b_channel_id = NULL, bridge_id = NULL,
    leg_a_sip_call_id = NULL, leg_b_sip_call_id = NULL,
    leg_a_cause = NULL, leg_a_sip_code = NULL, leg_b_cause = NULL, leg_b_sip_code = NULL,
    leg_a_duration = NULL, leg_b_duration = NULL
WHERE id = $1 AND lease_token = $2 AND status = 'calling'
RETURNING attempts,
          EXTRACT(EPOCH FROM clock_timestamp() - greatest(next_call, created_at))::float8
              AS pickup_seconds
"""

LEG_A_ANSWERED = """
UPDATE callback_requests
SET status = 'connecting', answered_at = coalesce(answered_at, now()),
    leg_a_sip_call_id = $3, twoway_call_id = $4, leg_b_channel_id = $5
WHERE id = $1 AND lease_token = $2
  AND (status = 'calling' OR status = 'connecting' AND leg_b_channel_id = $5)
"""

BRIDGED = """
UPDATE callback_requests
SET status = 'bridged', connected_at = coalesce(connected_at, now()), bridge_id = $3,
    leg_b_sip_call_id = $4
WHERE id = $1 AND lease_token = $2
  AND (status = 'connecting' OR status = 'bridged' AND bridge_id = $3)
"""

# A cancel that raced the end keeps its status and result.
FINISH = """
UPDATE callback_requests
SET status = CASE WHEN status = 'cancelled' THEN status ELSE $3 END,
    result = CASE WHEN status = 'cancelled' THEN 'cancelled' ELSE $4 END,
    result_reason = $5, ended_at = now(), lease_until = NULL,
    leg_a_cause = $6, leg_a_sip_code = $7, leg_b_cause = $8, leg_b_sip_code = $9,
    leg_a_duration = $10, leg_b_duration = $11
WHERE id = $1 AND lease_token = $2 AND status NOT IN ('completed', 'failed')
"""

RETRY = f"""
UPDATE callback_requests
SET status = 'pending', result = $3, result_reason = $4,
    next_call = now() + make_interval(secs => $5),
    claimed_by = NULL, lease_token = NULL, lease_until = NULL,
    leg_a_cause = $6, leg_a_sip_code = $7, leg_b_cause = $8, leg_b_sip_code = $9,
    leg_a_duration = $10, leg_b_duration = $11
WHERE id = $1 AND lease_token = $2 AND status IN {LIVE}
"""

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
