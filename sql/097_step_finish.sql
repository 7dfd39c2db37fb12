-- 097_step_finish.sql — x4_step_finish (092) in one update of the workflow row: the completion,
-- the lease hand-back and both seqs (step.completed, workflow.completed) in one fenced UPDATE
-- (092 went through x4_step_update, x4_wf_finish and x4_emit: three new versions of the wide
-- row). Same signature, events and results; a terminal or missing step raises (the whole
-- transaction rolls back), a stale lease returns nothing.
CREATE OR REPLACE FUNCTION x4_step_finish(p_wf text, p_owner text, p_step text, p_attempts int, p_output jsonb,
                                          p_data jsonb, p_wf_output jsonb, p_wf_data jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE s bigint; tc bigint; rel bigint; cur text;
BEGIN
    UPDATE workflows w SET status = 'completed', output = p_wf_output, error = NULL, finished_at = clock_timestamp(),
           lease_owner = NULL, lease_until = NULL, last_seq = w.last_seq + 2, updated_at = clock_timestamp()
     WHERE w.id = p_wf AND w.status = 'executing' AND w.lease_owner = p_owner
    RETURNING w.last_seq, w.total_cost INTO s, tc;
    IF s IS NULL THEN RETURN; END IF;
    UPDATE steps st SET status = 'succeeded', attempts = p_attempts, output = p_output, error = NULL,
           finished_at = clock_timestamp()
     WHERE st.workflow_id = p_wf AND st.id = p_step
       AND st.status NOT IN ('succeeded', 'failed', 'skipped', 'compensated', 'compensation_failed');
    IF NOT FOUND THEN
        SELECT st.status INTO cur FROM steps st WHERE st.workflow_id = p_wf AND st.id = p_step;
        RAISE EXCEPTION 'step % of % is already % and cannot become succeeded', p_step, p_wf, COALESCE(cur, 'absent')
            USING ERRCODE = 'check_violation';
    END IF;
    rel := x4_wf_release(p_wf);
    RETURN QUERY INSERT INTO events AS e (workflow_id, seq, type, data)
                 VALUES (p_wf, s - 1, 'step.completed', COALESCE(p_data, '{}'::jsonb)),
                        (p_wf, s, 'workflow.completed', COALESCE(p_wf_data, '{}'::jsonb) ||
                            jsonb_build_object('totalCost', x4_money(tc), 'released', x4_money(rel)))
                 RETURNING e.workflow_id, e.seq, e.type, e.data, e.ts;
END $$;
