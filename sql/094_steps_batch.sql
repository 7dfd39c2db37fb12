-- 094_steps_batch.sql — x4_steps_update as three set-based statements, whatever the batch size:
-- one fenced UPDATE of the workflow row takes every seq of the batch (090's version updated
-- the wide workflow row once per transition, i.e. one new row version each), one UPDATE of the
-- steps from the batch, one INSERT of the events. Same signature, results, events, order and
-- refusals as 090's: nothing when the workflow is not executing under p_owner; a terminal step
-- raises check_violation (the whole batch rolls back); a step that does not exist is left out
-- without an event (seqs stay gap-free).
CREATE OR REPLACE FUNCTION x4_steps_update(p_wf text, p_owner text, p_batch jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE n int; s bigint; done int[]; bad record;
BEGIN
    n := jsonb_array_length(p_batch);
    IF n = 0 THEN RETURN; END IF;
    UPDATE workflows w SET last_seq = w.last_seq + n, updated_at = clock_timestamp()
     WHERE w.id = p_wf AND w.status = 'executing' AND w.lease_owner = p_owner
    RETURNING w.last_seq INTO s;
    IF s IS NULL THEN RETURN; END IF;
    WITH b AS (SELECT x.value AS t, x.ordinality::int AS ord FROM jsonb_array_elements(p_batch) WITH ORDINALITY x),
         u AS (UPDATE steps st SET status = b.t->>'status', attempts = (b.t->>'attempts')::int,
                      output = CASE WHEN b.t->>'status' = 'succeeded' THEN b.t->'output' ELSE st.output END,
                      error = b.t->>'error',
                      started_at = CASE WHEN b.t->>'status' = 'running' AND st.started_at IS NULL
                                        THEN clock_timestamp() ELSE st.started_at END,
                      finished_at = CASE WHEN b.t->>'status' IN ('succeeded','failed','skipped')
                                         THEN clock_timestamp() ELSE NULL END
                 FROM b
                WHERE st.workflow_id = p_wf AND st.id = b.t->>'step'
                  AND st.status NOT IN ('succeeded', 'failed', 'skipped', 'compensated', 'compensation_failed')
               RETURNING b.ord)
    SELECT array_agg(u.ord ORDER BY u.ord) INTO done FROM u;
    IF COALESCE(cardinality(done), 0) < n THEN
        SELECT b.t->>'step' AS step, b.t->>'status' AS want, st.status AS cur INTO bad
          FROM jsonb_array_elements(p_batch) WITH ORDINALITY b(t, ord)
          JOIN steps st ON st.workflow_id = p_wf AND st.id = b.t->>'step'
         WHERE NOT (b.ord::int = ANY (COALESCE(done, '{}'))) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'step % of % is already % and cannot become %', bad.step, p_wf, bad.cur, bad.want
                USING ERRCODE = 'check_violation';
        END IF;
        -- steps that do not exist: no event, and the seqs they took are given back
        UPDATE workflows w SET last_seq = w.last_seq - (n - COALESCE(cardinality(done), 0)) WHERE w.id = p_wf;
        s := s - (n - COALESCE(cardinality(done), 0));
        n := COALESCE(cardinality(done), 0);
        IF n = 0 THEN RETURN; END IF;
    END IF;
    RETURN QUERY INSERT INTO events AS e (workflow_id, seq, type, data)
                 SELECT p_wf, s - n + k.rank, b.value->>'type', COALESCE(b.value->'data', '{}'::jsonb)
                   FROM unnest(done) WITH ORDINALITY k(ord, rank)
                   JOIN LATERAL (SELECT p_batch->(k.ord - 1) AS value) b ON true
                  ORDER BY k.rank
                 RETURNING e.workflow_id, e.seq, e.type, e.data, e.ts;
END $$;
