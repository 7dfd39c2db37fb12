-- 001_init.sql — users, API keys, workflows, steps and the event log.
--
-- Every change that touches more than one row is a function here, so the engine makes it with
-- one query = one transaction = one round trip. Mutating functions return the events they
-- stored (workflow_id, seq, type, data, ts) so the caller publishes exactly what was made
-- durable; zero rows means the transition did not apply (wrong state, or the caller lost its
-- lease: step writes are fenced by lease_owner).
--
-- seq is per workflow and gap-free: x4_emit() increments workflows.last_seq under the row lock
-- the UPDATE takes, so concurrent emitters serialise on the workflow row.

CREATE TABLE users (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    is_admin    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          text PRIMARY KEY,                 -- public part of the key
    user_id     text NOT NULL REFERENCES users(id),
    hash        bytea NOT NULL,                   -- BLAKE2b-256 of the whole key
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE workflows (
    id              text PRIMARY KEY,
    user_id         text NOT NULL REFERENCES users(id),
    status          text NOT NULL CHECK (status IN ('planning','awaiting_approval','executing','completed',
                                                    'failed','cancelled','expired','compensating')),
    input           text NOT NULL,
    plan            jsonb,
    estimated_cost  bigint CHECK (estimated_cost >= 0),
    total_cost      bigint NOT NULL DEFAULT 0 CHECK (total_cost >= 0),
    max_cost        bigint CHECK (max_cost >= 0),
    max_time_ms     bigint,
    output          jsonb,
    error           text,
    last_seq        bigint NOT NULL DEFAULT 0,
    expires_at      timestamptz,
    lease_owner     text,
    lease_until     timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX workflows_user_created ON workflows (user_id, created_at DESC, id DESC);
CREATE INDEX workflows_live ON workflows (status, lease_until)
    WHERE status IN ('planning','executing','compensating');
CREATE INDEX workflows_expiring ON workflows (expires_at) WHERE status = 'awaiting_approval';

CREATE TABLE steps (
    workflow_id text NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    id          text NOT NULL,
    idx         int NOT NULL,
    service     text NOT NULL,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','running','retrying','succeeded',
                                                                  'failed','skipped','compensated')),
    attempts    int NOT NULL DEFAULT 0,
    cost        bigint NOT NULL DEFAULT 0 CHECK (cost >= 0),
    output      jsonb,
    error       text,
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (workflow_id, id)
);

CREATE TABLE events (
    workflow_id text NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    type        text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}',
    ts          timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_id, seq)
);

-- ISO-8601 UTC with milliseconds, the API's one timestamp format.
CREATE FUNCTION x4_iso(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- Money as the API shows it: {"amount": "2.000000", "atomic": "2000000"} (USDC, 6 decimals).
CREATE FUNCTION x4_money(v bigint) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL THEN NULL ELSE
        jsonb_build_object('amount', (v / 1000000)::text || '.' || lpad((v % 1000000)::text, 6, '0'),
                           'atomic', v::text) END
$$;

-- One event: bump the workflow's seq (row-locked) and store the event.
CREATE FUNCTION x4_emit(p_wf text, p_type text, p_data jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE s bigint;
BEGIN
    UPDATE workflows w SET last_seq = w.last_seq + 1, updated_at = clock_timestamp()
     WHERE w.id = p_wf RETURNING w.last_seq INTO s;
    IF s IS NULL THEN RETURN; END IF;
    RETURN QUERY INSERT INTO events AS e (workflow_id, seq, type, data)
                 VALUES (p_wf, s, p_type, COALESCE(p_data, '{}'::jsonb))
                 RETURNING e.workflow_id, e.seq, e.type, e.data, e.ts;
END $$;

-- planning -> awaiting_approval with the plan, its steps and the estimate.
CREATE FUNCTION x4_wf_plan_ready(p_id text, p_plan jsonb, p_estimate bigint, p_ttl_ms bigint, p_planner text)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE exp timestamptz := clock_timestamp() + p_ttl_ms * interval '1 millisecond';
BEGIN
    UPDATE workflows w SET status = 'awaiting_approval', plan = p_plan, estimated_cost = p_estimate,
           expires_at = exp, lease_owner = NULL, lease_until = NULL
     WHERE w.id = p_id AND w.status = 'planning';
    IF NOT FOUND THEN RETURN; END IF;
    INSERT INTO steps (workflow_id, id, idx, service)
    SELECT p_id, s.value->>'id', (s.ordinality - 1)::int, s.value->>'service'
      FROM jsonb_array_elements(p_plan->'steps') WITH ORDINALITY s;
    RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.plan_ready',
                   jsonb_build_object('plan', p_plan, 'estimatedCost', x4_money(p_estimate), 'planner', p_planner));
    RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.awaiting_approval',
                   jsonb_build_object('expiresAt', to_char(exp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')));
END $$;

-- Creation, leased to the creating process. With an explicit (already validated) plan the
-- workflow reaches awaiting_approval in the same transaction; without one it stays in planning
-- and its lease holder plans it (another process re-plans it if this one dies).
CREATE FUNCTION x4_wf_create(p_id text, p_user text, p_input text, p_max_cost bigint, p_max_time bigint,
                             p_owner text, p_lease_ms bigint, p_plan jsonb, p_estimate bigint, p_ttl_ms bigint)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflows (id, user_id, status, input, max_cost, max_time_ms, lease_owner, lease_until)
    VALUES (p_id, p_user, 'planning', p_input, p_max_cost, p_max_time, p_owner,
            clock_timestamp() + p_lease_ms * interval '1 millisecond');
    RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.planning', jsonb_build_object('input', p_input));
    IF p_plan IS NOT NULL THEN
        RETURN QUERY SELECT * FROM x4_wf_plan_ready(p_id, p_plan, p_estimate, p_ttl_ms, 'explicit');
    END IF;
END $$;

-- Generic guarded transition of the workflow row plus one event. p_from lists the states it
-- may leave; terminal targets set finished_at and drop the lease.
CREATE FUNCTION x4_wf_transition(p_id text, p_from text[], p_to text, p_type text, p_data jsonb,
                                 p_error text DEFAULT NULL)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE terminal boolean := p_to IN ('completed','failed','cancelled','expired');
BEGIN
    UPDATE workflows w SET status = p_to, error = COALESCE(p_error, w.error),
           finished_at = CASE WHEN terminal THEN clock_timestamp() ELSE w.finished_at END,
           lease_owner = CASE WHEN terminal THEN NULL ELSE w.lease_owner END,
           lease_until = CASE WHEN terminal THEN NULL ELSE w.lease_until END
     WHERE w.id = p_id AND w.status = ANY (p_from);
    IF NOT FOUND THEN RETURN; END IF;
    RETURN QUERY SELECT * FROM x4_emit(p_id, p_type, p_data);
END $$;

-- awaiting_approval -> executing, leased to the approving process. Of N concurrent approves
-- exactly one finds the row still awaiting_approval.
CREATE FUNCTION x4_wf_approve(p_id text, p_user text, p_owner text, p_lease_ms bigint)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workflows w SET status = 'executing', started_at = clock_timestamp(), expires_at = NULL,
           lease_owner = p_owner, lease_until = clock_timestamp() + p_lease_ms * interval '1 millisecond'
     WHERE w.id = p_id AND w.user_id = p_user AND w.status = 'awaiting_approval'
       AND w.expires_at > clock_timestamp();
    IF NOT FOUND THEN RETURN; END IF;
    RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.approved', '{}');
    RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.executing', '{}');
END $$;

-- Cancel from planning, awaiting_approval or executing: every step not yet finished is closed
-- in the same transaction (running ones failed "cancelled", the rest skipped), so the owning
-- process, wherever it is, only has to abort its transfers.
CREATE FUNCTION x4_wf_cancel(p_id text, p_user text)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    UPDATE workflows w SET status = 'cancelled', finished_at = clock_timestamp(), expires_at = NULL,
           lease_owner = NULL, lease_until = NULL
     WHERE w.id = p_id AND w.user_id = p_user AND w.status IN ('planning','awaiting_approval','executing');
    IF NOT FOUND THEN RETURN; END IF;
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
    RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.cancelled', '{}');
END $$;

-- A step change by the process holding the workflow's lease. Fenced: nothing happens unless
-- the workflow is executing and leased to p_owner.
CREATE FUNCTION x4_step_update(p_wf text, p_owner text, p_step text, p_status text, p_attempts int,
                               p_output jsonb, p_error text, p_type text, p_data jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM workflows w WHERE w.id = p_wf AND w.status = 'executing' AND w.lease_owner = p_owner FOR UPDATE;
    IF NOT FOUND THEN RETURN; END IF;
    UPDATE steps s SET status = p_status, attempts = p_attempts,
           output = CASE WHEN p_status = 'succeeded' THEN p_output ELSE s.output END,
           error = p_error,
           started_at = CASE WHEN p_status = 'running' AND s.started_at IS NULL THEN clock_timestamp() ELSE s.started_at END,
           finished_at = CASE WHEN p_status IN ('succeeded','failed','skipped') THEN clock_timestamp() ELSE NULL END
     WHERE s.workflow_id = p_wf AND s.id = p_step;
    IF NOT FOUND THEN RETURN; END IF;
    RETURN QUERY SELECT * FROM x4_emit(p_wf, p_type, p_data);
END $$;

-- The end of an executing workflow, by its lease holder.
CREATE FUNCTION x4_wf_finish(p_wf text, p_owner text, p_status text, p_output jsonb, p_error text,
                             p_type text, p_data jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workflows w SET status = p_status, output = p_output, error = p_error,
           total_cost = (SELECT COALESCE(sum(s.cost), 0) FROM steps s WHERE s.workflow_id = p_wf),
           finished_at = clock_timestamp(), lease_owner = NULL, lease_until = NULL
     WHERE w.id = p_wf AND w.status = 'executing' AND w.lease_owner = p_owner;
    IF NOT FOUND THEN RETURN; END IF;
    RETURN QUERY SELECT * FROM x4_emit(p_wf, p_type, p_data || jsonb_build_object('totalCost',
                   x4_money((SELECT w.total_cost FROM workflows w WHERE w.id = p_wf))));
END $$;

-- Approvals past their expiry, by whichever process gets there first.
CREATE FUNCTION x4_wf_expire_due(p_limit int)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT w.id FROM workflows w
              WHERE w.status = 'awaiting_approval' AND w.expires_at <= clock_timestamp()
              ORDER BY w.expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED
    LOOP
        RETURN QUERY SELECT * FROM x4_wf_transition(r.id, ARRAY['awaiting_approval'], 'expired',
                                                    'workflow.expired', '{}'::jsonb, 'approval expired');
    END LOOP;
END $$;

-- Lease upkeep for one process: renew what it holds, then claim live workflows whose lease
-- lapsed (their process died). Returns (id, status, claimed): claimed=false rows are renewals.
CREATE FUNCTION x4_lease_cycle(p_owner text, p_lease_ms bigint, p_limit int)
RETURNS TABLE (id text, status text, claimed boolean)
LANGUAGE plpgsql AS $$
DECLARE until timestamptz := clock_timestamp() + p_lease_ms * interval '1 millisecond';
BEGIN
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

