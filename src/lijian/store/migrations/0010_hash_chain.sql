-- 0010: the ledger's hash chain (src/lijian/core/chain.py).
-- entries.chain = SHA-256(chain of the previous entry in seq order || body), written by
-- the one writer in the batch's transaction; NULL only on rows written before this
-- version (the engine chains such a ledger once, at start, when no row has a chain).
-- chain_days holds each campaign's day closes: the seq and head of its TrancheClosed.
ALTER TABLE entries ADD COLUMN chain bytea;
CREATE TABLE chain_days (
    campaign_id text   NOT NULL,
    day         text   NOT NULL,
    seq         bigint NOT NULL,
    head        bytea  NOT NULL,
    PRIMARY KEY (campaign_id, day)
);
