-- The read side: customer view, idempotency, tracking positions, archive, dead letters.
CREATE SCHEMA IF NOT EXISTS projections;

-- Last applied position per consumer and partition, written in the same transaction as rows.
CREATE TABLE projections.offsets (
    consumer     text    NOT NULL,
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);

-- Event ids already applied: the same event published twice is applied once.
CREATE TABLE projections.applied_events (
    event_id   uuid    PRIMARY KEY,
    partition  integer NOT NULL,
    "offset"   bigint  NOT NULL
);

-- One row per subject; personal fields only as the ciphertext from the log (in doc).
CREATE TABLE projections.customer_view (
    subject_id  text        PRIMARY KEY,
    status      text        NOT NULL CHECK (status IN ('active', 'deleted', 'erased')),
    doc         jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every record of the ledger topic as applied: the embedded broker's log lives in memory,
-- this archive restores it (same partitions, same offsets) on restart. Ciphertext only:
-- a record that did not decode is kept as a placeholder (value NULL, poison true).
CREATE TABLE projections.archive (
    topic         text    NOT NULL,
    partition     integer NOT NULL,
    "offset"      bigint  NOT NULL,
    key           bytea,
    headers       jsonb   NOT NULL DEFAULT '[]',
    value         bytea,
    poison        boolean NOT NULL DEFAULT false,
    timestamp_ms  bigint  NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);

-- What could not be applied, and why (no payload: it stays in the log as ciphertext).
CREATE TABLE projections.dead_letters (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    event_type  text,
    reason      text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset")
);

-- Processor workers and their heartbeats (for `registre info`).
CREATE TABLE projections.processors (
    worker_id    text        PRIMARY KEY,
    pid          integer     NOT NULL,
    host         text        NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);
