-- 0005: refunds (R17/R18) and quota restores with several nodes.
--
-- refunds   one row per recorded refund: its RefundRecorded entry, so any node can bring
--           a redemption's refund history into its view before deciding the next one
--           (the cumulative R18 floor, refund id reuse, idempotent replay). n orders the
--           refunds of one redemption. Unique (client_id, idem_key) is the backstop of
--           idempotency across nodes, as for redemptions.
-- restores  one row per quota restore a refund scheduled; pending until one node applies
--           it (state 'done' in the transaction of its QuotaRestored entry), so a restore
--           due at midnight is applied exactly once, by whichever node runs then.
CREATE TABLE refunds (
    redemption_id text   NOT NULL,
    refund_id     text   NOT NULL,
    n             int    NOT NULL,
    client_id     text   NOT NULL,
    idem_key      text   NOT NULL,
    body          bytea  NOT NULL,
    PRIMARY KEY (redemption_id, refund_id)
);
CREATE UNIQUE INDEX refunds_order ON refunds (redemption_id, n);
CREATE UNIQUE INDEX refunds_idem ON refunds (client_id, idem_key);
CREATE TABLE restores (
    redemption_id text   NOT NULL,
    refund_id     text   NOT NULL,
    campaign_id   text   NOT NULL,
    person_id     text   NOT NULL,
    amount_fen    bigint NOT NULL CHECK (amount_fen > 0),
    at_ms         bigint NOT NULL,
    state         text   NOT NULL CHECK (state IN ('pending', 'done')),
    PRIMARY KEY (redemption_id, refund_id)
);
CREATE INDEX restores_due ON restores (at_ms) WHERE state = 'pending';
CREATE INDEX restores_person ON restores (campaign_id, person_id) WHERE state = 'pending';
