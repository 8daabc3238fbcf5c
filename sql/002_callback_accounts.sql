-- 002: identities for inbound ani_2way_ triggers, by the caller's number.
-- A caller found here (and enabled) is called back with this identity; others fall back to
-- TWOWAY_DEFAULT_USERNAME / _AUTHNAME / _MD5SECRET, or are refused.
CREATE TABLE IF NOT EXISTS callback_accounts (
    cli         text PRIMARY KEY,             -- the caller's number after normalisation
    username    text NOT NULL,
    authname    text,                         -- NULL: username
    md5secret   text NOT NULL,                -- HA1 hex
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT callback_accounts_md5secret_check CHECK (md5secret ~ '^[0-9a-fA-F]{32}$')
);

-- The debounce looks for live requests of a caller.
CREATE INDEX IF NOT EXISTS callback_requests_live_cli_idx ON callback_requests (original_cli)
    WHERE status IN ('pending', 'calling', 'connecting', 'bridged');
