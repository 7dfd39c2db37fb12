-- 092_step_finish.sql — the last step's success and the workflow's completion in one
-- transaction (engine/exec/sched.c, when every other step has succeeded and no other write is
-- in flight): one durable commit instead of two at the end of every workflow. The success goes
-- first, fenced like any step write (x4_step_update); when the fence refuses, nothing is stored
-- and nothing is returned. Then x4_wf_finish (sql/007) completes the workflow.
CREATE FUNCTION x4_step_finish(p_wf text, p_owner text, p_step text, p_attempts int, p_output jsonb, p_data jsonb,
                               p_wf_output jsonb, p_wf_data jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM x4_step_update(p_wf, p_owner, p_step, 'succeeded', p_attempts, p_output, NULL,
                                              'step.completed', p_data);
    IF NOT FOUND THEN RETURN; END IF;
    RETURN QUERY SELECT * FROM x4_wf_finish(p_wf, p_owner, 'completed', p_wf_output, NULL, 'workflow.completed',
                                            p_wf_data);
END $$;
