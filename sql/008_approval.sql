-- 008_approval.sql — approval.lua's decisions (engine/exec/approval.c).
--
-- The process that stored a plan asks approval.decide once the workflow is awaiting approval:
-- `auto` approves it through x4_wf_approve (the same hold, caps and events as a user's
-- approve); `deny` ends it (awaiting_approval → failed, "denied: <reason>"); `manual` with its
-- own expiry moves expires_at and announces workflow.awaiting_approval again with the new
-- expiresAt and the reason.

CREATE FUNCTION x4_wf_approval_expiry(p_id text, p_ms bigint, p_reason text)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE exp timestamptz := clock_timestamp() + p_ms * interval '1 millisecond';
BEGIN
    UPDATE workflows w SET expires_at = exp WHERE w.id = p_id AND w.status = 'awaiting_approval';
    IF NOT FOUND THEN RETURN; END IF;
    RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.awaiting_approval', jsonb_build_object(
        'expiresAt', to_char(exp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'reason', p_reason));
END $$;
