-- 0014: the catalogue's reference prices (a SKU's ordinary price before the campaign),
-- one row per change, in the order they were stored: the history of a SKU's reference
-- price. The last row of a (platform, sku) is in force.
CREATE TABLE reference_prices (
    id                  bigserial PRIMARY KEY,
    platform            text   NOT NULL,
    sku                 text   NOT NULL,
    reference_price_fen bigint NOT NULL CHECK (reference_price_fen > 0)
);
