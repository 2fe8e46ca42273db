-- Blue/green rebuild (issue 15). `registre rebuild` builds every projection into the shadow
-- schema projections_next while the processors keep applying to the live tables, catches up
-- with them, and swaps the shadow tables in, in one short transaction. Re-running this file is
-- harmless.
--
-- The rebuild connects as registre_processor, which owns nothing: these functions run as their
-- owner (the role that runs the migrations, which owns the tables) and take no argument. The
-- processors may call them: they can write the live projections anyway, and the functions only
-- ever touch the tables of projections.rebuild_tables() and the two schemas below.
--
--   projections.rebuild_prepare()  drop any shadow, create empty shadow tables: the live
--                                  columns, defaults, checks and comments, no index yet
--   projections.rebuild_index()    the live tables' keys and indexes, same names; ANALYZE
--                                  (rebuild_index_table(t): one table, to index side by side)
--   projections.rebuild_swap()     swap every shadow table in; see below
--   projections.rebuild_discard()  drop the shadow tables (an interrupted rebuild) and the
--                                  tables a swap replaced
--
-- The swap carries over what binds to a table rather than to its name: the grants (the live
-- table's ACL, entry by entry), row-level security (ENABLE / FORCE and every policy), owner,
-- comment, storage options, triggers, the sequences its columns own, and the views that read
-- it (projections.analytics_visible over analytics_totals: re-pointed with CREATE OR REPLACE,
-- so the analytics views over it, their grants and comments are untouched). Anything it does
-- not know how to carry (a foreign key, a rule, a publication, column grants...) makes it
-- refuse, and the live projections stay as they were.
--
-- Never rebuilt or swapped: the access log, problems, outbox, archive, processors, the key
-- store, tombstones, integrity, credentials. projections.offsets is copied, not swapped.

CREATE SCHEMA IF NOT EXISTS projections_next;
CREATE SCHEMA IF NOT EXISTS projections_old;
REVOKE ALL ON SCHEMA projections_next, projections_old FROM PUBLIC;
GRANT USAGE ON SCHEMA projections_next TO registre_processor;

-- The projections: what the processors build from the log and nothing else.
CREATE OR REPLACE FUNCTION projections.rebuild_tables() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY['customer_view', 'applied_events', 'dead_letters', 'consent_history',
                 'analytics_totals', 'analytics_members', 'requests', 'erasure_requests',
                 'contact_lookup', 'erasures'];

-- Drop the shadow tables, and the tables a swap moved out (dropped after its commit, so that
-- unlinking their files is not part of the swap).
CREATE OR REPLACE FUNCTION projections.rebuild_discard() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY projections.rebuild_tables() || ARRAY['offsets'] LOOP
        EXECUTE format('DROP TABLE IF EXISTS projections_next.%I', t);
        EXECUTE format('DROP TABLE IF EXISTS projections_old.%I', t);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION projections.rebuild_prepare() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text;
BEGIN
    PERFORM projections.rebuild_discard();
    FOREACH t IN ARRAY projections.rebuild_tables() || ARRAY['offsets'] LOOP
        EXECUTE format('CREATE TABLE projections_next.%I (LIKE projections.%I INCLUDING DEFAULTS'
                       ' INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY'
                       ' INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS)', t, t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON projections_next.%I'
                       ' TO registre_processor', t);
        -- storage options (fill factor, TOAST target) before the rows are written
        IF (SELECT reloptions FROM pg_class
            WHERE oid = format('projections.%I', t)::regclass) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE projections_next.%I SET (%s)', t,
                           (SELECT array_to_string(reloptions, ', ') FROM pg_class
                            WHERE oid = format('projections.%I', t)::regclass));
        END IF;
    END LOOP;
END $$;

-- One shadow table's keys and indexes (several tables are indexed side by side).
CREATE OR REPLACE FUNCTION projections.rebuild_index_table(t text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
BEGIN
    IF NOT t = ANY(projections.rebuild_tables() || ARRAY['offsets']) THEN
        RAISE EXCEPTION '% is not a rebuilt projection', t;
    END IF;
    FOR c IN SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
             WHERE conrelid = format('projections.%I', t)::regclass
               AND contype IN ('p', 'u', 'x') ORDER BY conname LOOP
        EXECUTE format('ALTER TABLE projections_next.%I ADD CONSTRAINT %I %s',
                       t, c.conname, c.def);
    END LOOP;
    FOR c IN SELECT pg_get_indexdef(x.indexrelid) AS def FROM pg_index x
             WHERE x.indrelid = format('projections.%I', t)::regclass
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                               WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid)
             ORDER BY x.indexrelid LOOP
        EXECUTE regexp_replace(c.def, ' ON projections\.' || quote_ident(t) || ' ',
                               ' ON projections_next.' || quote_ident(t) || ' ');
    END LOOP;
    EXECUTE format('ANALYZE projections_next.%I', t);
END $$;

CREATE OR REPLACE FUNCTION projections.rebuild_index() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY projections.rebuild_tables() || ARRAY['offsets'] LOOP
        PERFORM projections.rebuild_index_table(t);
    END LOOP;
END $$;

-- What the swap does not know how to carry over: refuse rather than lose it.
CREATE OR REPLACE FUNCTION projections.rebuild_check(live regclass) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = live) <> 'r'
       OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = live OR inhparent = live)
       OR EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f'
                  AND (conrelid = live OR confrelid = live))
       OR EXISTS (SELECT 1 FROM pg_rewrite WHERE ev_class = live)
       OR EXISTS (SELECT 1 FROM pg_publication_rel WHERE prrelid = live)
       OR EXISTS (SELECT 1 FROM pg_statistic_ext WHERE stxrelid = live)
       OR EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = live AND attacl IS NOT NULL)
       OR (SELECT relreplident FROM pg_class WHERE oid = live) = 'i'
       OR EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class m ON m.oid = d.objid
                  WHERE d.refobjid = live AND d.classid = 'pg_class'::regclass
                    AND m.relkind = 'm') THEN
        RAISE EXCEPTION '% has what a rebuild cannot swap (inheritance, a foreign key, a rule, a'
                        ' publication, extended statistics, column grants, a replica identity'
                        ' index or a materialized view): teach projections.rebuild_swap()', live;
    END IF;
END $$;

-- Carry over from the old live table (now in projections_old) to the new one (now live) what
-- binds to the table: owner, grants, row-level security and its policies, comment, options.
CREATE OR REPLACE FUNCTION projections.rebuild_carry(t text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old regclass := format('projections_old.%I', t)::regclass;
    new regclass := format('projections.%I', t)::regclass;
    o record;
    g record;
    p record;
BEGIN
    SELECT relowner, relacl, relrowsecurity, relforcerowsecurity, reloptions, relreplident
      INTO o FROM pg_class WHERE oid = old;
    IF (SELECT relowner FROM pg_class WHERE oid = new) <> o.relowner THEN
        EXECUTE format('ALTER TABLE %s OWNER TO %I', new, pg_get_userbyid(o.relowner));
    END IF;
    -- grants: exactly the old ACL (every grant of the new table revoked first)
    FOR g IN SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.oid = new LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', new, CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                       ELSE quote_ident(pg_get_userbyid(g.grantee)) END);
    END LOOP;
    FOR g IN SELECT a.grantee, a.is_grantable,
                    string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type) AS privileges
             FROM aclexplode(coalesce(o.relacl, acldefault('r', o.relowner))) a
             GROUP BY a.grantee, a.is_grantable LOOP
        EXECUTE format('GRANT %s ON %s TO %s%s', g.privileges, new,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                            ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    -- row-level security and its policies
    IF o.relrowsecurity THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', new);
    END IF;
    IF o.relforcerowsecurity THEN
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', new);
    END IF;
    FOR p IN SELECT polname, polcmd, polpermissive, polroles,
                    pg_get_expr(polqual, polrelid) AS qual,
                    pg_get_expr(polwithcheck, polrelid) AS chk
             FROM pg_policy WHERE polrelid = old ORDER BY polname LOOP
        EXECUTE format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', p.polname, new,
            CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
            CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                          WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
            (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC'
                                    ELSE quote_ident(pg_get_userbyid(r)) END, ', ' ORDER BY n)
             FROM unnest(p.polroles) WITH ORDINALITY AS u(r, n)),
            CASE WHEN p.qual IS NULL THEN '' ELSE ' USING (' || p.qual || ')' END,
            CASE WHEN p.chk IS NULL THEN '' ELSE ' WITH CHECK (' || p.chk || ')' END);
    END LOOP;
    EXECUTE format('COMMENT ON TABLE %s IS %L', new, obj_description(old, 'pg_class'));
    IF o.reloptions IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s SET (%s)', new, array_to_string(o.reloptions, ', '));
    END IF;
    IF o.relreplident = 'f' THEN
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', new);
    ELSIF o.relreplident = 'n' THEN
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY NOTHING', new);
    END IF;
END $$;

-- The swap: the caller holds the projection lock and sets its lock_timeout; this takes every
-- live table's ACCESS EXCLUSIVE lock, in a fixed order, then moves tables, not rows.
CREATE OR REPLACE FUNCTION projections.rebuild_swap() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text;
    live regclass;
    c record;
    view_names text[] := '{}';
    view_defs text[] := '{}';
    trigger_defs text[] := '{}';
    sequences text[] := '{}';
    seq_columns text[] := '{}';
    i int;
BEGIN
    FOREACH t IN ARRAY projections.rebuild_tables() LOOP
        EXECUTE format('LOCK TABLE projections.%I IN ACCESS EXCLUSIVE MODE', t);
        IF to_regclass(format('projections_next.%I', t)) IS NULL THEN
            RAISE EXCEPTION 'no shadow table projections_next.%: nothing to swap', t;
        END IF;
    END LOOP;
    -- what binds to the live tables, read while they are still at their names
    FOREACH t IN ARRAY projections.rebuild_tables() LOOP
        live := format('projections.%I', t)::regclass;
        PERFORM projections.rebuild_check(live);
        FOR c IN SELECT DISTINCT v.oid::regclass::text AS name,
                        CASE WHEN v.reloptions IS NULL THEN ''
                             ELSE ' WITH (' || array_to_string(v.reloptions, ', ') || ')' END
                        || ' AS ' || pg_get_viewdef(v.oid) AS def
                 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                 JOIN pg_class v ON v.oid = r.ev_class
                 WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                   AND d.refobjid = live AND v.oid <> live LOOP
            IF NOT c.name = ANY(view_names) THEN
                view_names := view_names || c.name;
                view_defs := view_defs || c.def;
            END IF;
        END LOOP;
        FOR c IN SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger
                 WHERE tgrelid = live AND NOT tgisinternal LOOP
            trigger_defs := trigger_defs || c.def;
        END LOOP;
        -- a sequence a column owns (dead_letters.id) stays here and follows the new table
        FOR c IN SELECT d.objid::regclass::text AS seq, a.attname
                 FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                 JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_class'::regclass AND d.refobjid = live
                   AND d.deptype = 'a' LOOP
            EXECUTE format('ALTER SEQUENCE %s OWNED BY NONE', c.seq);
            sequences := sequences || c.seq;
            seq_columns := seq_columns || format('projections.%I.%I', t, c.attname);
        END LOOP;
    END LOOP;
    -- the old tables out, the new ones in
    FOREACH t IN ARRAY projections.rebuild_tables() LOOP
        EXECUTE format('ALTER TABLE projections.%I SET SCHEMA projections_old', t);
        EXECUTE format('ALTER TABLE projections_next.%I SET SCHEMA projections', t);
        PERFORM projections.rebuild_carry(t);
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(sequences, 1), 0) LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNED BY %s', sequences[i], seq_columns[i]);
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(trigger_defs, 1), 0) LOOP
        EXECUTE trigger_defs[i];
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(view_names, 1), 0) LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s%s', view_names[i], view_defs[i]);
    END LOOP;
    -- the positions the new tables stand at (the old tables stay in projections_old, read by
    -- nobody, until rebuild_discard() drops them after the commit)
    DELETE FROM projections.offsets WHERE consumer = 'ledger';
    INSERT INTO projections.offsets SELECT * FROM projections_next.offsets
        WHERE consumer = 'ledger';
    DROP TABLE projections_next.offsets;
END $$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['rebuild_discard()', 'rebuild_prepare()', 'rebuild_index()',
                             'rebuild_index_table(text)', 'rebuild_swap()',
                             'rebuild_check(regclass)', 'rebuild_carry(text)'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION projections.%s FROM PUBLIC', f);
    END LOOP;
    GRANT EXECUTE ON FUNCTION projections.rebuild_discard(), projections.rebuild_prepare(),
        projections.rebuild_index(), projections.rebuild_index_table(text),
        projections.rebuild_swap() TO registre_processor;
END $$;
