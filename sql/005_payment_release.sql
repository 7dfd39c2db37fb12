-- 005_payment_release.sql — a payment proven absent after its workflow ended gives its share
-- of the hold back (x4_wf_release kept it while the payment was unresolved).
CREATE OR REPLACE FUNCTION x4_payment_absent(p_id bigint, p_status text, p_error text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE wf text; st text;
BEGIN
    UPDATE payments x SET status = p_status, error = p_error, updated_at = clock_timestamp()
     WHERE x.id = p_id AND x.status = 'signed' RETURNING x.workflow_id INTO wf;
    IF NOT FOUND THEN RETURN false; END IF;
    SELECT w.status INTO st FROM workflows w WHERE w.id = wf;
    IF st IN ('completed', 'failed', 'cancelled', 'expired') THEN PERFORM x4_wf_release(wf); END IF;
    RETURN true;
END $$;
