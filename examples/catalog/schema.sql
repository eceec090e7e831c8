-- Schema and seed of the example `catalog` service. Safe to run any number of times.

CREATE TABLE IF NOT EXISTS products (
  id          integer PRIMARY KEY,
  name        text    NOT NULL,
  category    text    NOT NULL,
  price_cents integer NOT NULL CHECK (price_cents > 0),
  stock       integer NOT NULL CHECK (stock >= 0)
);

CREATE INDEX IF NOT EXISTS products_category_idx ON products (category);

-- The idempotency key is the client's name for "this order": a request retried by the frontend
-- (or a transaction re-run by the pool) finds its order already there instead of ordering twice.
CREATE TABLE IF NOT EXISTS orders (
  id              bigserial   PRIMARY KEY,
  idempotency_key text        NOT NULL UNIQUE,
  product_id      integer     NOT NULL REFERENCES products (id),
  quantity        integer     NOT NULL CHECK (quantity > 0),
  created_at      timestamptz NOT NULL DEFAULT now()
);

-- 500 products in 5 categories. Stock is large so that a demo's few thousand orders never run
-- out: an out-of-stock 409 would blur the error counts the demo is about.
INSERT INTO products (id, name, category, price_cents, stock)
SELECT g,
       'Product ' || g,
       (ARRAY['books', 'games', 'garden', 'kitchen', 'toys'])[1 + g % 5],
       100 + (g * 37) % 9900,
       1000000
FROM generate_series(1, 500) AS g
ON CONFLICT (id) DO NOTHING;
