-- The key store: data keys wrapped by the master key, and the subjects that were erased.
CREATE SCHEMA IF NOT EXISTS keystore;

CREATE TABLE keystore.data_keys (
    subject_id  text        NOT NULL,
    category    text        NOT NULL CHECK (category IN ('identity', 'contact', 'connection', 'location')),
    period      text        NOT NULL DEFAULT '',   -- 'YYYY-MM' for connection/location keys
    version     integer     NOT NULL DEFAULT 1,
    wrapped     bytea       NOT NULL,              -- nonce | AES-256-GCM(master, data key)
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_id, category, period, version)
);

CREATE TABLE keystore.erased_subjects (
    subject_id  text        PRIMARY KEY,
    erased_at   timestamptz NOT NULL
);

-- Tombstones: ids of destroyed keys and erased subjects, kept outside the key store's
-- backups (dump schema keystore alone) and re-applied whenever the key store is restored.
CREATE SCHEMA IF NOT EXISTS tombstones;

CREATE TABLE tombstones.destroyed_keys (
    subject_id   text        NOT NULL,
    category     text        NOT NULL,
    period       text        NOT NULL,
    destroyed_at timestamptz NOT NULL,
    reason       text        NOT NULL,
    PRIMARY KEY (subject_id, category, period)
);

CREATE TABLE tombstones.erased_subjects (
    subject_id  text        PRIMARY KEY,
    erased_at   timestamptz NOT NULL
);
