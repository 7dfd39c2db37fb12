-- 098_create_started.sql — create with approve also stores the start of the plan's first steps:
-- p_started names root steps (no dependencies) this process has a slot for; they are stored
-- `running`, attempt 1, with their step.started events (seq 5, 6, … in that order), in the same
-- transaction, so the engine sends their requests as soon as it commits, without a write of
-- their own. Otherwise 096's x4_wf_create_approved, unchanged.
DROP FUNCTION x4_wf_create_approved(text, text, text, bigint, bigint, text, bigint, jsonb, bigint, text, int, bigint);
CREATE FUNCTION x4_wf_create_approved(p_id text, p_user text, p_input text, p_max_cost bigint, p_max_time bigint,
                                      p_owner text, p_lease_ms bigint, p_plan jsonb, p_estimate bigint,
                                      p_asset text, p_allowance_pct int, p_daily_cap bigint,
                                      p_started text[] DEFAULT '{}')
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE hold bigint; n int;
BEGIN
    IF p_plan IS NULL THEN
        RAISE EXCEPTION 'a plan is required' USING ERRCODE = '22023';
    END IF;
    n := COALESCE(cardinality(p_started), 0);
    IF n > 0 AND EXISTS (SELECT 1 FROM unnest(p_started) u(id)
                          WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(p_plan->'steps') s
                                             WHERE s.value->>'id' = u.id
                                               AND jsonb_array_length(COALESCE(s.value->'dependsOn', '[]')) = 0)) THEN
        RAISE EXCEPTION 'only steps without dependencies can start at creation' USING ERRCODE = '22023';
    END IF;
    hold := x4_wf_hold(p_id, p_user, p_estimate, p_asset, p_allowance_pct, p_daily_cap);
    INSERT INTO workflows (id, user_id, status, input, max_cost, max_time_ms, plan, estimated_cost, started_at,
                           lease_owner, lease_until, held, asset, last_seq)
    VALUES (p_id, p_user, 'executing', p_input, p_max_cost, p_max_time, p_plan, p_estimate, clock_timestamp(),
            p_owner, clock_timestamp() + p_lease_ms * interval '1 millisecond', hold,
            CASE WHEN hold > 0 THEN p_asset END, 4 + n);
    INSERT INTO steps (workflow_id, id, idx, service, status, attempts, started_at)
    SELECT p_id, s.value->>'id', (s.ordinality - 1)::int, s.value->>'service',
           CASE WHEN s.value->>'id' = ANY (p_started) THEN 'running' ELSE 'pending' END,
           CASE WHEN s.value->>'id' = ANY (p_started) THEN 1 ELSE 0 END,
           CASE WHEN s.value->>'id' = ANY (p_started) THEN clock_timestamp() END
      FROM jsonb_array_elements(p_plan->'steps') WITH ORDINALITY s;
    RETURN QUERY INSERT INTO events AS e (workflow_id, seq, type, data)
                 SELECT p_id, v.seq, v.type, v.data FROM (
                     VALUES (1::bigint, 'workflow.planning', jsonb_build_object('input', p_input)),
                            (2, 'workflow.plan_ready', jsonb_build_object('plan', p_plan, 'estimatedCost',
                                                                         x4_money(p_estimate), 'planner', 'explicit')),
                            (3, 'workflow.approved', jsonb_build_object('held', x4_money(hold))),
                            (4, 'workflow.executing', '{}'::jsonb)) v(seq, type, data)
                 UNION ALL
                 SELECT p_id, 4 + k.ord, 'step.started',
                        jsonb_build_object('stepId', k.id, 'service',
                                           (SELECT s.value->>'service' FROM jsonb_array_elements(p_plan->'steps') s
                                             WHERE s.value->>'id' = k.id), 'attempt', 1)
                   FROM unnest(p_started) WITH ORDINALITY k(id, ord)
                 ORDER BY 2
                 RETURNING e.workflow_id, e.seq, e.type, e.data, e.ts;
END $$;
