-- 0008: the campaign status of several nodes, from rows (no node's view holds it).
--
-- day_figures  per (campaign, day, node): the held, captured and clawed-back discounts
--              of the entries that node wrote, updated in the batch's transaction. Each
--              node writes only its own rows (no hot row); the status sums them.
-- pools        gain the moment the day's money ran out (as the replay's SoldOut), kept
--              as the deciding node's view has it (cleared when money comes back).
CREATE TABLE day_figures (
    campaign_id     text   NOT NULL,
    day             text   NOT NULL,
    node_id         text   NOT NULL,
    held_fen        bigint NOT NULL DEFAULT 0,
    captured_fen    bigint NOT NULL DEFAULT 0,
    clawed_back_fen bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, day, node_id)
);
ALTER TABLE pools ADD COLUMN sold_out_at_ms bigint;
