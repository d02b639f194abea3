-- 0015: the ledger's LedgerKeyed entry (at most one) found through an index, not by a
-- scan of the log. A start checks its key against that entry before it starts anything
-- (lijian.ledger_key.preflight), and a ledger never keyed had every entry read for
-- nothing: 0.3-0.7 s at a million entries. The predicate is that entry's first bytes
-- (lijian.ledger_key._KEYED_PREFIX: a msgpack array of 3 and the tag "key"), so the index
-- holds one row at most and costs an insert one comparison.
CREATE INDEX entries_keyed ON entries (seq)
    WHERE substring(body FROM 1 FOR 5) = '\x93a36b6579'::bytea;
