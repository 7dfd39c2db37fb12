-- 004_withdrawals.sql — withdrawals: debited first, re-credited only when provably failed.
--
-- x4_withdraw_begin   available -> out (ledger 'withdrawal'), row 'debited'; raises X4001 when
--                     the available balance is short (concurrent withdrawals serialise on the
--                     account row, so they can never overdraw).
-- x4_withdraw_sent    the signed transaction's signature and blockhash, stored before sending.
-- x4_withdraw_done    'confirmed' (landed) or 'failed' + the re-credit (ledger 'withdrawal_reversal').
-- The ledger stays append-only: a withdrawal's row is written before its transaction exists, so
-- its signature is read from `withdrawals` (the row's note names it) — see x4_ledger_view.

CREATE FUNCTION x4_withdraw_begin(p_user text, p_asset text, p_amount bigint)
RETURNS TABLE (id bigint, wallet text, available bigint)
LANGUAGE plpgsql AS $$
DECLARE a record; wid bigint;
BEGIN
    SELECT x.wallet, x.available INTO a FROM escrow_accounts x WHERE x.user_id = p_user AND x.asset = p_asset FOR UPDATE;
    IF NOT FOUND THEN RAISE EXCEPTION 'escrow account not found' USING ERRCODE = 'X4004'; END IF;
    IF a.available < p_amount THEN
        RAISE EXCEPTION 'Insufficient escrow balance. Available: %, Required: %.', x4_amount(a.available),
            x4_amount(p_amount) USING ERRCODE = 'X4001';
    END IF;
    INSERT INTO withdrawals (user_id, asset, amount, to_wallet, status) VALUES (p_user, p_asset, p_amount, a.wallet, 'debited')
    RETURNING withdrawals.id INTO wid;
    PERFORM x4_ledger_move(p_user, p_asset, 'withdrawal', p_amount, -p_amount, 0, NULL, NULL, NULL, 'withdrawal ' || wid);
    RETURN QUERY SELECT wid, a.wallet, a.available - p_amount;
END $$;

CREATE FUNCTION x4_withdraw_sent(p_id bigint, p_sig text, p_blockhash text, p_lvbh bigint)
RETURNS void LANGUAGE sql AS $$
    UPDATE withdrawals SET status = 'sent', signature = p_sig, blockhash = p_blockhash, last_valid_block_height = p_lvbh,
           updated_at = clock_timestamp() WHERE id = p_id AND status = 'debited'
$$;

-- Ends a withdrawal once: landed, or provably never landed (refused before sending, or absent
-- after its blockhash expired) and then re-credited in the same transaction.
CREATE FUNCTION x4_withdraw_done(p_id bigint, p_landed boolean, p_error text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE w record;
BEGIN
    SELECT * INTO w FROM withdrawals x WHERE x.id = p_id AND x.status IN ('debited','sent') FOR UPDATE;
    IF NOT FOUND THEN RETURN false; END IF;
    UPDATE withdrawals x SET status = CASE WHEN p_landed THEN 'confirmed' ELSE 'failed' END, error = p_error,
           updated_at = clock_timestamp() WHERE x.id = p_id;
    IF NOT p_landed THEN
        PERFORM x4_ledger_move(w.user_id, w.asset, 'withdrawal_reversal', w.amount, w.amount, 0, NULL, NULL, w.signature,
                               'withdrawal ' || p_id || ' failed: ' || COALESCE(p_error, 'not landed'));
    END IF;
    RETURN true;
END $$;

-- The ledger as the history shows it: a withdrawal's signature comes from its withdrawal row.
CREATE VIEW x4_ledger_view AS
SELECT l.id, l.user_id, l.asset, l.kind, l.amount, l.available_delta, l.held_delta, l.workflow_id, l.step_id,
       COALESCE(l.signature, w.signature) AS signature, l.note, l.created_at
  FROM ledger l
  LEFT JOIN withdrawals w ON l.kind = 'withdrawal' AND l.note = 'withdrawal ' || w.id;
