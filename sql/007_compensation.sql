-- 007_compensation.sql — the saga: undoing the succeeded steps of a failed or cancelled workflow.
--
-- executing → compensating → failed | cancelled (DESIGN.md "Workflow states"). A workflow enters
-- `compensating` when it fails (by its lease holder) or is cancelled (by its user; the
-- cancelling process takes the lease) after at least one step succeeded. Its lease holder then
-- computes the compensation plan (rollback.lua or the built-in default) and stores it once
-- (x4_comp_plan, which announces workflow.compensating), runs each compensation in order —
-- every attempt counted before it is sent (x4_comp_attempt), each step ending in `compensated`
-- or `compensation_failed` (x4_comp_step) — and finishes (x4_comp_finish): the workflow gets
-- its final status, the unused hold is released, every step that was charged without a result
-- is flagged `refund_due` in the ledger, and `rollback` records what was undone and what could
-- not be. Every write is fenced by (status = 'compensating', lease_owner). A restart midway
-- resumes from the stored plan and step states; a compensation is sent again with the same
-- Idempotency-Key "<workflow>:<step>:compensate", so a service applies it once.

ALTER TABLE workflows ADD COLUMN final_status text CHECK (final_status IN ('failed', 'cancelled'));
ALTER TABLE workflows ADD COLUMN compensation jsonb;   -- the plan: [{step, url, method, body, headers}]
ALTER TABLE workflows ADD COLUMN rollback jsonb;       -- the outcome: {undone, failed, notUndone, refundDue}

ALTER TABLE steps DROP CONSTRAINT steps_status_check;
ALTER TABLE steps ADD CONSTRAINT steps_status_check
    CHECK (status IN ('pending','running','retrying','succeeded','failed','skipped','compensated',
                      'compensation_failed'));
ALTER TABLE steps ADD COLUMN comp_attempts int NOT NULL DEFAULT 0;
ALTER TABLE steps ADD COLUMN comp_error text;

-- Steps that were charged but gave no result: flag each payment for refund (idempotent: the
-- flag is keyed by the payment's signature). Returns the ids of those steps.
CREATE FUNCTION x4_wf_flag_refunds(p_wf text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE p record; ids text[] := '{}';
BEGIN
    FOR p IN SELECT x.id, x.step_id FROM payments x JOIN steps s ON s.workflow_id = x.workflow_id AND s.id = x.step_id
              WHERE x.workflow_id = p_wf AND x.charged AND s.status IN ('failed', 'skipped')
              ORDER BY x.id
    LOOP
        PERFORM x4_payment_refund_due(p.id, 'the service was paid for step ' || p.step_id || ' but gave no result');
        IF NOT p.step_id = ANY(ids) THEN ids := ids || p.step_id; END IF;
    END LOOP;
    RETURN ids;
END $$;

-- What the final record says about undoing (built from the step states).
CREATE FUNCTION x4_wf_rollback_summary(p_wf text, p_refunds text[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'undone', COALESCE((SELECT jsonb_agg(s.id ORDER BY s.idx) FROM steps s
                             WHERE s.workflow_id = p_wf AND s.status = 'compensated'), '[]'::jsonb),
        'failed', COALESCE((SELECT jsonb_agg(jsonb_build_object('stepId', s.id, 'error', s.comp_error) ORDER BY s.idx)
                              FROM steps s WHERE s.workflow_id = p_wf AND s.status = 'compensation_failed'), '[]'::jsonb),
        'notUndone', COALESCE((SELECT jsonb_agg(s.id ORDER BY s.idx) FROM steps s
                                WHERE s.workflow_id = p_wf AND s.status = 'succeeded'), '[]'::jsonb),
        'refundDue', to_jsonb(COALESCE(p_refunds, '{}'::text[])))
$$;

-- The end of an executing workflow, by its lease holder (replaces 003's): a failed one also
-- flags its charged-without-result steps for refund and records the rollback summary.
CREATE OR REPLACE FUNCTION x4_wf_finish(p_wf text, p_owner text, p_status text, p_output jsonb, p_error text,
                                        p_type text, p_data jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE rel bigint; refunds text[]; rb jsonb;
BEGIN
    UPDATE workflows w SET status = p_status, output = p_output, error = p_error,
           finished_at = clock_timestamp(), lease_owner = NULL, lease_until = NULL
     WHERE w.id = p_wf AND w.status = 'executing' AND w.lease_owner = p_owner;
    IF NOT FOUND THEN RETURN; END IF;
    rel := x4_wf_release(p_wf);
    IF p_status <> 'completed' THEN
        refunds := x4_wf_flag_refunds(p_wf);
        rb := x4_wf_rollback_summary(p_wf, refunds);
        UPDATE workflows w SET rollback = rb WHERE w.id = p_wf;
    END IF;
    RETURN QUERY SELECT * FROM x4_emit(p_wf, p_type, p_data || jsonb_build_object(
        'totalCost', x4_money((SELECT w.total_cost FROM workflows w WHERE w.id = p_wf)),
        'released', x4_money(rel)) || CASE WHEN rb IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('rollback', rb) END);
END $$;

-- A failing workflow with succeeded steps: executing → compensating, by its lease holder (who
-- keeps the lease and goes on to plan the compensations). Steps not yet ended were closed by
-- the scheduler before this. Returns whether it moved.
CREATE FUNCTION x4_wf_compensate(p_wf text, p_owner text, p_final text, p_error text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workflows w SET status = 'compensating', final_status = p_final, error = p_error
     WHERE w.id = p_wf AND w.status = 'executing' AND w.lease_owner = p_owner;
    RETURN FOUND;
END $$;

-- Cancel (replaces 003's): from planning or awaiting_approval, or executing without a succeeded
-- step, it ends at once as before. Executing with a succeeded step, it closes the unfinished
-- steps and moves to compensating with the lease given to the cancelling process p_owner (which
-- then runs the compensations), announced by workflow.cancelling; the old lease holder's writes
-- are refused from here on and workflow.cancelled comes when the compensations have ended.
DROP FUNCTION x4_wf_cancel(text, text);
CREATE FUNCTION x4_wf_cancel(p_id text, p_user text, p_owner text, p_lease_ms bigint)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE r record; st text; undo boolean; refunds text[]; rb jsonb;
BEGIN
    SELECT w.status INTO st FROM workflows w
     WHERE w.id = p_id AND w.user_id = p_user AND w.status IN ('planning','awaiting_approval','executing') FOR UPDATE;
    IF NOT FOUND THEN RETURN; END IF;
    undo := st = 'executing' AND EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = p_id AND s.status = 'succeeded');
    IF undo THEN
        UPDATE workflows w SET status = 'compensating', final_status = 'cancelled', error = 'cancelled',
               lease_owner = p_owner, lease_until = clock_timestamp() + p_lease_ms * interval '1 millisecond'
         WHERE w.id = p_id;
    ELSE
        UPDATE workflows w SET status = 'cancelled', finished_at = clock_timestamp(), expires_at = NULL,
               lease_owner = NULL, lease_until = NULL
         WHERE w.id = p_id;
    END IF;
    FOR r IN WITH u AS (
                 UPDATE steps s SET status = CASE WHEN s.status IN ('running','retrying') THEN 'failed' ELSE 'skipped' END,
                        error = 'cancelled', finished_at = clock_timestamp()
                  WHERE s.workflow_id = p_id AND s.status IN ('pending','running','retrying')
                  RETURNING s.id, s.status, s.idx)
             SELECT * FROM u ORDER BY u.idx
    LOOP
        RETURN QUERY SELECT * FROM x4_emit(p_id, CASE WHEN r.status = 'failed' THEN 'step.failed' ELSE 'step.skipped' END,
                                           jsonb_build_object('stepId', r.id, 'error', 'cancelled', 'reason', 'cancelled'));
    END LOOP;
    IF undo THEN
        RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.cancelling', jsonb_build_object('reason', 'cancelled'));
        RETURN;
    END IF;
    PERFORM x4_wf_release(p_id);
    IF st = 'executing' THEN
        refunds := x4_wf_flag_refunds(p_id);
        rb := x4_wf_rollback_summary(p_id, refunds);
        UPDATE workflows w SET rollback = rb WHERE w.id = p_id;
    END IF;
    RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.cancelled', CASE WHEN rb IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('rollback', rb) END);
END $$;

-- The compensation plan, stored once by the lease holder. An empty plan finishes the workflow
-- at once (nothing to undo); otherwise workflow.compensating announces it.
CREATE FUNCTION x4_comp_plan(p_wf text, p_owner text, p_plan jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workflows w SET compensation = p_plan
     WHERE w.id = p_wf AND w.status = 'compensating' AND w.lease_owner = p_owner AND w.compensation IS NULL;
    IF NOT FOUND THEN RETURN; END IF;
    IF jsonb_array_length(p_plan) = 0 THEN
        RETURN QUERY SELECT * FROM x4_comp_finish(p_wf, p_owner);
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM x4_emit(p_wf, 'workflow.compensating', jsonb_build_object(
        'reason', (SELECT w.error FROM workflows w WHERE w.id = p_wf),
        'steps', (SELECT jsonb_agg(c->>'step') FROM jsonb_array_elements(p_plan) c)));
END $$;

-- One compensation attempt is about to be sent: counted first (fenced). Returns the count, or
-- NULL when this process no longer holds the workflow or the step is already settled.
CREATE FUNCTION x4_comp_attempt(p_wf text, p_owner text, p_step text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE n int;
BEGIN
    PERFORM 1 FROM workflows w WHERE w.id = p_wf AND w.status = 'compensating' AND w.lease_owner = p_owner FOR UPDATE;
    IF NOT FOUND THEN RETURN NULL; END IF;
    UPDATE steps s SET comp_attempts = s.comp_attempts + 1
     WHERE s.workflow_id = p_wf AND s.id = p_step AND s.status = 'succeeded'
    RETURNING s.comp_attempts INTO n;
    RETURN n;
END $$;

-- A step's compensation ended: succeeded → compensated | compensation_failed, with its event.
CREATE FUNCTION x4_comp_step(p_wf text, p_owner text, p_step text, p_ok boolean, p_error text, p_data jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM workflows w WHERE w.id = p_wf AND w.status = 'compensating' AND w.lease_owner = p_owner FOR UPDATE;
    IF NOT FOUND THEN RETURN; END IF;
    UPDATE steps s SET status = CASE WHEN p_ok THEN 'compensated' ELSE 'compensation_failed' END,
           comp_error = CASE WHEN p_ok THEN NULL ELSE p_error END
     WHERE s.workflow_id = p_wf AND s.id = p_step AND s.status = 'succeeded';
    IF NOT FOUND THEN RETURN; END IF;
    RETURN QUERY SELECT * FROM x4_emit(p_wf, CASE WHEN p_ok THEN 'step.compensated' ELSE 'step.compensation_failed' END,
                                       jsonb_build_object('stepId', p_step) || COALESCE(p_data, '{}'::jsonb)
                                       || CASE WHEN p_ok THEN '{}'::jsonb ELSE jsonb_build_object('error', p_error) END);
END $$;

-- compensating → its final status (failed | cancelled): the hold released, refunds flagged,
-- the rollback summary stored and announced with the final event.
CREATE FUNCTION x4_comp_finish(p_wf text, p_owner text)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE fin text; err text; rel bigint; refunds text[]; rb jsonb;
BEGIN
    UPDATE workflows w SET status = w.final_status, finished_at = clock_timestamp(),
           lease_owner = NULL, lease_until = NULL
     WHERE w.id = p_wf AND w.status = 'compensating' AND w.lease_owner = p_owner
    RETURNING w.final_status, w.error INTO fin, err;
    IF NOT FOUND THEN RETURN; END IF;
    rel := x4_wf_release(p_wf);
    refunds := x4_wf_flag_refunds(p_wf);
    rb := x4_wf_rollback_summary(p_wf, refunds);
    UPDATE workflows w SET rollback = rb WHERE w.id = p_wf;
    RETURN QUERY SELECT * FROM x4_emit(p_wf, 'workflow.' || fin,
        CASE WHEN fin = 'failed' THEN jsonb_build_object('error', err) ELSE '{}'::jsonb END
        || jsonb_build_object('totalCost', x4_money((SELECT w.total_cost FROM workflows w WHERE w.id = p_wf)),
                              'released', x4_money(rel), 'rollback', rb));
END $$;
