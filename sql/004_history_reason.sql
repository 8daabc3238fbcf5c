-- 004: the history keeps why each status change happened (the row's result_reason at that
-- moment), so a reason survives the next attempt: failures of earlier attempts, an operator's
-- retry or cancel. Filled by a trigger on the history itself: the status trigger of 001 stays.
ALTER TABLE callback_request_history ADD COLUMN IF NOT EXISTS reason text;

-- The history row is inserted by callback_requests' AFTER trigger, which sees the row as the
-- statement left it: one primary-key lookup per status change.
CREATE OR REPLACE FUNCTION callback_request_history_reason() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.reason IS NULL THEN
        NEW.reason := (SELECT result_reason FROM callback_requests WHERE id = NEW.request_id);
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS callback_request_history_reason ON callback_request_history;
CREATE TRIGGER callback_request_history_reason
    BEFORE INSERT ON callback_request_history
    FOR EACH ROW EXECUTE FUNCTION callback_request_history_reason();
