-- 003: toll-fraud defences (docs/security.md). A request the destination policy or a limit
-- refuses ends failed / policy_refused; nothing is dialled.
ALTER TABLE callback_requests DROP CONSTRAINT IF EXISTS callback_requests_result_check;
ALTER TABLE callback_requests ADD CONSTRAINT callback_requests_result_check CHECK (
    result IS NULL OR result IN (
        'answered', 'callback_busy', 'callback_no_answer', 'callback_rejected', 'callback_failed',
        'destination_busy', 'destination_no_answer', 'destination_failed', 'user_hangup',
        'invalid_request', 'policy_refused', 'cancelled', 'error'));

-- True when every element is a digit prefix (no NULL, no empty string).
CREATE OR REPLACE FUNCTION twoway_digit_prefixes(prefixes text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(bool_and(coalesce(p, '') ~ '^[0-9]+$'), true) FROM unnest(prefixes) AS p
$$;

-- Per-username rules and limits, edited with SQL. They add to the global settings
-- (TWOWAY_DESTINATION_* / TWOWAY_CALLBACK_* / TWOWAY_USER_MAX_*): a number must pass both rule
-- sets; a limit here (NULL: the setting's; 0: none) replaces the setting's for this username.
CREATE TABLE IF NOT EXISTS callback_policies (
    username                    text PRIMARY KEY,
    destination_allow_prefixes  text[] NOT NULL DEFAULT '{}',   -- leg B; empty: all
    destination_deny_prefixes   text[] NOT NULL DEFAULT '{}',
    callback_allow_prefixes     text[] NOT NULL DEFAULT '{}',   -- leg A
    callback_deny_prefixes      text[] NOT NULL DEFAULT '{}',
    max_live                    integer,                        -- callbacks live at once
    max_per_hour                integer,
    max_per_day                 integer,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    -- digit prefixes only, as after normalisation: a typo fails the statement, not the calls
    CONSTRAINT callback_policies_prefixes_check CHECK (twoway_digit_prefixes(
        destination_allow_prefixes || destination_deny_prefixes || callback_allow_prefixes
        || callback_deny_prefixes)),
    CONSTRAINT callback_policies_limits_check CHECK (
        coalesce(max_live, 0) >= 0 AND coalesce(max_per_hour, 0) >= 0
        AND coalesce(max_per_day, 0) >= 0)
);

-- Admissions counted against limits (written only while a limit applies): one row per request,
-- so a retry is not a second callback. Kept two days: the longest window is one.
CREATE TABLE IF NOT EXISTS callback_admissions (
    request_id   bigint PRIMARY KEY REFERENCES callback_requests (id) ON DELETE CASCADE,
    username     text NOT NULL,
    destination  text,                                  -- leg B, normalised digits
    admitted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS callback_admissions_user_idx
    ON callback_admissions (username, admitted_at);
CREATE INDEX IF NOT EXISTS callback_admissions_destination_idx
    ON callback_admissions (destination text_pattern_ops, admitted_at);
CREATE INDEX IF NOT EXISTS callback_admissions_at_idx ON callback_admissions (admitted_at);

-- Inbound limits count the trigger's own rows: per caller per hour, all callers per minute.
CREATE INDEX IF NOT EXISTS callback_requests_inbound_idx
    ON callback_requests (original_cli, created_at) WHERE source = 'inbound';
CREATE INDEX IF NOT EXISTS callback_requests_inbound_at_idx
    ON callback_requests (created_at) WHERE source = 'inbound';
