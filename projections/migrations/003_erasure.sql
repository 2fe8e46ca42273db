-- Erasure, retention and restricted reads.

-- Every read of data that only the compliance path may see (retained after deletion, or a
-- view as of a past instant): who, when, which subject, which case. Append-only.
CREATE TABLE projections.access_log (
    id          bigserial   PRIMARY KEY,
    read_at     timestamptz NOT NULL DEFAULT now(),
    reader      text        NOT NULL,
    subject_id  text        NOT NULL,
    case_ref    text        NOT NULL,
    what        text        NOT NULL
);
CREATE INDEX access_log_subject ON projections.access_log (subject_id, read_at);

CREATE FUNCTION projections.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;

CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON projections.access_log
    FOR EACH ROW EXECUTE FUNCTION projections.refuse_change();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON projections.access_log
    FOR EACH STATEMENT EXECUTE FUNCTION projections.refuse_change();

-- Per subject, the non-personal facts the retention policy needs (kept by the processors).
CREATE TABLE projections.retention_facts (
    subject_id  text        PRIMARY KEY,
    ended_at    timestamptz,
    end_kind    text,
    documents   jsonb       NOT NULL DEFAULT '[]',
    holds       jsonb       NOT NULL DEFAULT '[]',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Erasure certificates and key destructions, as recorded in the log (source registre).
CREATE TABLE projections.erasures (
    subject_id   text        NOT NULL,
    event_id     uuid        PRIMARY KEY,
    kind         text        NOT NULL,   -- 'ErasureCompleted' or 'KeysDestroyed'
    occurred_at  timestamptz NOT NULL,
    body         jsonb       NOT NULL
);
CREATE INDEX erasures_subject ON projections.erasures (subject_id, occurred_at);

-- Outbox: the ledger's own events (key destructions, erasure certificates, consent expiries),
-- written in the transaction that carries out what they record, then published to the log.
CREATE TABLE projections.outbox (
    id          bigserial   PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    topic       text        NOT NULL,
    key         bytea       NOT NULL,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
