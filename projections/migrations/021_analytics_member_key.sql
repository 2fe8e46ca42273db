-- analytics_members: one narrow key per row instead of a five-column text key.
--
-- Every applied event inserts about one membership row (ON CONFLICT DO NOTHING), at random
-- across its groups. With the key (measure, period, dim1, dim2, member) of ~100 bytes and a
-- regular expression checked on each row, that insert was the processors' costliest
-- statement (39 us of PostgreSQL per event at 200k events, a quarter of its time), and its
-- index the part of the table that grows fastest. The key is now a 16-byte digest of the same
-- five values, computed by PostgreSQL (writers are unchanged), and the member check says the
-- same thing without a regular expression.
--
-- Two rows with the same five values have the same key; two different rows share a key only if
-- MD5 collides on them (then a subject would be counted once too few in one group: the figure
-- is a count of distinct subjects, not evidence). The free-text dimensions go with their
-- length, so no two groups write the same digest input; the period goes as days since
-- 2000-01-01, as a date's text form depends on DateStyle, which a generated column may not.

ALTER TABLE projections.analytics_members
    DROP CONSTRAINT analytics_members_member_check,
    ADD CONSTRAINT analytics_members_member_check CHECK (
        starts_with(member, 's:')
        OR (starts_with(member, 'k:') AND length(member) = 66
            AND ltrim(substr(member, 3), '0123456789abcdef') = '')),
    DROP CONSTRAINT analytics_members_pkey,
    ADD COLUMN key uuid NOT NULL GENERATED ALWAYS AS (
        md5(measure || '|' || (period - DATE '2000-01-01')::text
            || '|' || length(dim1)::text || '|' || dim1
            || '|' || length(dim2)::text || '|' || dim2 || '|' || member)::uuid) STORED;

ALTER TABLE projections.analytics_members ADD CONSTRAINT analytics_members_pkey PRIMARY KEY (key);
