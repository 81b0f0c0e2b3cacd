"""What the ledger journals: the record types, their registry (keyed by class) and the body encoding.

Every record the journal accepts has an entry in :data:`RECORD_TYPES`, keyed by its class: the
``kind`` stored in the journal's ``kind`` column, the attribute that is its record id (unique per
run: the journal's dedup key) and whether it carries an event position marker. Dispatch is by the
record's exact type (``type(rec)``), never by a class name; the ``kind`` strings are part of the file
format and must never be renamed. Bodies are msgpack-encoded msgspec structs (exact floats, NaN
kept); a body is decoded with the type registered for its row's ``kind``.

No SQLite here: the columns a record is stored under are built by
:func:`daemon.paper.ledger_schema.journal_row` from :func:`row_of` and :func:`encode`.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from daemon.core.events import Fill
from daemon.core.instrument import Instrument
from daemon.risk import RiskEvent
from daemon.paper.inventory import BookedFill, Funding, Mark, Markout
from daemon.execution.protocol import OrderEvent


class LedgerError(RuntimeError):
    """A ledger that cannot be used (message: one line)."""


class InstrumentRecord(msgspec.Struct, gc=False):
    """The trading rules of one symbol, journalled once per run (the report needs the grids)."""

    symbol: str
    category: str
    tick_size: str
    qty_step: str
    min_qty_lots: int
    max_qty_lots: int
    min_notional: float
    funding_interval_min: int
    contract_type: str

    @classmethod
    def of(cls, i: Instrument) -> "InstrumentRecord":
        return cls(i.symbol, i.category, i.tick_size, i.qty_step, i.min_qty_lots, i.max_qty_lots, i.min_notional,
                   i.funding_interval_min, i.contract_type)

    def instrument(self) -> Instrument:
        return Instrument(self.symbol, self.category, self.tick_size, self.qty_step, self.min_qty_lots, self.max_qty_lots,
                          self.min_notional, self.funding_interval_min, self.contract_type)


class ResumeRequest(msgspec.Struct, gc=False):
    """A manual resume of a tripped risk gate (written by ``mmd resume``). ``run_id`` ``"*"`` = any
    run. ``wall_ms`` is the operator's wall-clock time (ms)."""

    resume_id: str
    run_id: str
    wall_ms: int
    reason: str = ""


class QuoteAudit(msgspec.Struct, gc=False):
    """One explainable quote decision (``[ops] audit_every_n``): the record built by
    :func:`daemon.models.quoting.audit_record` (features, p_adverse, sigma, A, kappa, q, r, deltas,
    raw and final prices, why a side was pulled), journalled as kind ``audit``."""

    audit_id: str
    symbol: str
    ts_ms: int
    record: dict


class RecordType(NamedTuple):
    """How one record class is journalled."""

    #: the journal's ``kind`` column (file format: never rename)
    kind: str
    #: the attribute holding the record id (``rec_id`` column, unique per run)
    id_attr: str
    #: prepended to the id in ``rec_id`` (instrument rows: ``instrument:{symbol}``)
    id_prefix: str = ""
    #: the record carries an event position marker ``pos`` (the ``pos`` column when ``>= 0``)
    has_pos: bool = False


#: record class -> how it is journalled
RECORD_TYPES: dict[type, RecordType] = {
    QuoteAudit: RecordType("audit", "audit_id"),
    BookedFill: RecordType("fill", "fill_id"),
    OrderEvent: RecordType("order", "event_id"),
    Funding: RecordType("funding", "funding_id"),
    Markout: RecordType("markout", "markout_id"),
    Mark: RecordType("mark", "mark_id", has_pos=True),
    RiskEvent: RecordType("risk", "risk_id"),
    ResumeRequest: RecordType("resume", "resume_id"),
    InstrumentRecord: RecordType("instrument", "symbol", id_prefix="instrument:"),
}
#: journal ``kind`` -> record class
KIND_TYPES: dict[str, type] = {rt.kind: t for t, rt in RECORD_TYPES.items()}

_enc = msgspec.msgpack.Encoder()
_decoders: dict[str, msgspec.msgpack.Decoder] = {k: msgspec.msgpack.Decoder(t) for k, t in KIND_TYPES.items()}

#: the body of a record (msgpack bytes)
encode = _enc.encode


def decode(kind: str, body: bytes, seq: int | None = None):
    """Decode one journal body of ``kind`` into its record struct; :class:`LedgerError` (naming the
    row) for an unknown kind or an undecodable body."""
    try:
        return _decoders[kind].decode(body)
    except KeyError:
        raise LedgerError(f"journal row {seq}: unknown record kind {kind!r}") from None
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as e:
        raise LedgerError(f"journal row {seq}: undecodable {kind} record: {e}") from None


def record_type(rec) -> RecordType:
    """The registry entry of ``rec``'s class; ``TypeError`` (explaining why) for a record the journal
    does not know, e.g. a raw ``Fill`` (journal the ``BookedFill`` from ``Inventory.apply_fill``)."""
    t = type(rec)
    if t is Fill:
        raise TypeError("append the BookedFill returned by Inventory.apply_fill, not a raw Fill")
    try:
        return RECORD_TYPES[t]
    except KeyError:
        raise TypeError(f"cannot journal a {t.__name__}") from None


def row_of(rec) -> tuple[str, str, str, int, int | None]:
    """(kind, rec_id, symbol, ts_ms, pos) of a record. ``symbol`` is ``"*"`` for records without one;
    ``ts_ms`` is the record's ``ts_ms`` (exchange ms), else its ``wall_ms``, else 0."""
    rt = record_type(rec)
    rid = getattr(rec, rt.id_attr)
    if rt.id_prefix:
        rid = f"{rt.id_prefix}{rid}"
    sym = getattr(rec, "symbol", "*")
    ts = getattr(rec, "ts_ms", None)
    if ts is None:
        ts = getattr(rec, "wall_ms", 0)
    pos = rec.pos if rt.has_pos and rec.pos >= 0 else None
    return rt.kind, rid, sym, ts, pos
