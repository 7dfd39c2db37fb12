-- 002_step_guard.sql — a step that has ended stays ended.
--
-- x4_step_update refuses to move a step out of a terminal state (succeeded, failed, skipped,
-- compensated). The scheduler never asks for that; if a bug or a reordered write ever did, the
-- write fails loudly (the run is dropped and resumed from the stored state) instead of silently
-- rewriting history. Compensation moves succeeded → compensated through its own function.
CREATE OR REPLACE FUNCTION x4_step_update(p_wf text, p_owner text, p_step text, p_status text, p_attempts int,
                                          p_output jsonb, p_error text, p_type text, p_data jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE cur text;
BEGIN
    PERFORM 1 FROM workflows w WHERE w.id = p_wf AND w.status = 'executing' AND w.lease_owner = p_owner FOR UPDATE;
    IF NOT FOUND THEN RETURN; END IF;
    SELECT s.status INTO cur FROM steps s WHERE s.workflow_id = p_wf AND s.id = p_step;
    IF cur IS NULL THEN RETURN; END IF;
    IF cur IN ('succeeded', 'failed', 'skipped', 'compensated') THEN
        RAISE EXCEPTION 'step % of % is already % and cannot become %', p_step, p_wf, cur, p_status
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE steps s SET status = p_status, attempts = p_attempts,
           output = CASE WHEN p_status = 'succeeded' THEN p_output ELSE s.output END,
           error = p_error,
           started_at = CASE WHEN p_status = 'running' AND s.started_at IS NULL THEN clock_timestamp() ELSE s.started_at END,
           finished_at = CASE WHEN p_status IN ('succeeded','failed','skipped') THEN clock_timestamp() ELSE NULL END
     WHERE s.workflow_id = p_wf AND s.id = p_step;
    RETURN QUERY SELECT * FROM x4_emit(p_wf, p_type, p_data);
END $$;
