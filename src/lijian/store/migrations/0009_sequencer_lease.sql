-- The right to write this ledger: one row, held by one sequencer at a time.
-- ``epoch`` grows by one at every takeover; every commit checks it in its own
-- transaction (SELECT ... FOR SHARE), so a deposed sequencer can never commit.
-- ``expires_at`` is PostgreSQL's clock, not a machine's; ``address`` is where gateways
-- reach the holder (for operators and discovery).
CREATE TABLE sequencer_lease (
    id smallint PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL,
    holder text NOT NULL,
    address text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
