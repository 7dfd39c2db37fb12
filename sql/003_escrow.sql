-- 003_escrow.sql — the escrow ledger and payments (DESIGN.md "Money").
--
-- Per user and asset: `available` and `held`, in atomic units (bigint, never negative). Every
-- change is one row in the append-only `ledger`, written in the same transaction as the balance
-- it moves, so balances are always derivable: available = sum(available_delta), held =
-- sum(held_delta). x4_escrow_check() verifies exactly that.
--
-- Money moves only through the functions below, each one transaction:
--   deposit   chain → available          (once per on-chain signature: unique constraint)
--   hold      available → held           (approval: the estimate plus the retry allowance)
--   charge    held → paid out            (a settled payment of a step)
--   release   held → available           (the end of a workflow: whatever was not charged)
--   withdraw  available → out            (debited first; re-credited only if the transfer provably failed)
--
-- Payments are rows committed BEFORE the payment header is sent (memo nonce, own signature,
-- blockhash, last valid block height, amount, payTo), so a crash can always be reconciled
-- against the chain, and a payment is retried only when the first one provably never landed.

CREATE TABLE escrow_accounts (
    user_id     text NOT NULL REFERENCES users(id),
    asset       text NOT NULL,
    wallet      text NOT NULL,                 -- the user's registered wallet (deposits from, withdrawals to)
    available   bigint NOT NULL DEFAULT 0 CHECK (available >= 0),
    held        bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (user_id, asset)
);

CREATE TABLE ledger (
    id              bigserial PRIMARY KEY,
    user_id         text NOT NULL,
    asset           text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('deposit','hold','charge','release','refund','withdrawal',
                                                  'withdrawal_reversal','refund_due')),
    amount          bigint NOT NULL CHECK (amount >= 0),
    available_delta bigint NOT NULL,
    held_delta      bigint NOT NULL,
    workflow_id     text,
    step_id         text,
    signature       text,
    note            text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (user_id, asset) REFERENCES escrow_accounts (user_id, asset)
);
CREATE INDEX ledger_user ON ledger (user_id, asset, id DESC);
CREATE INDEX ledger_workflow ON ledger (workflow_id) WHERE workflow_id IS NOT NULL;

CREATE TABLE deposits (
    signature   text PRIMARY KEY,              -- credited once per on-chain signature
    user_id     text NOT NULL,
    asset       text NOT NULL,
    amount      bigint NOT NULL CHECK (amount > 0),
    slot        bigint,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE payments (
    id                      bigserial PRIMARY KEY,
    workflow_id             text NOT NULL REFERENCES workflows(id),
    step_id                 text NOT NULL,
    attempt                 int NOT NULL,
    user_id                 text NOT NULL,
    status                  text NOT NULL CHECK (status IN ('signed','settled','failed','landed','absent')),
    version                 int NOT NULL,
    network                 text NOT NULL,
    asset                   text NOT NULL,
    pay_to                  text NOT NULL,
    amount                  bigint NOT NULL CHECK (amount > 0),
    memo                    text,
    payer_signature         text NOT NULL,
    blockhash               text NOT NULL,
    last_valid_block_height bigint NOT NULL,
    settle_tx               text,
    settle_response         jsonb,
    error                   text,
    charged                 boolean NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (workflow_id, step_id, attempt),
    UNIQUE (payer_signature)
);
CREATE INDEX payments_unsettled ON payments (status) WHERE status = 'signed';

CREATE TABLE withdrawals (
    id                      bigserial PRIMARY KEY,
    user_id                 text NOT NULL,
    asset                   text NOT NULL,
    amount                  bigint NOT NULL CHECK (amount > 0),
    to_wallet               text NOT NULL,
    status                  text NOT NULL CHECK (status IN ('debited','sent','confirmed','failed')),
    signature               text,
    blockhash               text,
    last_valid_block_height bigint,
    error                   text,
    created_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at              timestamptz NOT NULL DEFAULT clock_timestamp()
);

ALTER TABLE workflows ADD COLUMN held bigint NOT NULL DEFAULT 0 CHECK (held >= 0);
ALTER TABLE workflows ADD COLUMN asset text;

-- One ledger row and the balance it moves; raises (and so rolls back the caller) rather than
-- letting a balance go negative.
CREATE FUNCTION x4_ledger_move(p_user text, p_asset text, p_kind text, p_amount bigint, p_avail bigint, p_held bigint,
                               p_wf text, p_step text, p_sig text, p_note text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE lid bigint;
BEGIN
    UPDATE escrow_accounts a SET available = a.available + p_avail, held = a.held + p_held
     WHERE a.user_id = p_user AND a.asset = p_asset;
    IF NOT FOUND THEN RAISE EXCEPTION 'no escrow account for % in %', p_user, p_asset USING ERRCODE = 'no_data_found'; END IF;
    INSERT INTO ledger (user_id, asset, kind, amount, available_delta, held_delta, workflow_id, step_id, signature, note)
    VALUES (p_user, p_asset, p_kind, p_amount, p_avail, p_held, p_wf, p_step, p_sig, p_note) RETURNING id INTO lid;
    RETURN lid;
END $$;

-- Idempotent: never resets a balance. A different wallet for an existing account is refused.
CREATE FUNCTION x4_escrow_create(p_user text, p_asset text, p_wallet text)
RETURNS TABLE (created boolean, wallet text, available bigint, held bigint)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO escrow_accounts (user_id, asset, wallet) VALUES (p_user, p_asset, p_wallet)
    ON CONFLICT (user_id, asset) DO NOTHING;
    IF FOUND THEN
        RETURN QUERY SELECT true, p_wallet, 0::bigint, 0::bigint;
    ELSE
        RETURN QUERY SELECT false, a.wallet, a.available, a.held FROM escrow_accounts a
                      WHERE a.user_id = p_user AND a.asset = p_asset;
    END IF;
END $$;

-- A verified deposit: credited once per signature. Returns credited=false for a replay.
CREATE FUNCTION x4_escrow_deposit(p_user text, p_asset text, p_sig text, p_amount bigint, p_slot bigint)
RETURNS TABLE (credited boolean, available bigint, held bigint)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deposits (signature, user_id, asset, amount, slot) VALUES (p_sig, p_user, p_asset, p_amount, p_slot)
    ON CONFLICT (signature) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, a.available, a.held FROM escrow_accounts a WHERE a.user_id = p_user AND a.asset = p_asset;
        RETURN;
    END IF;
    PERFORM x4_ledger_move(p_user, p_asset, 'deposit', p_amount, p_amount, 0, NULL, NULL, p_sig, NULL);
    RETURN QUERY SELECT true, a.available, a.held FROM escrow_accounts a WHERE a.user_id = p_user AND a.asset = p_asset;
END $$;

-- The invariant: every account's balances equal the sums of its ledger rows. Returns the
-- accounts that disagree (none, always).
CREATE FUNCTION x4_escrow_check()
RETURNS TABLE (user_id text, asset text, available bigint, held bigint, ledger_available bigint, ledger_held bigint)
LANGUAGE sql STABLE AS $$
    SELECT a.user_id, a.asset, a.available, a.held, COALESCE(sum(l.available_delta), 0)::bigint,
           COALESCE(sum(l.held_delta), 0)::bigint
      FROM escrow_accounts a LEFT JOIN ledger l ON l.user_id = a.user_id AND l.asset = a.asset
     GROUP BY a.user_id, a.asset, a.available, a.held
    HAVING a.available <> COALESCE(sum(l.available_delta), 0) OR a.held <> COALESCE(sum(l.held_delta), 0)
$$;

-- Money formatted for messages: 2000000 -> '2.000000'.
CREATE FUNCTION x4_amount(v bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT (v / 1000000)::text || '.' || lpad((v % 1000000)::text, 6, '0')
$$;

-- Approval with money: awaiting_approval -> executing and, when the plan costs anything, the
-- hold moved from available to held — one transaction, so of N concurrent approves exactly one
-- both starts the workflow and takes the money. Refusals raise (rolling everything back):
--   X4001 'Insufficient escrow balance. Available: X, Required: Y. Please top up.'
--   X4002 daily spending cap.
DROP FUNCTION x4_wf_approve(text, text, text, bigint);
CREATE FUNCTION x4_wf_approve(p_id text, p_user text, p_owner text, p_lease_ms bigint, p_asset text,
                              p_allowance_pct int, p_daily_cap bigint)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE est bigint; hold bigint; avail bigint; spent bigint;
BEGIN
    UPDATE workflows w SET status = 'executing', started_at = clock_timestamp(), expires_at = NULL,
           lease_owner = p_owner, lease_until = clock_timestamp() + p_lease_ms * interval '1 millisecond'
     WHERE w.id = p_id AND w.user_id = p_user AND w.status = 'awaiting_approval'
       AND w.expires_at > clock_timestamp()
    RETURNING w.estimated_cost INTO est;
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
    RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.approved',
                   jsonb_build_object('held', x4_money(hold)));
    RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.executing', '{}');
END $$;

-- What a workflow still holds beyond its unresolved payments (which keep their share until
-- they settle or are proven absent) goes back to available.
CREATE FUNCTION x4_wf_release(p_id text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE w record; pending bigint; rel bigint;
BEGIN
    SELECT x.user_id, x.asset, x.held INTO w FROM workflows x WHERE x.id = p_id FOR UPDATE;
    IF w.held IS NULL OR w.held = 0 THEN RETURN 0; END IF;
    SELECT COALESCE(sum(p.amount), 0) INTO pending FROM payments p WHERE p.workflow_id = p_id AND p.status = 'signed';
    rel := GREATEST(w.held - pending, 0);
    IF rel > 0 THEN
        PERFORM x4_ledger_move(w.user_id, w.asset, 'release', rel, rel, -rel, p_id, NULL, NULL, NULL);
        UPDATE workflows x SET held = x.held - rel WHERE x.id = p_id;
    END IF;
    RETURN rel;
END $$;

-- A payment about to be sent: committed first. The amount must fit what the workflow still
-- holds beyond its other unresolved payments.
CREATE FUNCTION x4_payment_begin(p_wf text, p_owner text, p_step text, p_attempt int, p_version int, p_network text,
                                 p_asset text, p_pay_to text, p_amount bigint, p_memo text, p_sig text,
                                 p_blockhash text, p_lvbh bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE w record; pending bigint; pid bigint;
BEGIN
    SELECT x.user_id, x.held, x.asset INTO w FROM workflows x
     WHERE x.id = p_wf AND x.status = 'executing' AND x.lease_owner = p_owner FOR UPDATE;
    IF NOT FOUND THEN RAISE EXCEPTION 'workflow % is not executing under this lease', p_wf USING ERRCODE = 'X4010'; END IF;
    IF w.asset IS DISTINCT FROM p_asset THEN
        RAISE EXCEPTION 'the workflow holds % but the service asks for %', COALESCE(w.asset, 'nothing'), p_asset
            USING ERRCODE = 'X4003';
    END IF;
    SELECT COALESCE(sum(p.amount), 0) INTO pending FROM payments p WHERE p.workflow_id = p_wf AND p.status = 'signed';
    IF pending + p_amount > w.held THEN
        RAISE EXCEPTION 'payment of % exceeds the remaining hold of %', x4_amount(p_amount), x4_amount(w.held - pending)
            USING ERRCODE = 'X4003';
    END IF;
    INSERT INTO payments (workflow_id, step_id, attempt, user_id, status, version, network, asset, pay_to, amount, memo,
                          payer_signature, blockhash, last_valid_block_height)
    VALUES (p_wf, p_step, p_attempt, w.user_id, 'signed', p_version, p_network, p_asset, p_pay_to, p_amount, p_memo,
            p_sig, p_blockhash, p_lvbh) RETURNING id INTO pid;
    RETURN pid;
END $$;

-- The payment landed (settled by the facilitator, or found on chain by reconciliation): charge
-- it once from the hold and to the step.
CREATE FUNCTION x4_payment_landed(p_id bigint, p_tx text, p_response jsonb, p_status text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE p record;
BEGIN
    SELECT * INTO p FROM payments x WHERE x.id = p_id FOR UPDATE;
    IF NOT FOUND OR p.charged THEN RETURN false; END IF;
    UPDATE payments x SET status = p_status, settle_tx = COALESCE(p_tx, x.settle_tx),
           settle_response = COALESCE(p_response, x.settle_response), charged = true, updated_at = clock_timestamp()
     WHERE x.id = p_id;
    PERFORM x4_ledger_move(p.user_id, p.asset, 'charge', p.amount, 0, -p.amount, p.workflow_id, p.step_id,
                           COALESCE(p_tx, p.payer_signature), NULL);
    UPDATE workflows w SET held = w.held - p.amount, total_cost = w.total_cost + p.amount WHERE w.id = p.workflow_id;
    UPDATE steps s SET cost = s.cost + p.amount WHERE s.workflow_id = p.workflow_id AND s.id = p.step_id;
    RETURN true;
END $$;

-- The payment provably never landed (refused before settlement, or absent after its blockhash
-- expired): nothing is charged; its share of the hold stays with the workflow.
CREATE FUNCTION x4_payment_absent(p_id bigint, p_status text, p_error text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE payments x SET status = p_status, error = p_error, updated_at = clock_timestamp()
     WHERE x.id = p_id AND x.status = 'signed';
    RETURN FOUND;
END $$;

-- A service took the payment and then failed: flagged for refund in the ledger history.
CREATE FUNCTION x4_payment_refund_due(p_id bigint, p_note text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE p record;
BEGIN
    SELECT * INTO p FROM payments x WHERE x.id = p_id;
    IF NOT FOUND OR NOT p.charged THEN RETURN; END IF;
    IF EXISTS (SELECT 1 FROM ledger l WHERE l.kind = 'refund_due' AND l.signature = COALESCE(p.settle_tx, p.payer_signature)) THEN
        RETURN;
    END IF;
    PERFORM x4_ledger_move(p.user_id, p.asset, 'refund_due', p.amount, 0, 0, p.workflow_id, p.step_id,
                           COALESCE(p.settle_tx, p.payer_signature), p_note);
END $$;

-- Finishing and cancelling now release what is left of the hold.
CREATE OR REPLACE FUNCTION x4_wf_finish(p_wf text, p_owner text, p_status text, p_output jsonb, p_error text,
                                        p_type text, p_data jsonb)
RETURNS TABLE (workflow_id text, seq bigint, type text, data jsonb, ts timestamptz)
LANGUAGE plpgsql AS $$
DECLARE rel bigint;
BEGIN
    UPDATE workflows w SET status = p_status, output = p_output, error = p_error,
           finished_at = clock_timestamp(), lease_owner = NULL, lease_until = NULL
     WHERE w.id = p_wf AND w.status = 'executing' AND w.lease_owner = p_owner;
    IF NOT FOUND THEN RETURN; END IF;
    rel := x4_wf_release(p_wf);
    RETURN QUERY SELECT * FROM x4_emit(p_wf, p_type, p_data || jsonb_build_object(
        'totalCost', x4_money((SELECT w.total_cost FROM workflows w WHERE w.id = p_wf)),
        'released', x4_money(rel)));
END $$;

CREATE OR REPLACE FUNCTION x4_wf_cancel(p_id text, p_user text)
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
    PERFORM x4_wf_release(p_id);
    RETURN QUERY SELECT * FROM x4_emit(p_id, 'workflow.cancelled', '{}');
END $$;
