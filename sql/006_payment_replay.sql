-- 006_payment_replay.sql — a payment keeps the header it was sent with, so that after a crash
-- the very same paid request (same payment, same Idempotency-Key) can be sent again instead of
-- paying a second time. The header is a signed transaction for this one payment: replaying it
-- can never move more money than it already names.
ALTER TABLE payments ADD COLUMN header_name text;
ALTER TABLE payments ADD COLUMN header_value text;

CREATE FUNCTION x4_payment_header(p_id bigint, p_name text, p_value text) RETURNS void LANGUAGE sql AS $$
    UPDATE payments SET header_name = p_name, header_value = p_value WHERE id = p_id
$$;
