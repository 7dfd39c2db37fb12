-- 091_create_planner.sql — creation with a plan names who planned it: "explicit" (the request's
-- own plan) or "cache:<planner>" (the plan cache answered at creation, x4_wf_cache_probe), in
-- workflow.plan_ready. Otherwise 090's x4_wf_create, unchanged.
DROP FUNCTION x4_wf_create(text, text, text, bigint, bigint, text, bigint, jsonb, bigint, bigint);
CREATE FUNCTION x4_wf_create(p_id text, p_user text, p_input text, p_max_cost bigint, p_max_time bigint,
                             p_owner text, p_lease_ms bigint, p_plan jsonb, p_estimate bigint, p_ttl_ms bigint,
                             p_planner text DEFAULT 'explicit')
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE exp timestamptz;
BEGIN
    IF p_plan IS NULL THEN
        INSERT INTO workflows (id, user_id, status, input, max_cost, max_time_ms, lease_owner, lease_until, last_seq)
        VALUES (p_id, p_user, 'planning', p_input, p_max_cost, p_max_time, p_owner,
                clock_timestamp() + p_lease_ms * interval '1 millisecond', 1);
        RETURN QUERY INSERT INTO events AS e (workflow_id, seq, type, data)
                     VALUES (p_id, 1, 'workflow.planning', jsonb_build_object('input', p_input))
                     RETURNING e.workflow_id, e.seq, e.type, e.data, e.ts;
        RETURN;
    END IF;
    exp := clock_timestamp() + p_ttl_ms * interval '1 millisecond';
    INSERT INTO workflows (id, user_id, status, input, max_cost, max_time_ms, plan, estimated_cost, expires_at, last_seq)
    VALUES (p_id, p_user, 'awaiting_approval', p_input, p_max_cost, p_max_time, p_plan, p_estimate, exp, 3);
    INSERT INTO steps (workflow_id, id, idx, service)
    SELECT p_id, s.value->>'id', (s.ordinality - 1)::int, s.value->>'service'
      FROM jsonb_array_elements(p_plan->'steps') WITH ORDINALITY s;
    RETURN QUERY INSERT INTO events AS e (workflow_id, seq, type, data)
                 VALUES (p_id, 1, 'workflow.planning', jsonb_build_object('input', p_input)),
                        (p_id, 2, 'workflow.plan_ready', jsonb_build_object('plan', p_plan, 'estimatedCost',
                                                                            x4_money(p_estimate), 'planner',
                                                                            COALESCE(p_planner, 'explicit'))),
                        (p_id, 3, 'workflow.awaiting_approval',
                         jsonb_build_object('expiresAt', to_char(exp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))
                 RETURNING e.workflow_id, e.seq, e.type, e.data, e.ts;
END $$;
