-- 0002: ledger snapshots (a cache of the replay up to seq, for fast restarts), as in
-- the embedded store. Only the newest is kept. Entries remain the source of truth.
CREATE TABLE snapshots (
    seq  bigint PRIMARY KEY,
    body bytea  NOT NULL
);
