-- The fencing check as one statement that fails inside the transaction, so a batch can
-- send it with its writes in one round trip (pipeline mode) instead of reading the
-- epoch back first: under any other epoch the whole transaction aborts and nothing of
-- the batch commits. The row lock (FOR SHARE) orders it against a takeover as before.
CREATE FUNCTION lijian_fence(expected bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
BEGIN
    SELECT epoch INTO current FROM sequencer_lease WHERE id = 1 FOR SHARE;
    IF current IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'the lease moved to epoch % (this sequencer held %): another sequencer serves the ledger',
            current, expected USING ERRCODE = 'LJ001';
    END IF;
END
$$;
