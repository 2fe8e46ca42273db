-- Issue 15: the customer view is rewritten on (nearly) every event of its subject. A view is
-- ~4.6 kB of JSON, ~2.3 kB once compressed: by default PostgreSQL moves it out of line into
-- the TOAST table (beyond 2 kB), so each rewrite also deletes and inserts TOAST chunks and
-- their index entries. Kept in line (compressed), with room on its page for the next version
-- (HOT updates), a rewrite is one heap tuple: measured at 100k events, PostgreSQL's CPU per
-- event -15% and the table half the size. Re-running this file is harmless.
ALTER TABLE projections.customer_view SET (toast_tuple_target = 4080, fillfactor = 60);
