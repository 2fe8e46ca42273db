-- `registre wait` and the drain of `registre run` (`projections.positions.backlog`) count,
-- besides the records not handed on yet, those handed to positions the broker no longer holds
-- (an embedded broker that restarted empty): until the relay hands them again, they are on
-- their way, not applied. Which partition a record went to is needed for that, and is no
-- personal data.
GRANT SELECT ("partition") ON journal.records TO registre_compliance;
