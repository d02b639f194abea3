-- 0003: scale-out. Several engine processes ("nodes") share one database and spend a
-- tranche through escrow leases (see lijian/core/escrow.py for the model).
--
-- pools       one row per (campaign, day): the money of an open tranche no node holds.
--             Touched once per lease slice, never per grant: not a hot row.
-- leases      one row per (node, day) while live: what the node took, durably charged
--             (grants), credited (holds ended on it), and gave back. holder fences
--             zombies: every charge is conditional on the holder's incarnation.
-- redemptions one row per hold: the cross-node truth of its status. Unique indexes make
--             idempotency keys and "one active redemption per order" hold across nodes.
-- persons     gains the count figures, so per-person limits are decided from the row.
CREATE TABLE pools (
    campaign_id   text   NOT NULL,
    day           text   NOT NULL,
    state         text   NOT NULL CHECK (state IN ('scheduled', 'open', 'closed')),
    pending_fen   bigint NOT NULL DEFAULT 0 CHECK (pending_fen >= 0),
    released_fen  bigint NOT NULL DEFAULT 0 CHECK (released_fen >= 0),
    remaining_fen bigint NOT NULL DEFAULT 0 CHECK (remaining_fen >= 0),
    PRIMARY KEY (campaign_id, day)
);
CREATE TABLE leases (
    lease_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id   text   NOT NULL,
    day           text   NOT NULL,
    node_id       text   NOT NULL,
    holder        text   NOT NULL,
    state         text   NOT NULL CHECK (state IN ('live', 'returned', 'reclaimed')),
    taken_fen     bigint NOT NULL DEFAULT 0,
    charged_fen   bigint NOT NULL DEFAULT 0,
    credited_fen  bigint NOT NULL DEFAULT 0,
    returned_fen  bigint NOT NULL DEFAULT 0,
    renewed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (taken_fen + credited_fen - charged_fen - returned_fen >= 0)
);
CREATE UNIQUE INDEX leases_one_live ON leases (campaign_id, day, node_id) WHERE state = 'live';
CREATE TABLE redemptions (
    id            text   PRIMARY KEY,
    campaign_id   text   NOT NULL,
    platform      text   NOT NULL,
    order_id      text   NOT NULL,
    client_id     text   NOT NULL,
    idem_key      text   NOT NULL,
    person_id     text   NOT NULL,
    day           text   NOT NULL,
    discount_fen  bigint NOT NULL CHECK (discount_fen > 0),
    expires_at_ms bigint NOT NULL,
    status        text   NOT NULL,
    node_id       text   NOT NULL,
    hold_body     bytea  NOT NULL,
    captured_ms   bigint,
    ended_ms      bigint
);
CREATE UNIQUE INDEX redemptions_idem ON redemptions (client_id, idem_key);
CREATE UNIQUE INDEX redemptions_active_order ON redemptions (platform, order_id)
    WHERE status NOT IN ('voided', 'expired');
CREATE INDEX redemptions_due ON redemptions (expires_at_ms) WHERE status = 'held';
ALTER TABLE persons ADD COLUMN count_total integer NOT NULL DEFAULT 0;
ALTER TABLE persons ADD COLUMN counts_by_day jsonb NOT NULL DEFAULT '{}';
