-- 093_create_approved.sql — create and approve in one transaction: POST /workflows/create with
-- {"plan": …, "approve": true}. The workflow is inserted already executing, leased to the
-- creating process, with its escrow hold (x4_wf_hold, the hold x4_wf_approve takes too, so the
-- balance check X4001 and the daily cap X4002 are exactly those of POST …/approve) and its events
-- 1 planning, 2 plan_ready, 3 approved, 4 executing. p_started names root steps (no
-- dependencies) the process has a step slot for: they are stored `running`, attempt 1, with their
-- step.started events (5, 6, … in that order), so the engine sends their requests as soon as the
-- transaction commits, without a write of their own. If the hold is refused, nothing is stored.
-- There is no workflow.awaiting_approval event: nothing waits.

-- The hold for an estimate: estimate + HOLD_ALLOWANCE_PCT, moved from available to held in the
-- ledger (x4_ledger_move); X4001 when the balance is short, X4002 over the daily cap (charges of
-- today plus what executing/compensating workflows hold). Returns the hold (0: nothing held).
-- The caller stores it on the workflow row.
CREATE FUNCTION x4_wf_hold(p_id text, p_user text, p_estimate bigint, p_asset text, p_allowance_pct int,
                           p_daily_cap bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE hold bigint; avail bigint; spent bigint;
BEGIN
    hold := COALESCE(p_estimate, 0) + COALESCE(p_estimate, 0) * GREATEST(p_allowance_pct, 0) / 100;
    IF hold <= 0 THEN RETURN 0; END IF;
    SELECT a.available INTO avail FROM escrow_accounts a WHERE a.user_id = p_user AND a.asset = p_asset FOR UPDATE;
    IF COALESCE(avail, 0) < hold THEN
        RAISE EXCEPTION 'Insufficient escrow balance. Available: %, Required: %. Please top up.',
            x4_amount(COALESCE(avail, 0)), x4_amount(hold) USING ERRCODE = 'X4001';
    END IF;
    IF p_daily_cap IS NOT NULL THEN
        SELECT COALESCE(sum(l.amount), 0) INTO spent FROM ledger l
         WHERE l.user_id = p_user AND l.asset = p_asset AND l.kind = 'charge'
           AND l.created_at >= date_trunc('day', clock_timestamp());
        spent := spent + (SELECT COALESCE(sum(w2.held), 0) FROM workflows w2
                           WHERE w2.user_id = p_user AND w2.status IN ('executing','compensating'));
        IF spent + hold > p_daily_cap THEN
            RAISE EXCEPTION 'Daily spending cap of % reached: % spent or held today, % required.',
                x4_amount(p_daily_cap), x4_amount(spent), x4_amount(hold) USING ERRCODE = 'X4002';
        END IF;
    END IF;
    PERFORM x4_ledger_move(p_user, p_asset, 'hold', hold, -hold, hold, p_id, NULL, NULL, NULL);
    RETURN hold;
END $$;

CREATE OR REPLACE FUNCTION x4_wf_approve(p_id text, p_user text, p_owner text, p_lease_ms bigint, p_asset text,
                                         p_allowance_pct int, p_daily_cap bigint)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE est bigint; hold bigint; s bigint;
BEGIN
    UPDATE workflows w SET status = 'executing', started_at = clock_timestamp(), expires_at = NULL,
           lease_owner = p_owner, lease_until = clock_timestamp() + p_lease_ms * interval '1 millisecond',
           last_seq = w.last_seq + 2, updated_at = clock_timestamp()
     WHERE w.id = p_id AND w.user_id = p_user AND w.status = 'awaiting_approval'
       AND w.expires_at > clock_timestamp()
    RETURNING w.estimated_cost, w.last_seq INTO est, s;
    IF NOT FOUND THEN RETURN; END IF;
    hold := x4_wf_hold(p_id, p_user, est, p_asset, p_allowance_pct, p_daily_cap);
    IF hold > 0 THEN
        UPDATE workflows w SET held = hold, asset = p_asset WHERE w.id = p_id;
    END IF;
    RETURN QUERY INSERT INTO events AS e (workflow_id, seq, type, data)
                 VALUES (p_id, s - 1, 'workflow.approved', jsonb_build_object('held', x4_money(hold))),
                        (p_id, s, 'workflow.executing', '{}'::jsonb)
                 RETURNING e.workflow_id, e.seq, e.type, e.data, e.ts;
END $$;

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
