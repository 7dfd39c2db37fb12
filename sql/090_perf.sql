-- 090_perf.sql — the hot write path with fewer statements and fewer row versions (issue 6,
-- bench/RESULTS.md "Profiling"). Same signatures, same results, same events as before:
--
-- * x4_step_update: the lease fence, the row lock and the seq bump are one UPDATE of the
--   workflow row (was: SELECT … FOR UPDATE, a SELECT of the step, then x4_emit's UPDATE); the
--   step's UPDATE refuses a terminal step in its WHERE, and only when it matched nothing is the
--   step read, to raise exactly as 002_step_guard does (or, for a step that does not exist, to
--   undo the seq bump and return no row).
-- * x4_steps_update (new): several step transitions of one workflow in one transaction, in
--   order — the scheduler stores a step's success together with the start of the steps it
--   unblocks (exec/sched.c), so a join costs one commit instead of two.
-- * x4_wf_create with a plan: the workflow row is inserted already awaiting approval with
--   last_seq = 3 and its three events in one INSERT (was: insert, then four UPDATEs of the same
--   row — plan_ready's and one per x4_emit — each a new row version).
-- * x4_wf_approve: the two events' seqs are taken by the approving UPDATE itself (was: two more
--   UPDATEs of the row through x4_emit). The money part is unchanged.

CREATE OR REPLACE FUNCTION x4_step_update(p_wf text, p_owner text, p_step text, p_status text, p_attempts int,
                                          p_output jsonb, p_error text, p_type text, p_data jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE s bigint; cur text;
BEGIN
    UPDATE workflows w SET last_seq = w.last_seq + 1, updated_at = clock_timestamp()
     WHERE w.id = p_wf AND w.status = 'executing' AND w.lease_owner = p_owner
    RETURNING w.last_seq INTO s;
    IF s IS NULL THEN RETURN; END IF;
    UPDATE steps st SET status = p_status, attempts = p_attempts,
           output = CASE WHEN p_status = 'succeeded' THEN p_output ELSE st.output END,
           error = p_error,
           started_at = CASE WHEN p_status = 'running' AND st.started_at IS NULL THEN clock_timestamp() ELSE st.started_at END,
           finished_at = CASE WHEN p_status IN ('succeeded','failed','skipped') THEN clock_timestamp() ELSE NULL END
     WHERE st.workflow_id = p_wf AND st.id = p_step
       AND st.status NOT IN ('succeeded', 'failed', 'skipped', 'compensated', 'compensation_failed');
    IF NOT FOUND THEN
        SELECT st.status INTO cur FROM steps st WHERE st.workflow_id = p_wf AND st.id = p_step;
        IF cur IS NOT NULL THEN
            RAISE EXCEPTION 'step % of % is already % and cannot become %', p_step, p_wf, cur, p_status
                USING ERRCODE = 'check_violation';
        END IF;
        UPDATE workflows w SET last_seq = w.last_seq - 1 WHERE w.id = p_wf; -- no such step: no event
        RETURN;
    END IF;
    RETURN QUERY INSERT INTO events AS e (workflow_id, seq, type, data)
                 VALUES (p_wf, s, p_type, COALESCE(p_data, '{}'::jsonb))
                 RETURNING e.workflow_id, e.seq, e.type, e.data, e.ts;
END $$;

-- p_batch: [{"step", "status", "attempts", "output", "error", "type", "data"}, ...], applied in
-- order with x4_step_update's rules. The first transition is the fence: when it returns nothing
-- (not executing, or not leased to p_owner) nothing is stored and nothing is returned.
CREATE OR REPLACE FUNCTION x4_steps_update(p_wf text, p_owner text, p_batch jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE t jsonb; n int := 0;
BEGIN
    FOR t IN SELECT x.value FROM jsonb_array_elements(p_batch) x LOOP
        RETURN QUERY SELECT * FROM x4_step_update(p_wf, p_owner, t->>'step', t->>'status', (t->>'attempts')::int,
                                                  t->'output', t->>'error', t->>'type', t->'data');
        IF NOT FOUND AND n = 0 THEN RETURN; END IF;
        n := n + 1;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION x4_wf_create(p_id text, p_user text, p_input text, p_max_cost bigint, p_max_time bigint,
                                        p_owner text, p_lease_ms bigint, p_plan jsonb, p_estimate bigint, p_ttl_ms bigint)
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
                                                                            x4_money(p_estimate), 'planner', 'explicit')),
                        (p_id, 3, 'workflow.awaiting_approval',
                         jsonb_build_object('expiresAt', to_char(exp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))
                 RETURNING e.workflow_id, e.seq, e.type, e.data, e.ts;
END $$;

CREATE OR REPLACE FUNCTION x4_wf_approve(p_id text, p_user text, p_owner text, p_lease_ms bigint, p_asset text,
                                         p_allowance_pct int, p_daily_cap bigint)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE est bigint; hold bigint; avail bigint; spent bigint; s bigint;
BEGIN
    UPDATE workflows w SET status = 'executing', started_at = clock_timestamp(), expires_at = NULL,
           lease_owner = p_owner, lease_until = clock_timestamp() + p_lease_ms * interval '1 millisecond',
           last_seq = w.last_seq + 2, updated_at = clock_timestamp()
     WHERE w.id = p_id AND w.user_id = p_user AND w.status = 'awaiting_approval'
       AND w.expires_at > clock_timestamp()
    RETURNING w.estimated_cost, w.last_seq INTO est, s;
    IF NOT FOUND THEN RETURN; END IF;
    hold := COALESCE(est, 0) + COALESCE(est, 0) * GREATEST(p_allowance_pct, 0) / 100;
    IF hold > 0 THEN
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
        UPDATE workflows w SET held = hold, asset = p_asset WHERE w.id = p_id;
    END IF;
    RETURN QUERY INSERT INTO events AS e (workflow_id, seq, type, data)
                 VALUES (p_id, s - 1, 'workflow.approved', jsonb_build_object('held', x4_money(hold))),
                        (p_id, s, 'workflow.executing', '{}'::jsonb)
                 RETURNING e.workflow_id, e.seq, e.type, e.data, e.ts;
END $$;
