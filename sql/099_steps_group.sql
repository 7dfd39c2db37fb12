-- 099_steps_group.sql — x4_steps_update_group: the batched step writes of several workflows in
-- one transaction (one commit instead of one each). The engine sends it with every run's
-- batch of one event-loop turn (exec/sched.c, on_flush). Per workflow exactly what
-- x4_steps_update (094) does and returns, in the order given: its rows are contiguous, and a
-- workflow not executing under p_owner contributes none. A terminal step in any batch raises
-- (check_violation) and the whole group rolls back: the engine then sends each batch on its
-- own, so one bad batch never costs the others their write.
CREATE OR REPLACE FUNCTION x4_steps_update_group(p_owner text, p_wfs text[], p_batches jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    IF COALESCE(cardinality(p_wfs), 0) <> jsonb_array_length(p_batches) THEN
        RAISE EXCEPTION 'x4_steps_update_group: % workflows, % batches', cardinality(p_wfs), jsonb_array_length(p_batches)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1 .. COALESCE(cardinality(p_wfs), 0) LOOP
        RETURN QUERY SELECT * FROM x4_steps_update(p_wfs[i], p_owner, p_batches->(i - 1));
    END LOOP;
END $$;
