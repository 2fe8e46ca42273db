"""Tamper evidence for the log: a hash chain per partition and signed checkpoints (pure code).

Every record of a partition is chained, in offset order, from a genesis value of its
(topic, partition)::

    head(n) = SHA-256(head(n-1) | offset | key | value | headers)      (one SHA-256 a record)

over the bytes the broker stores: the key, the value (ciphertext, so destroying a key never
breaks the chain) and the headers, each length-framed. The offset is in the hash, so a signed
head also commits to the position of every record it covers. The Kafka timestamp is not (the
archive restore does not keep it), and an absent key, value or header value hashes like an
empty one (the archive restore writes ``b""`` for both).

A checkpoint signs (topic, partition, offset of the last record covered, head, signed_at)
with Ed25519. ``verify_log`` recomputes every chain from offset 0 and, at each checkpoint,
requires a valid signature and an equal head. It fails at the first position where a record
was altered, removed, reordered or inserted, where a checkpoint does not verify, or where a
checkpoint covers more than the log holds (truncation). Records after the last checkpoint
are an "unchecked tail": counted, ok, unless offsets are missing among them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import struct
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Protocol

import fastavro
import fastavro.schema
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HASH_SIZE = 32
SIGNATURE_SIZE = 64
_DOMAIN = b"registre.integrity.v1\x00"
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


class ChainRecord(Protocol):
    """What the chain reads of a record: ``events.log.LogRecord``, ``projections.writer.
    Incoming`` and a Faust ``Message`` all fit (headers: pairs or a mapping)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any: ...


def _frame(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def genesis(topic: str, partition: int) -> bytes:
    """The head before offset 0 of (topic, partition): chains of two partitions never mix."""
    return hashlib.sha256(
        _DOMAIN + b"genesis\x00" + _frame(topic.encode()) + _U32.pack(partition)
    ).digest()


def _header_bytes(headers: Any) -> bytes:
    if not headers:
        return b"\x00\x00\x00\x00"
    if isinstance(headers, Mapping):
        headers = headers.items()
    parts = []
    for name, val in headers:
        name = name.encode() if isinstance(name, str) else bytes(name)
        val = val or b""
        parts.append(_U32.pack(len(name)))
        parts.append(name)
        parts.append(_U32.pack(len(val)))
        parts.append(val)
    return _U32.pack(len(parts) // 4) + b"".join(parts)


def chain_hash(prev: bytes, record: ChainRecord) -> bytes:
    """The head after ``record``: SHA-256 over ``prev`` and the record's stored bytes."""
    key = record.key or b""
    value = record.value or b""
    h = hashlib.sha256(prev)
    h.update(_I64.pack(record.offset) + _U32.pack(len(key)) + key + _U32.pack(len(value)))
    h.update(value)
    h.update(_header_bytes(record.headers))
    return h.digest()


# --- checkpoints -------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A signed chain head: ``offset`` is the last offset covered by ``chain_hash``."""

    topic: str
    partition: int
    offset: int
    chain_hash: bytes
    signed_at: datetime
    signature: bytes


def _micros(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("signed_at must be timezone-aware")
    return (at - _EPOCH) // _MICRO


def checkpoint_message(
    topic: str, partition: int, offset: int, chain_hash: bytes, signed_at: datetime
) -> bytes:
    """The bytes an Ed25519 checkpoint signature covers."""
    return (_DOMAIN + b"checkpoint\x00" + _frame(topic.encode()) + _U32.pack(partition)
            + _I64.pack(offset) + _I64.pack(_micros(signed_at)) + _frame(bytes(chain_hash)))


def sign_checkpoint(
    private_key: Ed25519PrivateKey,
    topic: str,
    partition: int,
    offset: int,
    chain_hash: bytes,
    signed_at: datetime | None = None,
) -> Checkpoint:
    """Sign the head of (topic, partition) after ``offset``. ``signed_at`` defaults to now."""
    if len(chain_hash) != HASH_SIZE:
        raise ValueError("chain_hash must be 32 bytes")
    at = signed_at or datetime.now(UTC)
    signature = private_key.sign(checkpoint_message(topic, partition, offset, chain_hash, at))
    return Checkpoint(topic, partition, offset, bytes(chain_hash), at, signature)


def _public(key: Ed25519PublicKey | bytes) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PublicKey):
        return key
    return Ed25519PublicKey.from_public_bytes(bytes(key))


def verify_checkpoint(checkpoint: Checkpoint, public_key: Ed25519PublicKey | bytes) -> bool:
    """True when the checkpoint's signature is valid for ``public_key``; never raises."""
    try:
        if len(checkpoint.chain_hash) != HASH_SIZE or len(checkpoint.signature) != SIGNATURE_SIZE:
            return False
        message = checkpoint_message(checkpoint.topic, checkpoint.partition, checkpoint.offset,
                                     checkpoint.chain_hash, checkpoint.signed_at)
        _public(public_key).verify(bytes(checkpoint.signature), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# --- the accumulator the processor keeps ---------------------------------------------------


class Chain:
    """The running head of one partition's chain.

    Start it at genesis (``Chain(topic, partition)``) or from the partition's latest stored
    checkpoint (``Chain.resume``). ``add`` ignores a record already chained (offset below
    ``next_offset``: a redelivery); a record further ahead is chained, and the skipped offsets
    are noted in ``gaps`` (the verifier will flag them unless a valid checkpoint signed them).
    """

    __slots__ = ("topic", "partition", "head", "next_offset", "signed_offset", "gaps")

    def __init__(
        self, topic: str, partition: int, head: bytes | None = None, next_offset: int = 0
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.head = genesis(topic, partition) if head is None else bytes(head)
        self.next_offset = next_offset
        self.signed_offset = next_offset - 1  # last offset covered by a checkpoint
        self.gaps: list[tuple[int, int]] = []

    @classmethod
    def resume(cls, topic: str, partition: int, checkpoint: Checkpoint | None) -> Chain:
        """Continue after ``checkpoint`` (the latest of the partition), or from genesis."""
        if checkpoint is None:
            return cls(topic, partition)
        if (checkpoint.topic, checkpoint.partition) != (topic, partition):
            raise ValueError("checkpoint of another partition")
        return cls(topic, partition, checkpoint.chain_hash, checkpoint.offset + 1)

    @property
    def last_offset(self) -> int:
        return self.next_offset - 1

    @property
    def unsigned(self) -> bool:
        """Records were chained since the last checkpoint."""
        return self.next_offset - 1 > self.signed_offset

    def add(self, record: ChainRecord) -> bool:
        """Chain one record; False when it was already chained."""
        if record.partition != self.partition or record.topic != self.topic:
            raise ValueError(
                f"record of {record.topic}[{record.partition}] added to the chain of"
                f" {self.topic}[{self.partition}]"
            )
        offset = record.offset
        if offset < self.next_offset:
            return False
        if offset > self.next_offset:
            self.gaps.append((self.next_offset, offset - 1))
        self.head = chain_hash(self.head, record)
        self.next_offset = offset + 1
        return True

    def extend(self, records: Iterable[ChainRecord]) -> int:
        """Chain records in order; returns how many were new."""
        return sum(1 for r in records if self.add(r))

    def checkpoint(
        self, private_key: Ed25519PrivateKey, signed_at: datetime | None = None
    ) -> Checkpoint | None:
        """Sign the current head; None when nothing was chained since the last checkpoint."""
        if not self.unsigned:
            return None
        cp = sign_checkpoint(private_key, self.topic, self.partition, self.last_offset,
                             self.head, signed_at)
        self.signed_offset = self.last_offset
        return cp


# --- verification --------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_bad: tuple[int, int] | None  # (partition, offset) of the first bad position
    reason: str
    records_checked: int
    checkpoints_checked: int = 0
    unchecked_tail: int = 0  # records after the last checkpoint of their partition
    partitions: int = 0


class _Partition:
    __slots__ = ("topic", "partition", "head", "next", "pending", "good", "gaps", "failure",
                 "records", "records_at_good", "checked")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.head = genesis(topic, partition)
        self.next = 0
        self.pending: deque[Checkpoint] = deque()
        self.good = -1  # last offset covered by a verified checkpoint
        self.gaps: list[tuple[int, int]] = []  # missing offsets after ``good``
        self.failure: tuple[int, str] | None = None
        self.records = 0
        self.records_at_good = 0
        self.checked = 0

    def fail(self, offset: int, reason: str) -> None:
        self.failure = (offset, reason)

    def check(self, cp: Checkpoint, public: Ed25519PublicKey | None) -> bool:
        if public is None:
            self.fail(cp.offset, f"checkpoint at offset {cp.offset}: no trusted public key to"
                                 " verify its signature")
            return False
        if not verify_checkpoint(cp, public):
            self.fail(cp.offset, f"checkpoint at offset {cp.offset}: signature does not verify"
                                 " (forged or altered checkpoint)")
            return False
        if cp.chain_hash != self.head:
            gaps = [g for g in self.gaps if g[0] <= cp.offset]
            if gaps:
                start, end = gaps[0]
                missing = f"offset {start}" if start == end else f"offsets {start}..{end}"
                self.fail(start, f"{missing} missing: the chain does not match the signed"
                                 f" checkpoint at offset {cp.offset}")
            else:
                start = self.good + 1
                self.fail(start, f"a record in offsets {start}..{cp.offset} was altered, removed,"
                                 " reordered or inserted: the chain does not match the signed"
                                 f" checkpoint at offset {cp.offset}")
            return False
        self.good = cp.offset
        self.gaps = [g for g in self.gaps if g[0] > cp.offset]
        self.records_at_good = self.records
        self.checked += 1
        return True

    def take(self, rec: ChainRecord, public: Ed25519PublicKey | None) -> None:
        """Chain the next record, after checking the checkpoints below its offset."""
        offset = rec.offset
        if offset != self.next:
            if offset < self.next:
                self.fail(offset, f"offset {offset} read after offset {self.next - 1}: records"
                                  " reordered or duplicated")
                return
            self.gaps.append((self.next, offset - 1))
        while self.pending and self.pending[0].offset < offset:
            if not self.check(self.pending.popleft(), public):
                return
        self.head = chain_hash(self.head, rec)
        self.next = offset + 1
        self.records += 1

    def finish(self, public: Ed25519PublicKey | None) -> None:
        pending = self.pending
        while pending and self.failure is None:
            cp = pending[0]
            if cp.offset < self.next:
                self.check(pending.popleft(), public)
            elif public is None or not verify_checkpoint(cp, public):
                self.check(pending.popleft(), public)  # reports the signature
            else:
                end = (f"ends at offset {self.next - 1}" if self.next
                       else "holds no record")
                self.fail(self.next, f"log truncated: the partition {end} but the signed"
                                     f" checkpoint at offset {cp.offset} covers more")
        if self.failure is None and self.gaps:
            start, end = self.gaps[0]
            missing = f"offset {start}" if start == end else f"offsets {start}..{end}"
            self.fail(start, f"{missing} missing after the last signed checkpoint")


def verify_log(
    records: Iterable[ChainRecord],
    checkpoints: Iterable[Checkpoint],
    public_key: Ed25519PublicKey | bytes | None,
    topic: str | None = None,
) -> VerifyResult:
    """Recompute every partition's chain from offset 0 and check it against the checkpoints.

    ``records``: every record of the log, each partition in offset order (partitions may be
    interleaved). ``public_key``: the trusted key (None: any checkpoint fails). With
    ``topic``, records and checkpoints of other topics are ignored. The result names the
    first bad position of the lowest failing partition; ``first_bad`` is the exact offset of
    a missing record or of a bad checkpoint, else the first offset after the last verified
    checkpoint (the altered record lies between there and the failing checkpoint).
    """
    public = None if public_key is None else _public(public_key)
    states = _pending_checkpoints(checkpoints, topic)
    _chain_records(states, records, public, topic)
    for st in states.values():
        if st.failure is None:
            st.finish(public)
    return _result([states[k] for k in sorted(states)])


def _pending_checkpoints(checkpoints: Iterable[Checkpoint], topic: str | None
                         ) -> dict[tuple[str, int], _Partition]:
    """One state per partition, holding its checkpoints in offset order."""
    states: dict[tuple[str, int], _Partition] = {}
    for cp in sorted((c for c in checkpoints if topic is None or c.topic == topic),
                     key=lambda c: (c.topic, c.partition, c.offset)):
        st = states.get((cp.topic, cp.partition))
        if st is None:
            st = states[(cp.topic, cp.partition)] = _Partition(cp.topic, cp.partition)
        st.pending.append(cp)
    return states


def _chain_records(states: dict[tuple[str, int], _Partition], records: Iterable[ChainRecord],
                   public: Ed25519PublicKey | None, topic: str | None) -> None:
    """Chain every record, checking each checkpoint as the chain passes its offset."""
    last_key: tuple[str, int] | None = None
    st: _Partition | None = None
    for rec in records:
        key = (rec.topic, rec.partition)
        if key != last_key:
            if topic is not None and rec.topic != topic:
                continue
            st = states.get(key)
            if st is None:
                st = states[key] = _Partition(rec.topic, rec.partition)
            last_key = key
        assert st is not None
        if st.failure is None:
            st.take(rec, public)


def _result(ordered: list[_Partition]) -> VerifyResult:
    records_checked = sum(s.records for s in ordered)
    checked = sum(s.checked for s in ordered)
    tail = sum(s.records - s.records_at_good for s in ordered)
    for s in ordered:
        if s.failure is not None:
            offset, reason = s.failure
            return VerifyResult(False, (s.partition, offset),
                                f"{s.topic}[{s.partition}] offset {offset}: {reason}",
                                records_checked, checked, tail, len(ordered))
    summary = (f"{records_checked} records in {len(ordered)} partitions match {checked} signed"
               f" checkpoints; {tail} records after the last checkpoint are not signed yet")
    return VerifyResult(True, None, summary, records_checked, checked, tail, len(ordered))


# --- the ledger's own events ----------------------------------------------------------------

SIGNATURE_HEADER = "registre-signature"
_LEDGER_EVENT = _DOMAIN + b"ledger-event\x00"


def sign_ledger_event(private_key: Ed25519PrivateKey, key: bytes, value: bytes) -> bytes:
    """The signature a ledger fact (KeysDestroyed, ErasureCompleted...) carries in its
    ``registre-signature`` header: only the holder of the signing key writes the ledger's
    facts."""
    return private_key.sign(_LEDGER_EVENT + _frame(key) + _frame(value))


def ledger_event_signed(public_key: Ed25519PublicKey, key: bytes | None, value: bytes | None,
                        headers: Any) -> bool:
    """Whether a record carries a valid signature of the ledger; never raises."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    signature = next((v for k, v in pairs if k == SIGNATURE_HEADER), None)
    if not signature:
        return False
    try:
        public_key.verify(bytes(signature), _LEDGER_EVENT + _frame(key or b"") + _frame(
            value or b""))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# --- checkpoints on the wire (the checkpoint topic) -----------------------------------------

_CHECKPOINT_MAGIC = b"\xc3\x01"


@cache
def _checkpoint_schema() -> tuple[Any, bytes]:
    import json
    from importlib import resources

    text = resources.files("schemas").joinpath("records/Checkpoint.avsc").read_text("utf-8")
    parsed = fastavro.parse_schema(json.loads(text))
    canonical = fastavro.schema.to_parsing_canonical_form(parsed)
    return parsed, bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


def encode_checkpoint(cp: Checkpoint) -> bytes:
    """Single-object Avro of ``schemas/records/Checkpoint.avsc``."""
    parsed, fp = _checkpoint_schema()
    out = io.BytesIO()
    out.write(_CHECKPOINT_MAGIC + fp)
    fastavro.schemaless_writer(out, parsed, dataclasses.asdict(cp))
    return out.getvalue()


def decode_checkpoint(value: bytes) -> Checkpoint:
    """A checkpoint from the checkpoint topic; ValueError for anything else."""
    parsed, fp = _checkpoint_schema()
    if value[:10] != _CHECKPOINT_MAGIC + fp:
        raise ValueError("not a registre checkpoint")
    rec = fastavro.schemaless_reader(io.BytesIO(value[10:]), parsed, parsed)
    return Checkpoint(rec["topic"], rec["partition"], rec["offset"], bytes(rec["chain_hash"]),
                      rec["signed_at"], bytes(rec["signature"]))


def chain_form(record: Any) -> Any:
    """The form of a record that the chain covers.

    A record that is not a registre event (it was dead-lettered) is archived as a placeholder
    with no bytes, to keep personal data that may be in it out of PostgreSQL; the chain covers
    that placeholder, so a log restored from the archive verifies like the original.
    """
    from events.codec import DecodeError, decode

    try:
        decode(record.value or b"")
    except DecodeError:
        return placeholder(record)
    return record


def placeholder(record: Any) -> Any:
    """What the chain and the archive keep of a record that is not a registre event."""
    return record._replace(key=None, value=None, headers=())  # a LogRecord
