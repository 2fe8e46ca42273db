-- Analyst projections (projections/analytics.py keeps them up to date, in the batch transaction).
--
-- Private state, in schema projections (the analyst role cannot read it):
--   analytics_totals  one row per group: unsuppressed counters, coarse keys only.
--   analytics_members one row per (group, distinct subject), to count distinct subjects
--                     incrementally. A member is 's:' || subject_id, or for a connection
--                     group with a known country 'k:' || HMAC(location key of that subject and
--                     month, group): the country a subject connected from is never stored in
--                     clear next to its id, and the link is gone once that key is destroyed.
-- Public to analysts, in schema analytics: views only, over projections.analytics_visible,
-- which applies the suppression rule (a group of fewer than 10 distinct subjects shows
-- suppressed = true and NULL figures).

CREATE SCHEMA IF NOT EXISTS analytics;
REVOKE ALL ON SCHEMA analytics FROM PUBLIC;

CREATE TABLE projections.analytics_totals (
    measure   text    NOT NULL CHECK (measure IN ('accounts_created', 'accounts_deleted',
                          'erasures', 'connections', 'consent', 'withdrawals', 'disclosures')),
    period    date    NOT NULL,                 -- UTC day, or first day of the UTC month
    dim1      text    NOT NULL DEFAULT '',     -- country / purpose / recipient
    dim2      text    NOT NULL DEFAULT '',     -- basis
    events    bigint  NOT NULL DEFAULT 0 CHECK (events >= 0),
    granted   bigint  NOT NULL DEFAULT 0 CHECK (granted >= 0 AND granted <= events),
    subjects  bigint  NOT NULL DEFAULT 0 CHECK (subjects >= 0),
    PRIMARY KEY (measure, period, dim1, dim2),
    -- coarse values only: a connection group is an ISO country code or 'unknown', never a city
    CHECK (measure <> 'connections' OR dim1 ~ '^[A-Z]{2}$' OR dim1 = 'unknown'),
    CHECK (measure <> 'disclosures' OR period = date_trunc('month', period)::date)
);

CREATE TABLE projections.analytics_members (
    measure  text NOT NULL,
    period   date NOT NULL,
    dim1     text NOT NULL DEFAULT '',
    dim2     text NOT NULL DEFAULT '',
    member   text NOT NULL CHECK (member ~ '^(s:|k:[0-9a-f]{64}$)'),
    PRIMARY KEY (measure, period, dim1, dim2, member)
);

-- The suppression rule, stated once: a group of fewer than 10 distinct subjects is suppressed.
CREATE FUNCTION projections.analytics_suppressed(subjects bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN subjects < 10;

-- Every group with its figures, or none: a suppressed group keeps its keys and shows
-- suppressed = true and NULL figures.
CREATE VIEW projections.analytics_visible WITH (security_barrier) AS
SELECT measure, period, dim1, dim2,
       projections.analytics_suppressed(subjects)                            AS suppressed,
       CASE WHEN NOT projections.analytics_suppressed(subjects) THEN events END   AS events,
       CASE WHEN NOT projections.analytics_suppressed(subjects) THEN granted END  AS granted,
       CASE WHEN NOT projections.analytics_suppressed(subjects) THEN subjects END AS subjects
FROM projections.analytics_totals;

CREATE VIEW analytics.accounts_created_daily WITH (security_barrier) AS
SELECT period AS day, events AS accounts, subjects, suppressed
FROM projections.analytics_visible WHERE measure = 'accounts_created';

CREATE VIEW analytics.accounts_deleted_daily WITH (security_barrier) AS
SELECT period AS day, events AS accounts, subjects, suppressed
FROM projections.analytics_visible WHERE measure = 'accounts_deleted';

CREATE VIEW analytics.erasures_daily WITH (security_barrier) AS
SELECT period AS day, events AS erasures, subjects, suppressed
FROM projections.analytics_visible WHERE measure = 'erasures';

CREATE VIEW analytics.connections_daily WITH (security_barrier) AS
SELECT period AS day, dim1 AS country, events AS connections, subjects, suppressed
FROM projections.analytics_visible WHERE measure = 'connections';

CREATE VIEW analytics.consent_daily WITH (security_barrier) AS
SELECT period AS day, dim1 AS purpose, events AS asked, granted, events - granted AS refused,
       round(granted::numeric / NULLIF(events, 0), 4) AS consent_rate, subjects, suppressed
FROM projections.analytics_visible WHERE measure = 'consent';

CREATE VIEW analytics.withdrawals_daily WITH (security_barrier) AS
SELECT period AS day, dim1 AS purpose, events AS withdrawals, subjects, suppressed
FROM projections.analytics_visible WHERE measure = 'withdrawals';

CREATE VIEW analytics.disclosures_monthly WITH (security_barrier) AS
SELECT period AS month, dim1 AS recipient, dim2 AS basis, events AS disclosures, subjects,
       suppressed
FROM projections.analytics_visible WHERE measure = 'disclosures';

COMMENT ON SCHEMA analytics IS
    'Aggregates for analysts. A group of fewer than 10 distinct subjects is suppressed.';
COMMENT ON VIEW analytics.accounts_created_daily IS
    'AccountCreated per UTC day: accounts (events), subjects (distinct).';
COMMENT ON VIEW analytics.accounts_deleted_daily IS
    'AccountDeleted per UTC day: accounts (events), subjects (distinct).';
COMMENT ON VIEW analytics.erasures_daily IS
    'ErasureRequested (right to erasure) per UTC day.';
COMMENT ON VIEW analytics.connections_daily IS
    'ConnectionRecorded per UTC day and country (ISO 3166-1 alpha-2, or unknown when absent or '
    'unreadable when it was projected).';
COMMENT ON VIEW analytics.consent_daily IS
    'Consent choices per UTC day and purpose: asked = ConsentGiven + ConsentRefused choices, '
    'consent_rate = granted / asked; subjects = distinct subjects asked.';
COMMENT ON VIEW analytics.withdrawals_daily IS
    'ConsentWithdrawn choices per UTC day and purpose.';
COMMENT ON VIEW analytics.disclosures_monthly IS
    'DataShared per UTC month (first day), recipient and legal basis.';
