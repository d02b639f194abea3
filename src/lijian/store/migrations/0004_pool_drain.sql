-- 0004: drain on empty. A node whose take finds the pool short while other nodes still
-- hold unspent slices of the day sets `draining`: every node then gives its unspent
-- back (at its next batch or tick) and takes only what each batch needs, so the last
-- fen of a tranche goes to the first request that can use it, on whichever node.
ALTER TABLE pools ADD COLUMN draining boolean NOT NULL DEFAULT false;
