-- 099_write_group.sql — x4_sched_write_group: the step writes of several workflows in one
-- transaction (one commit instead of one each). The engine sends it at the end of every
-- event-loop turn with each run's write of that turn (exec/sched.c, on_flush): an array is a
-- batch for x4_steps_update (094), an object the last step's success with the completion for
-- x4_step_finish (097: {step, attempts, output, data, wfOutput, wfData}). Per workflow exactly
-- what that function does and returns; its rows are contiguous, and a workflow not executing
-- under p_owner contributes none. The batches go first, in the order given; then the finishes,
-- in the order of their workflows' users — a finish releases the hold on the user's balance
-- row, and taking those row locks in one order means two groups in flight (here or in another
-- process) can never wait on each other. A refusal that raises (a terminal step) rolls the
-- whole group back: the engine then sends each write on its own, so one bad write never costs
-- the others theirs. The group takes its workflow rows in id order before anything else, as the
-- lease renewal now does (redefined below): two multi-row lockers in one order cannot deadlock.
CREATE OR REPLACE FUNCTION x4_sched_write_group(p_owner text, p_wfs text[], p_items jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE it jsonb; f record;
BEGIN
    IF jsonb_typeof(p_items) IS DISTINCT FROM 'array'
       OR COALESCE(cardinality(p_wfs), 0) <> jsonb_array_length(p_items) THEN
        RAISE EXCEPTION 'x4_sched_write_group: % workflows, % items', cardinality(p_wfs),
            CASE WHEN jsonb_typeof(p_items) = 'array' THEN jsonb_array_length(p_items) END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the workflow rows first, all of them, in id order: x4_lease_cycle (below) takes its rows
    -- in the same order, so a group and a lease renewal can never wait on each other
    PERFORM 1 FROM workflows w WHERE w.id = ANY (p_wfs) ORDER BY w.id FOR UPDATE;
    FOR i IN 1 .. COALESCE(cardinality(p_wfs), 0) LOOP
        it := p_items->(i - 1);
        IF jsonb_typeof(it) = 'array' THEN
            RETURN QUERY SELECT * FROM x4_steps_update(p_wfs[i], p_owner, it);
        ELSIF jsonb_typeof(it) IS DISTINCT FROM 'object' THEN
            RAISE EXCEPTION 'x4_sched_write_group: item % is neither a batch nor a finish', i
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    FOR f IN SELECT k.i, k.wf, p_items->(k.i::int - 1) AS it
               FROM unnest(p_wfs) WITH ORDINALITY k(wf, i)
               LEFT JOIN workflows w ON w.id = k.wf
              WHERE jsonb_typeof(p_items->(k.i::int - 1)) = 'object'
              ORDER BY w.user_id, w.asset, k.wf LOOP
        RETURN QUERY SELECT * FROM x4_step_finish(f.wf, p_owner, f.it->>'step', (f.it->>'attempts')::int,
                                                  f.it->'output', f.it->'data', f.it->'wfOutput', f.it->'wfData');
    END LOOP;
END $$;

-- x4_lease_cycle (001) renewed its rows in whatever order the UPDATE scanned them; a group
-- write holds several of the same rows, so the renewal now locks them in id order first. Same
-- signature, results and claims.
CREATE OR REPLACE FUNCTION x4_lease_cycle(p_owner text, p_lease_ms bigint, p_limit int)
RETURNS TABLE (id text, status text, claimed boolean)
LANGUAGE plpgsql AS $$
DECLARE until timestamptz := clock_timestamp() + p_lease_ms * interval '1 millisecond';
BEGIN
    PERFORM 1 FROM workflows w
     WHERE w.lease_owner = p_owner AND w.status IN ('planning','executing','compensating')
     ORDER BY w.id FOR UPDATE;
    RETURN QUERY UPDATE workflows w SET lease_until = until
                  WHERE w.lease_owner = p_owner AND w.status IN ('planning','executing','compensating')
                  RETURNING w.id, w.status, false;
    RETURN QUERY UPDATE workflows w SET lease_owner = p_owner, lease_until = until
                  WHERE w.id IN (SELECT x.id FROM workflows x
                                  WHERE x.status IN ('planning','executing','compensating')
                                    AND (x.lease_until IS NULL OR x.lease_until < clock_timestamp())
                                  ORDER BY x.lease_until NULLS FIRST LIMIT p_limit FOR UPDATE SKIP LOCKED)
                  RETURNING w.id, w.status, true;
END $$;
