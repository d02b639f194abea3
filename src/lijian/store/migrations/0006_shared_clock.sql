-- 0006: the manual clock shared by several nodes (docs/API.md: "With a manual clock and
-- several workers, the clock is shared: moving it through any worker moves it for all").
-- One row; it only moves forward. Each node reads it before every batch and tick.
CREATE TABLE shared_clock (
    id     smallint PRIMARY KEY CHECK (id = 1),
    now_ms bigint   NOT NULL
);
