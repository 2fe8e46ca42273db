-- The journal (issue 12): on the embedded default the broker keeps its log in memory, so a
-- publisher's acknowledgement means "committed here". The relay of `registre run` hands the
-- journal to the broker in order, and forgets a ledger record once the processors have applied
-- its position; after a broker restart it hands again what the broker lost. The records are the
-- sealed Avro messages (ciphertext only), exactly what goes to the topic.
CREATE SCHEMA IF NOT EXISTS journal;

CREATE TABLE journal.records (
    id            bigserial   PRIMARY KEY,
    event_id      uuid,                      -- none for a dead letter or a checkpoint
    topic         text        NOT NULL,
    key           bytea,
    value         bytea       NOT NULL,
    headers       jsonb       NOT NULL DEFAULT '[]',
    accepted_at   timestamptz NOT NULL DEFAULT now(),
    "partition"   integer,                   -- where the broker put it, once relayed
    "offset"      bigint
);
CREATE INDEX journal_unrelayed ON journal.records (id) WHERE "offset" IS NULL;
CREATE INDEX journal_relayed ON journal.records ("partition", "offset")
    WHERE "offset" IS NOT NULL;

-- Whether events are accepted: closed while `registre run` starts and while it stops, so that
-- no acknowledgement is given that the drain would not carry to the processors.
CREATE TABLE journal.gate (
    id      smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    open    boolean  NOT NULL,
    reason  text
);
INSERT INTO journal.gate (id, open, reason) VALUES (1, false, 'not started') ON CONFLICT DO NOTHING;

REVOKE ALL ON SCHEMA journal FROM PUBLIC;
GRANT USAGE ON SCHEMA journal TO registre_publisher, registre_processor, registre_compliance;
-- the publisher appends (and reads the gate, under a share lock while it appends)
GRANT SELECT ON journal.gate TO registre_publisher;
GRANT UPDATE (id) ON journal.gate TO registre_publisher;  -- SELECT ... FOR SHARE needs it
GRANT INSERT ON journal.records TO registre_publisher;
GRANT USAGE ON SEQUENCE journal.records_id_seq TO registre_publisher;
-- the processors move their outbox in, and the relay (a processor login) hands it on
GRANT SELECT, INSERT, UPDATE, DELETE ON journal.records TO registre_processor;
GRANT USAGE ON SEQUENCE journal.records_id_seq TO registre_processor;
GRANT SELECT, UPDATE ON journal.gate TO registre_processor;
-- `registre wait` and `registre info` count what is still on its way
GRANT SELECT (id, "offset", topic) ON journal.records TO registre_compliance;
GRANT SELECT ON journal.gate TO registre_compliance;
