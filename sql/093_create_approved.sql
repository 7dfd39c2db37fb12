-- 093_create_approved.sql — create and approve in one transaction: POST /workflows/create with
-- {"plan": …, "approve": true}. The workflow is stored with its plan (events 1 planning, 2
-- plan_ready) and approved at once by x4_wf_approve (3 approved, 4 executing), so the escrow hold,
-- the balance check (X4001) and the daily cap (X4002) are exactly those of POST …/approve. If the
-- approval fails, the whole creation rolls back: nothing is stored. There is no
-- workflow.awaiting_approval event: nothing waits.
CREATE FUNCTION x4_wf_create_approved(p_id text, p_user text, p_input text, p_max_cost bigint, p_max_time bigint,
                                      p_owner text, p_lease_ms bigint, p_plan jsonb, p_estimate bigint,
                                      p_asset text, p_allowance_pct int, p_daily_cap bigint)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE n int;
BEGIN
    IF p_plan IS NULL THEN
        RAISE EXCEPTION 'a plan is required' USING ERRCODE = '22023';
    END IF;
    INSERT INTO workflows (id, user_id, status, input, max_cost, max_time_ms, plan, estimated_cost, expires_at, last_seq)
    VALUES (p_id, p_user, 'awaiting_approval', p_input, p_max_cost, p_max_time, p_plan, p_estimate,
            clock_timestamp() + interval '1 minute', 2);
    INSERT INTO steps (workflow_id, id, idx, service)
    SELECT p_id, s.value->>'id', (s.ordinality - 1)::int, s.value->>'service'
      FROM jsonb_array_elements(p_plan->'steps') WITH ORDINALITY s;
    RETURN QUERY INSERT INTO events AS e (workflow_id, seq, type, data)
                 VALUES (p_id, 1, 'workflow.planning', jsonb_build_object('input', p_input)),
                        (p_id, 2, 'workflow.plan_ready', jsonb_build_object('plan', p_plan, 'estimatedCost',
                                                                            x4_money(p_estimate), 'planner', 'explicit'))
                 RETURNING e.workflow_id, e.seq, e.type, e.data, e.ts;
    RETURN QUERY SELECT a.workflow_id, a.seq, a.type, a.data, a.ts
                   FROM x4_wf_approve(p_id, p_user, p_owner, p_lease_ms, p_asset, p_allowance_pct, p_daily_cap) a;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 2 THEN
        RAISE EXCEPTION 'the approval of % did not take', p_id;
    END IF;
END $$;
