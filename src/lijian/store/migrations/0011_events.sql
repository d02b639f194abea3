-- 0011: the transactional outbox of operator events (src/lijian/events).
-- events rows are written by the one writer in the transaction of the entries that
-- caused them; seq is given by the writer (the outbox's own order, ids evt_<seq>).
-- webhook_cursors holds, per receiver URL, the last event seq it acknowledged.
CREATE TABLE events (
    seq         bigint PRIMARY KEY,
    campaign_id text   NOT NULL,
    type        text   NOT NULL,
    occurred_ms bigint NOT NULL,
    data        text   NOT NULL
);
CREATE TABLE webhook_cursors (
    receiver text   PRIMARY KEY,
    seq      bigint NOT NULL
);
