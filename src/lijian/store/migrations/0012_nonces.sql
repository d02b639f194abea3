-- 0012: the nonces of accepted signed requests (http/auth.py), written in the commit of
-- the batch that carries their command and reloaded by the next sequencer (a restart or
-- a takeover), so that a request accepted once is refused when replayed. Rows older than
-- the nonce lifetime are deleted by the writer.
CREATE TABLE nonces (
    key_id  text   NOT NULL,
    nonce   text   NOT NULL,
    ts_s    bigint NOT NULL,
    seen_ms bigint NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX nonces_seen ON nonces (seen_ms);
