"""Tamper evidence over in-memory logs: every kind of tampering is found, at the right place."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from events.log import LogRecord
from processors.rules.integrity import (
    Chain,
    Checkpoint,
    chain_hash,
    genesis,
    sign_checkpoint,
    verify_checkpoint,
    verify_log,
)

TOPIC = "registre.ledger"
KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key()


def record(partition: int, offset: int, topic: str = TOPIC) -> LogRecord:
    body = hashlib.sha256(f"{topic}/{partition}/{offset}".encode()).digest() * 4
    return LogRecord(topic, partition, offset, f"acc-{offset % 5:06d}".encode(), body,
                     (("registre-type", b"ConsentGiven"), ("registre-schema", body[:8])),
                     1_700_000_000_000 + offset)


def make_log(partitions: int = 3, n: int = 20) -> list[LogRecord]:
    return [record(p, o) for p in range(partitions) for o in range(n)]


def sign_log(
    records: list[LogRecord], every: int = 1, key: Ed25519PrivateKey = KEY,
    upto: int | None = None,
) -> list[Checkpoint]:
    """What the processor does: chain each partition, checkpoint every ``every`` records."""
    chains: dict[tuple[str, int], Chain] = {}
    cps = []
    for r in records:
        if upto is not None and r.offset > upto:
            continue
        chain = chains.setdefault((r.topic, r.partition), Chain(r.topic, r.partition))
        chain.add(r)
        if (r.offset + 1) % every == 0:
            cps.append(chain.checkpoint(key))
    cps += [c.checkpoint(key) for c in chains.values() if c.unsigned]
    return cps


def replace_at(records: list[LogRecord], partition: int, offset: int, **changes) -> list:
    return [r._replace(**changes) if (r.partition, r.offset) == (partition, offset)
            else r for r in records]


def flip(data: bytes, index: int = 3) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def renumber(records: list[LogRecord]) -> list[LogRecord]:
    """As a copy re-produced into a fresh broker: offsets 0..n-1 again, per partition."""
    counters: dict[int, int] = {}
    out = []
    for r in records:
        n = counters.get(r.partition, 0)
        counters[r.partition] = n + 1
        out.append(r._replace(offset=n))
    return out


# --- the intact log ---------------------------------------------------------------------


@pytest.mark.parametrize("every", [1, 4, 7, 100])
def test_intact_log_verifies(every: int) -> None:
    log = make_log()
    result = verify_log(log, sign_log(log, every), PUBLIC)
    assert result.ok, result.reason
    assert result.first_bad is None
    assert result.records_checked == 60
    assert result.partitions == 3
    assert result.unchecked_tail == 0


def test_records_after_the_last_checkpoint_are_an_ok_unchecked_tail() -> None:
    log = make_log()
    cps = sign_log(log, every=4, upto=15)
    result = verify_log(log, cps, PUBLIC)
    assert result.ok, result.reason
    assert result.checkpoints_checked == 12
    assert result.unchecked_tail == 3 * 4
    assert "12 records after the last checkpoint" in result.reason


def test_a_log_without_checkpoints_is_all_tail() -> None:
    log = make_log()
    result = verify_log(log, [], None)
    assert result.ok and result.unchecked_tail == 60 and result.checkpoints_checked == 0


def test_partitions_may_be_interleaved() -> None:
    log = make_log()
    cps = sign_log(log, every=3)
    interleaved = sorted(log, key=lambda r: (r.offset, r.partition))
    assert verify_log(interleaved, cps, PUBLIC).ok


def test_an_empty_log_without_checkpoints_is_ok() -> None:
    result = verify_log([], [], PUBLIC)
    assert result.ok and result.records_checked == 0


# --- the hash ---------------------------------------------------------------------------


def test_genesis_is_per_topic_and_partition() -> None:
    values = {genesis(TOPIC, 0), genesis(TOPIC, 1), genesis("other", 0), genesis(TOPIC + "0", 0)}
    assert len(values) == 4
    assert all(len(v) == 32 for v in values)


def test_the_hash_covers_key_value_headers_offset_and_previous() -> None:
    r = record(0, 3)
    prev = genesis(TOPIC, 0)
    base = chain_hash(prev, r)
    variants = [
        chain_hash(b"\x00" * 32, r),
        chain_hash(prev, r._replace(offset=4)),
        chain_hash(prev, r._replace(key=flip(r.key))),
        chain_hash(prev, r._replace(value=flip(r.value))),
        chain_hash(prev, r._replace(headers=r.headers[:1])),
        chain_hash(prev, r._replace(headers=r.headers[::-1])),
        chain_hash(prev, r._replace(headers=(("registre-type", b"ConsentGivem"),
                                                         r.headers[1]))),
        # framing: moving a byte from the key to the value changes the hash
        chain_hash(prev, r._replace(key=r.key[:-1], value=r.key[-1:] + r.value)),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_the_hash_ignores_the_timestamp_and_absent_equals_empty() -> None:
    # The archive restore keeps neither the timestamp nor the difference None / b"".
    r = record(0, 3)
    prev = genesis(TOPIC, 0)
    assert chain_hash(prev, r) == chain_hash(prev, r._replace(timestamp_ms=1))
    bare = r._replace(key=None, value=None, headers=(("h", None),))
    assert chain_hash(prev, bare) == chain_hash(
        prev, r._replace(key=b"", value=b"", headers=(("h", b""),)))


def test_a_faust_message_hashes_like_the_log_record() -> None:
    r = record(1, 9)
    message = SimpleNamespace(topic=r.topic, partition=r.partition, offset=r.offset, key=r.key,
                              value=r.value, headers=dict(r.headers), timestamp=12.5)
    assert chain_hash(b"\x01" * 32, message) == chain_hash(b"\x01" * 32, r)
    as_lists = SimpleNamespace(**{**vars(message), "headers": [list(h) for h in r.headers]})
    assert chain_hash(b"\x01" * 32, as_lists) == chain_hash(b"\x01" * 32, r)


# --- Chain, the processor's accumulator --------------------------------------------------


def test_chain_resumes_from_a_checkpoint_and_skips_redeliveries() -> None:
    log = make_log(1, 30)
    whole = Chain(TOPIC, 0)
    assert whole.extend(log) == 30

    first = Chain(TOPIC, 0)
    first.extend(log[:12])
    cp = first.checkpoint(KEY)
    assert cp is not None and cp.offset == 11
    assert first.checkpoint(KEY) is None  # nothing new since
    resumed = Chain.resume(TOPIC, 0, cp)
    assert resumed.extend(log[5:]) == 18  # 5..11 are redeliveries
    assert resumed.head == whole.head
    assert Chain.resume(TOPIC, 0, None).head == genesis(TOPIC, 0)
    with pytest.raises(ValueError):
        Chain.resume(TOPIC, 1, cp)


def test_chain_refuses_a_record_of_another_partition() -> None:
    with pytest.raises(ValueError):
        Chain(TOPIC, 0).add(record(1, 0))
    with pytest.raises(ValueError):
        Chain(TOPIC, 0).add(record(0, 0, topic="other"))


def test_a_gap_the_processor_saw_and_signed_verifies() -> None:
    # E.g. a transaction marker: the offset never held a record, for anyone.
    log = [r for r in make_log(1, 12) if r.offset != 5]
    chain = Chain(TOPIC, 0)
    chain.extend(log)
    assert chain.gaps == [(5, 5)]
    assert verify_log(log, [chain.checkpoint(KEY)], PUBLIC).ok


# --- tampering with records --------------------------------------------------------------


@pytest.mark.parametrize("field", ["value", "key", "header"])
@pytest.mark.parametrize(("every", "expected"), [(1, 7), (4, 4), (5, 5), (100, 0)])
def test_one_flipped_byte_is_found(field: str, every: int, expected: int) -> None:
    log = make_log()
    cps = sign_log(log, every)
    target = next(r for r in log if (r.partition, r.offset) == (1, 7))
    change = {"value": {"value": flip(target.value)}, "key": {"key": flip(target.key, 1)},
              "header": {"headers": (target.headers[0], ("registre-schema",
                                                         flip(target.headers[1][1])))}}[field]
    result = verify_log(replace_at(log, 1, 7, **change), cps, PUBLIC)
    assert not result.ok
    assert result.first_bad == (1, expected)
    assert "altered" in result.reason


@pytest.mark.parametrize("every", [1, 4, 100])
def test_a_deleted_record_is_found_at_its_offset(every: int) -> None:
    log = make_log()
    cps = sign_log(log, every)
    tampered = [r for r in log if (r.partition, r.offset) != (2, 9)]
    result = verify_log(tampered, cps, PUBLIC)
    assert not result.ok
    assert result.first_bad == (2, 9)
    assert "offset 9 missing" in result.reason


def test_deleted_first_records_are_found_at_offset_zero() -> None:
    log = make_log()
    cps = sign_log(log, every=4)
    result = verify_log([r for r in log if not (r.partition == 0 and r.offset < 3)], cps, PUBLIC)
    assert result.first_bad == (0, 0)
    assert "offsets 0..2 missing" in result.reason


def test_a_record_deleted_after_the_last_checkpoint_is_found() -> None:
    log = make_log()
    cps = sign_log(log, every=4, upto=11)
    result = verify_log([r for r in log if (r.partition, r.offset) != (1, 15)], cps, PUBLIC)
    assert not result.ok
    assert result.first_bad == (1, 15)
    assert "after the last signed checkpoint" in result.reason


@pytest.mark.parametrize("every", [1, 4])
def test_a_deleted_record_in_a_copy_with_renumbered_offsets_is_found(every: int) -> None:
    log = make_log()
    cps = sign_log(log, every)
    tampered = renumber([r for r in log if (r.partition, r.offset) != (2, 9)])
    result = verify_log(tampered, cps, PUBLIC)
    assert result.first_bad == (2, 9 if every == 1 else 8)


def test_a_truncated_partition_is_found_at_its_new_end() -> None:
    log = make_log()
    cps = sign_log(log, every=4)
    result = verify_log([r for r in log if not (r.partition == 1 and r.offset >= 17)], cps,
                        PUBLIC)
    assert not result.ok
    assert result.first_bad == (1, 17)
    assert "truncated" in result.reason and "offset 19" in result.reason


def test_a_vanished_partition_is_found_at_offset_zero() -> None:
    log = make_log()
    cps = sign_log(log, every=4)
    result = verify_log([r for r in log if r.partition != 2], cps, PUBLIC)
    assert result.first_bad == (2, 0)
    assert "holds no record" in result.reason


@pytest.mark.parametrize(("every", "expected"), [(1, 10), (4, 8)])
def test_two_swapped_records_are_found(every: int, expected: int) -> None:
    log = make_log()
    cps = sign_log(log, every)
    a = next(r for r in log if (r.partition, r.offset) == (0, 10))
    b = next(r for r in log if (r.partition, r.offset) == (0, 11))
    swapped = [b._replace(offset=10) if r is a else
               a._replace(offset=11) if r is b else r for r in log]
    result = verify_log(swapped, cps, PUBLIC)
    assert not result.ok and result.first_bad == (0, expected)


def test_records_read_out_of_offset_order_are_found() -> None:
    log = make_log()
    cps = sign_log(log, every=4)
    i = next(i for i, r in enumerate(log) if (r.partition, r.offset) == (0, 10))
    log[i], log[i + 1] = log[i + 1], log[i]
    result = verify_log(log, cps, PUBLIC)
    assert result.first_bad == (0, 10)
    assert "reordered" in result.reason


@pytest.mark.parametrize("every", [1, 4])
def test_an_inserted_record_with_the_genuine_checkpoints_is_found(every: int) -> None:
    log = make_log()
    cps = sign_log(log, every)
    i = next(i for i, r in enumerate(log) if (r.partition, r.offset) == (2, 6))
    tampered = renumber(log[:i] + [log[i]._replace(value=b"forged")] + log[i:])
    result = verify_log(tampered, cps, PUBLIC)
    assert not result.ok
    assert result.first_bad == (2, 6 if every == 1 else 4)


@pytest.mark.parametrize("every", [1, 4])
def test_an_inserted_record_rechained_under_forged_checkpoints_is_found(every: int) -> None:
    """The attacker inserts a record, re-chains the partition and, having got round the
    append-only table, replaces every checkpoint from there on with one signed by his key."""
    log = make_log()
    cps = sign_log(log, every)
    i = next(i for i, r in enumerate(log) if (r.partition, r.offset) == (2, 6))
    tampered = renumber(log[:i] + [log[i]._replace(value=b"forged")] + log[i:])
    attacker = Ed25519PrivateKey.generate()
    forged = [c for c in sign_log(tampered, every, key=attacker)
              if c.partition == 2 and c.offset >= 6]
    kept = [c for c in cps if not (c.partition == 2 and c.offset >= 6)]
    result = verify_log(tampered, kept + forged, PUBLIC)
    assert not result.ok
    first_forged = min(c.offset for c in forged)
    assert result.first_bad == (2, first_forged)
    assert "signature does not verify" in result.reason
    # ...and with the attacker's own public key everything would look fine: the key matters.
    assert verify_log(tampered, kept + forged,
                      attacker.public_key()).first_bad[0] == 0  # the genuine ones fail


def test_the_lowest_failing_partition_is_named() -> None:
    log = make_log()
    cps = sign_log(log, every=4)
    tampered = replace_at(log, 2, 1, value=b"x")
    tampered = [r for r in tampered if (r.partition, r.offset) != (1, 13)]
    assert verify_log(tampered, cps, PUBLIC).first_bad == (1, 13)


# --- tampering with checkpoints ----------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda c: {"chain_hash": flip(c.chain_hash)},
        lambda c: {"offset": c.offset + 1},
        lambda c: {"signed_at": c.signed_at + timedelta(microseconds=1)},
        lambda c: {"signature": flip(c.signature, 10)},
        lambda c: {"signature": c.signature[:32]},
        lambda c: {"chain_hash": c.chain_hash[:16]},
    ],
    ids=["hash", "offset", "signed_at", "signature", "short-signature", "short-hash"],
)
def test_an_altered_checkpoint_fails_its_signature(change) -> None:
    log = make_log()
    cps = sign_log(log, every=4)
    j = next(j for j, c in enumerate(cps) if (c.partition, c.offset) == (1, 11))
    altered = dataclasses.replace(cps[j], **change(cps[j]))
    cps[j] = altered
    result = verify_log(log, cps, PUBLIC)
    assert not result.ok
    assert result.first_bad == (1, altered.offset)
    assert "signature does not verify" in result.reason


def test_an_altered_checkpoint_with_a_matching_hash_of_a_tampered_log_still_fails() -> None:
    # The attacker alters a record and puts the new head in the checkpoint row.
    log = make_log()
    cps = sign_log(log, every=4)
    tampered = replace_at(log, 0, 2, value=b"changed")
    new_heads = {(c.partition, c.offset): c.chain_hash for c in sign_log(tampered, every=4)}
    cps = [dataclasses.replace(c, chain_hash=new_heads[(c.partition, c.offset)])
           if c.partition == 0 else c for c in cps]
    result = verify_log(tampered, cps, PUBLIC)
    assert result.first_bad == (0, 3)
    assert "signature" in result.reason


def test_a_checkpoint_moved_to_another_partition_fails() -> None:
    log = make_log()
    cps = sign_log(log, every=4)
    cps = [dataclasses.replace(c, partition=2) if (c.partition, c.offset) == (1, 7) else c
           for c in cps if (c.partition, c.offset) != (2, 7)]
    result = verify_log(log, cps, PUBLIC)
    assert result.first_bad == (2, 7)


def test_checkpoints_need_the_trusted_key() -> None:
    log = make_log()
    cps = sign_log(log, every=4)
    other = Ed25519PrivateKey.generate().public_key()
    assert verify_log(log, cps, other).first_bad == (0, 3)
    no_key = verify_log(log, cps, None)
    assert no_key.first_bad == (0, 3) and "no trusted public key" in no_key.reason
    raw = PUBLIC.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert verify_log(log, cps, raw).ok


def test_other_topics_are_ignored_when_a_topic_is_given() -> None:
    log = make_log()
    cps = sign_log(log, every=4)
    foreign = [record(0, o, topic="other") for o in range(3)]
    foreign_cps = sign_log(foreign, every=1, key=Ed25519PrivateKey.generate())
    assert verify_log(log + foreign, cps + foreign_cps, PUBLIC, topic=TOPIC).ok
    assert not verify_log(log + foreign, cps + foreign_cps, PUBLIC).ok


def test_sign_and_verify_checkpoint() -> None:
    at = datetime(2026, 3, 1, 8, 30, 0, 123456, tzinfo=UTC)
    cp = sign_checkpoint(KEY, TOPIC, 3, 41, b"\x07" * 32, at)
    assert verify_checkpoint(cp, PUBLIC)
    assert verify_checkpoint(cp, PUBLIC.public_bytes(Encoding.Raw, PublicFormat.Raw))
    same_instant = cp.signed_at.astimezone(timezone(timedelta(hours=1)))  # Paris, winter
    assert verify_checkpoint(dataclasses.replace(cp, signed_at=same_instant), PUBLIC)
    assert not verify_checkpoint(dataclasses.replace(cp, topic="other"), PUBLIC)
    assert not verify_checkpoint(cp, b"short")
    with pytest.raises(ValueError):
        sign_checkpoint(KEY, TOPIC, 3, 41, b"\x07" * 32, datetime(2026, 3, 1))  # noqa: DTZ001
    with pytest.raises(ValueError):
        sign_checkpoint(KEY, TOPIC, 3, 41, b"\x07" * 31, at)


# --- any single tampering, anywhere ------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    partition=st.integers(0, 2),
    offset=st.integers(0, 19),
    every=st.integers(1, 8),
    kind=st.sampled_from(["flip", "delete", "swap", "insert"]),
    byte=st.integers(0, 127),
)
def test_any_single_tampering_is_found_no_later_than_it_happened(
    partition: int, offset: int, every: int, kind: str, byte: int
) -> None:
    log = make_log()
    cps = sign_log(log, every)
    i = next(i for i, r in enumerate(log) if (r.partition, r.offset) == (partition, offset))
    if kind == "flip":
        tampered = replace_at(log, partition, offset, value=flip(log[i].value, byte))
    elif kind == "delete":
        tampered = log[:i] + log[i + 1:]
    elif kind == "swap":
        if offset == 19:
            return
        tampered = renumber(log[:i] + [log[i + 1], log[i]] + log[i + 2:])
    else:
        tampered = renumber(log[:i] + [log[i]._replace(value=b"new")] + log[i:])
    result = verify_log(tampered, cps, PUBLIC)
    assert not result.ok
    bad_partition, bad_offset = result.first_bad
    assert bad_partition == partition
    segment_start = (offset // every) * every
    assert segment_start <= bad_offset <= offset
