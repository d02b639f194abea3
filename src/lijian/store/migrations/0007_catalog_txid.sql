-- 0007: catalogue changes reach every node. Each row records the transaction that last
-- wrote it; a node polls for rows written by transactions that have finished since its
-- last look (below the snapshot's xmin, so a slow upload that commits late is not
-- skipped, as a sequence number could be).
ALTER TABLE catalog ADD COLUMN txid bigint NOT NULL DEFAULT 0;
CREATE INDEX catalog_by_txid ON catalog (txid);
