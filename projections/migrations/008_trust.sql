-- Trust (issue 11): problems kept where operators look, a publisher role, and less for those
-- who need less. Re-running this file is harmless.

-- One subject's failed erasure or sweep, until a retry succeeds: who, which job, why, since
-- when. No personal value: a pseudonymous id and a reason written by registre.
CREATE TABLE IF NOT EXISTS projections.problems (
    subject_id  text        NOT NULL,
    job         text        NOT NULL CHECK (job IN ('erasure', 'sweep')),
    reason      text        NOT NULL,
    since       timestamptz NOT NULL,
    last_try    timestamptz NOT NULL,
    attempts    integer     NOT NULL DEFAULT 1 CHECK (attempts > 0),
    trigger_event_id  uuid,  -- the deletion or erasure whose certificate is still owed
    trigger_type      text,
    PRIMARY KEY (subject_id, job)
);

-- registre_publisher: what publishing needs and nothing more. It creates data keys and reads
-- the wrapped ones (useless without the master key), reads whom no key may be created for, and
-- which event ids were applied (a publish retried is not a new account). It never deletes.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'registre_publisher') THEN
        EXECUTE 'CREATE ROLE registre_publisher NOLOGIN';
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO registre_publisher', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'not the database owner: CONNECT for registre_publisher left unchanged';
END $$;

GRANT USAGE ON SCHEMA keystore, tombstones, projections TO registre_publisher;
GRANT SELECT, INSERT ON keystore.data_keys TO registre_publisher;
GRANT SELECT ON keystore.erased_subjects, tombstones.destroyed_keys TO registre_publisher;
GRANT SELECT ON projections.applied_events TO registre_publisher;

-- registre_compliance: the aggregates through the analytics views only; the tables behind
-- them (totals, membership, the suppression view) are none of its business.
REVOKE ALL ON projections.analytics_totals, projections.analytics_members,
              projections.analytics_visible FROM registre_compliance;
GRANT SELECT ON projections.problems TO registre_compliance;
GRANT SELECT, INSERT, UPDATE, DELETE ON projections.problems TO registre_processor;

-- Analysts see closed periods only: days before today (UTC), months before the current one,
-- so that polling the views before and after one person's action cannot single it out.
CREATE OR REPLACE VIEW projections.analytics_visible WITH (security_barrier) AS
SELECT measure, period, dim1, dim2,
       projections.analytics_suppressed(subjects)                            AS suppressed,
       CASE WHEN NOT projections.analytics_suppressed(subjects) THEN events END   AS events,
       CASE WHEN NOT projections.analytics_suppressed(subjects) THEN granted END  AS granted,
       CASE WHEN NOT projections.analytics_suppressed(subjects) THEN subjects END AS subjects
FROM projections.analytics_totals
WHERE period < CASE WHEN measure = 'disclosures'
                    THEN date_trunc('month', now() AT TIME ZONE 'UTC')::date
                    ELSE (now() AT TIME ZONE 'UTC')::date END;

-- Statistics views count the rows of every table, also those a role may not read: the
-- analysts (and anyone but the roles that run registre) do not see them in this database.
-- Needs a superuser; another owner leaves them as they are, with a warning.
DO $$
DECLARE
    obj record;
BEGIN
    FOR obj IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'pg_catalog' AND c.relkind = 'v'
                 AND (c.relname LIKE 'pg\_stat\_%' OR c.relname LIKE 'pg\_statio\_%')
                 AND c.relname ~ '(tables|indexes|sequences)$' LOOP
        EXECUTE format('REVOKE SELECT ON pg_catalog.%I FROM PUBLIC', obj.relname);
    END LOOP;
    FOR obj IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
               JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'pg_catalog' AND p.proname LIKE 'pg\_stat\_get\_%'
                 AND pg_get_function_arguments(p.oid) = 'oid' LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', obj.fn);
    END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'not a superuser: the statistics views stay readable by every role'
        USING HINT = 'run migration 008 as a superuser to hide table statistics from analysts';
END $$;
