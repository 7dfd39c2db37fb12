-- 009_failover.sql — matching at execution (engine/exec/failover.h): a step whose service is
-- unavailable moves to another service within its approved price. The step's `service` column
-- is the truth from then on (a resumed run reads it instead of the plan's), and
-- step.failover {stepId, from, to, reason} says so. Fenced like every step write.

CREATE FUNCTION x4_step_failover(p_wf text, p_owner text, p_step text, p_service text, p_data jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM workflows w WHERE w.id = p_wf AND w.status = 'executing' AND w.lease_owner = p_owner FOR UPDATE;
    IF NOT FOUND THEN RETURN; END IF;
    UPDATE steps s SET service = p_service
     WHERE s.workflow_id = p_wf AND s.id = p_step AND s.status IN ('pending', 'running', 'retrying');
    IF NOT FOUND THEN RETURN; END IF;
    RETURN QUERY SELECT * FROM x4_emit(p_wf, 'step.failover', p_data);
END $$;
