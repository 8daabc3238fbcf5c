-- Least-privilege Postgres roles for twoway-callback.
--
--   twoway_owner  owns the tables, functions and triggers: `twoway-callback migrate` connects
--                 as this role (systemd: /etc/twoway-callback/migrate.env).
--   twoway_app    what the service (`twoway-callback run`) connects as. It reads, inserts and
--                 updates queue rows and may LISTEN; it cannot DELETE, TRUNCATE, DROP, ALTER or
--                 CREATE anything, nor change the migrations record.
--
-- Run it as a superuser, connected to the app's database (it grants on current_database()):
--   psql -v ON_ERROR_STOP=1 -d twoway -f deploy/db/roles.sql
-- It is idempotent. Run it
--   1. once before the first `twoway-callback migrate`: it creates the roles and the schema
--      rights; the table grants are skipped with a NOTICE, the tables do not exist yet;
--   2. after every `twoway-callback migrate`: it grants on the tables migrations created
--      (an upgrade that adds a table needs this before the new version runs).
--
-- Passwords are not in this file. Set them once, e.g. in psql:
--   \password twoway_owner
--   \password twoway_app
-- Other role names: replace twoway_owner / twoway_app throughout this file.

-- 1. Roles --------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'twoway_owner') THEN
        CREATE ROLE twoway_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'twoway_app') THEN
        -- One pool (TWOWAY_DB_POOL_SIZE, default 10) plus one LISTEN connection per instance:
        -- add a CONNECTION LIMIT here if you want a hard cap.
        CREATE ROLE twoway_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END $$;

-- 2. Database and schema ------------------------------------------------------------------
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO twoway_owner, twoway_app',
                   current_database());
END $$;

-- Before Postgres 15 every role may create objects in schema public: only the owner role may.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO twoway_owner;
GRANT USAGE ON SCHEMA public TO twoway_app;

-- 3. Tables (after `twoway-callback migrate`) -----------------------------------------------
DO $$
DECLARE
    seq text;
BEGIN
    IF to_regclass('public.callback_requests') IS NULL THEN
        RAISE NOTICE 'tables not there yet: run `twoway-callback migrate`, then this script again';
        RETURN;
    END IF;

    -- The queue: claims and write-backs are UPDATEs (SELECT ... FOR UPDATE needs UPDATE too);
    -- INSERT for the seed's SQL, the API and inbound requests. No DELETE: rows are history.
    GRANT SELECT, INSERT, UPDATE ON public.callback_requests TO twoway_app;
    -- Written by the status-change trigger, which runs as the role making the change.
    GRANT SELECT, INSERT ON public.callback_request_history TO twoway_app;
    -- `run` checks that every migration it needs is applied.
    GRANT SELECT ON public.twoway_schema_migrations TO twoway_app;
    -- Accounts for inbound ani_2way_ calls and the API (added by a later migration).
    IF to_regclass('public.callback_accounts') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE ON public.callback_accounts TO twoway_app;
    END IF;
    -- Toll-fraud policy (migration 003): the rules are the operator's (edited with SQL), the
    -- service reads them; it records admissions and prunes those past the longest window.
    IF to_regclass('public.callback_policies') IS NOT NULL THEN
        GRANT SELECT ON public.callback_policies TO twoway_app;
        GRANT SELECT, INSERT, DELETE ON public.callback_admissions TO twoway_app;
    END IF;

    -- Identity (and serial) sequences behind those tables.
    FOR seq IN
        SELECT pg_get_serial_sequence(a.attrelid::regclass::text, a.attname)
        FROM pg_attribute a
        WHERE a.attrelid IN (SELECT to_regclass(t) FROM unnest(ARRAY[
                  'public.callback_requests', 'public.callback_request_history',
                  'public.callback_accounts']) AS t)
          AND a.attnum > 0 AND NOT a.attisdropped
          AND pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) IS NOT NULL
    LOOP
        EXECUTE format('GRANT USAGE ON SEQUENCE %s TO twoway_app', seq);
    END LOOP;
END $$;
