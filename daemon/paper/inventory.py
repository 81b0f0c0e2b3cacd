"""The account: inventory, funding and PnL attribution (pure: a deterministic fold of fills,
tickers and mids). :class:`Inventory` is the **one owner of position**: the quoter and the risk gate
read a symbol's position from it; venues only report fills.

Units: positions in ``int`` lots (``Instrument.qty_step``), prices in ticks on input; every money
amount is a ``float`` in **quote currency** (USDT for linear), every price in price units
(quote per base). Times are exchange ms.

Accounting (average-cost method, per symbol)::

    cash      = - sum(side * price * qty) - fees - funding
    realized  = sum over reducing fills of closed_qty * (price - avg_entry) * sign(position)
    unrealized= position * (mark - avg_entry)            (mark = latest mid)
    total     = cash + position * mark = realized + unrealized - fees - funding

Attribution::

    spread    = sum over fills of side * (mid_at_fill - price) * qty   (captured half-spread, signed)
    inventory = realized + unrealized - spread  (= sum of position * d(mid) between events)
    total     = spread + inventory - fees - funding

``fees`` are paid maker fees (negative = rebates), ``funding`` paid funding (negative = received).

Funding (perpetuals, :meth:`Inventory.on_ticker`): the account caches each symbol's ticker
``fundingRate``, ``nextFundingTime`` (ms) and ``markPrice``; at the first ticker whose
``ts_ms >= nextFundingTime`` it settles ``payment = position * mark * rate`` (position in base
units, signed; the rate announced before the time): longs pay when the rate is positive
(``payment > 0`` = we paid). Funding ids are ``funding:{symbol}:{funding_time_ms}``.

Markouts: each fill is marked out at horizons ``h`` (default 1 s, 5 s, 30 s) with the mid
*prevailing* at ``fill_ts + h`` (the last mid with ``ts <= fill_ts + h``), computed as mids arrive:
``markout = side * (mid(t + h) - price)`` in price units (positive = the fill was good for us);
``Markout.pnl = markout * qty`` in quote currency. A markout is emitted by the first mid update with
``ts >= fill_ts + h``; fills still waiting at a restart are not marked out (documented gap).

Idempotence: :meth:`Inventory.apply_fill` and :meth:`Inventory.apply_funding` ignore an id they have
already seen, so folding a journal twice (or a fill the ledger already holds) cannot double-count.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import msgspec

from daemon.core.events import Fill
from daemon.core.instrument import Instrument

DEFAULT_HORIZONS_MS = (1000, 5000, 30000)
DAY_MS = 86_400_000
_NEVER = float("inf")  # no pending markout


class BookedFill(Fill, gc=False):
    """A :class:`~daemon.core.events.Fill` as booked by the inventory: the same fields (a subclass,
    so they are declared once) plus the mid at fill time (price units; ``nan`` when no mid was
    known) that spread attribution needs. This is the record the engine journals (kind ``fill``);
    the ledger refuses a plain ``Fill`` by exact type."""

    mid: float

    @classmethod
    def of(cls, f: Fill, mid: float) -> "BookedFill":
        return cls(f.fill_id, f.symbol, f.order_id, f.side, f.price, f.qty, f.fee, f.trade_id, f.ts_ms, mid)


class Markout(msgspec.Struct, gc=False):
    """Markout of one fill at one horizon. ``value`` price units (side-signed), ``pnl`` quote."""

    markout_id: str
    symbol: str
    fill_id: str
    horizon_ms: int
    ts_ms: int
    side: int
    price: float
    mid: float
    value: float
    pnl: float


class Funding(msgspec.Struct, gc=False):
    """A funding settlement. ``payment`` in quote currency, positive = we paid. ``rate`` as a
    fraction, ``mark`` in price units (quote per base), ``position_lots`` signed lots."""

    funding_id: str
    symbol: str
    ts_ms: int
    rate: float
    mark: float
    position_lots: int
    payment: float


class _FundingCache:
    """A symbol's latest ticker funding fields and the last funding time settled."""

    __slots__ = ("rate", "next_ms", "mark", "settled_ms")

    def __init__(self) -> None:
        self.rate: float | None = None
        self.next_ms: int | None = None
        self.mark: float | None = None
        self.settled_ms = -1


class Mark(msgspec.Struct, gc=False):
    """A periodic mark for the ledger/report: mid (price units), our quote (ticks, ``None`` = not
    quoting), position (lots) and the engine's event position marker ``pos`` (events consumed so far;
    a replay can resume from the last durable one)."""

    mark_id: str
    symbol: str
    ts_ms: int
    mid: float
    bid_px: int | None
    ask_px: int | None
    position_lots: int
    pos: int = -1


@dataclass
class SymbolPnl:
    """Running accounting state of one symbol (see module docstring for definitions)."""

    symbol: str
    position_lots: int = 0
    avg_entry: float = 0.0
    cash: float = 0.0
    realized: float = 0.0
    fees: float = 0.0
    funding: float = 0.0
    spread: float = 0.0
    n_fills: int = 0
    volume_lots: int = 0
    volume_quote: float = 0.0
    mid: float = float("nan")
    mid_ts_ms: int = 0
    markout_sum: dict[int, float] = field(default_factory=dict)
    markout_n: dict[int, int] = field(default_factory=dict)


class PnlBreakdown(msgspec.Struct, frozen=True):
    """One symbol's PnL by component (quote currency) and its position (lots)."""

    symbol: str
    position_lots: int
    avg_entry: float
    realized: float
    unrealized: float
    spread: float
    inventory: float
    fees: float
    funding: float
    total: float


#: how many recent fill/funding ids the in-memory fold remembers for idempotence
SEEN_MAX = 200_000


class Inventory:
    """Positions, cash and PnL attribution over many symbols (pure fold)."""

    def __init__(self, instruments: dict[str, Instrument], horizons_ms: tuple[int, ...] = DEFAULT_HORIZONS_MS) -> None:
        self.instruments = dict(instruments)
        self.horizons_ms = tuple(horizons_ms)
        self.books: dict[str, SymbolPnl] = {s: SymbolPnl(s) for s in self.instruments}
        #: ids of booked fills/funding, most recent ``SEEN_MAX`` (insertion-ordered, oldest evicted):
        #: bounded like the venue's trade-id memory; the ledger's UNIQUE(run_id, rec_id) stays the
        #: authority for the whole journal
        self._seen: dict[str, None] = {}
        self._pending: dict[str, dict[int, deque]] = {s: {h: deque() for h in self.horizons_ms} for s in self.instruments}
        #: per symbol, a time (ms) at or before the earliest due time at the head of a pending
        #: queue (inf: none): a mid before it has nothing to mark out (lowered when a fill is
        #: booked, recomputed when markouts are emitted)
        self._due_ms: dict[str, float] = {s: _NEVER for s in self.instruments}
        self._prev_mid: dict[str, float] = {}
        self._funding: dict[str, _FundingCache] = {}
        self.duplicates = 0
        # equity path (total PnL over all symbols)
        self.peak = 0.0
        self.max_drawdown = 0.0
        self.day = None
        self.day_start_total = 0.0
        self.last_ts_ms = 0

    def add_instrument(self, ins: Instrument) -> None:
        """Start tracking a symbol (no-op if known)."""
        if ins.symbol in self.books:
            return
        self.instruments[ins.symbol] = ins
        self.books[ins.symbol] = SymbolPnl(ins.symbol)
        self._pending[ins.symbol] = {h: deque() for h in self.horizons_ms}
        self._due_ms[ins.symbol] = _NEVER

    # -- inputs ---------------------------------------------------------------------------------

    def on_mid(self, symbol: str, ts_ms: int, mid: float) -> list[Markout]:
        """A new mid (price units) at ``ts_ms``. Returns the markouts that came due."""
        b = self.books[symbol]
        out: list[Markout] = []
        if ts_ms >= self._due_ms[symbol]:
            prev = b.mid
            nxt = _NEVER
            for h, dq in self._pending[symbol].items():
                while dq and dq[0][0] <= ts_ms:
                    due, fid, side, px, qty = dq.popleft()
                    m = mid if due == ts_ms or prev != prev else prev  # prevailing mid at `due`
                    v = side * (m - px)
                    out.append(Markout(f"{fid}:mo{h}", symbol, fid, h, due, side, px, m, v, v * qty))
                    b.markout_sum[h] = b.markout_sum.get(h, 0.0) + v
                    b.markout_n[h] = b.markout_n.get(h, 0) + 1
                if dq and dq[0][0] < nxt:  # only queue heads are ever tested above
                    nxt = dq[0][0]
            self._due_ms[symbol] = nxt
        b.mid = mid
        b.mid_ts_ms = ts_ms
        self._touch(ts_ms)
        return out

    def apply_fill(self, f: Fill | BookedFill) -> BookedFill | None:
        """Book a fill at the current mid. Returns the :class:`BookedFill` to journal, or ``None``
        for a duplicate ``fill_id`` (ignored, counted in :attr:`duplicates`)."""
        if f.fill_id in self._seen:
            self.duplicates += 1
            return None
        mid = f.mid if isinstance(f, BookedFill) else self.books[f.symbol].mid
        bf = f if isinstance(f, BookedFill) else BookedFill.of(f, mid)
        self._book(bf)
        return bf

    def _remember(self, rec_id: str) -> None:
        seen = self._seen
        seen[rec_id] = None
        if len(seen) > SEEN_MAX:
            del seen[next(iter(seen))]

    def _book(self, f: BookedFill) -> None:
        self._remember(f.fill_id)
        ins = self.instruments[f.symbol]
        b = self.books[f.symbol]
        px = ins.price.to_float(f.price)
        qb = ins.qty.to_float(f.qty)
        side = f.side
        b.cash -= side * px * qb + f.fee
        b.fees += f.fee
        b.n_fills += 1
        b.volume_lots += f.qty
        b.volume_quote += px * qb
        if f.mid == f.mid:  # not nan
            b.spread += side * (f.mid - px) * qb
            # the mark at the fill is the mid it was booked at: live that is already b.mid; a
            # restore folding the journal then values the position exactly as the live run did
            # at this point (its equity path is a subset of the live one's points)
            b.mid = f.mid
        pos = b.position_lots
        q = f.qty
        if pos == 0 or (pos > 0) == (side > 0):
            ap = ins.qty.to_float(abs(pos))
            b.avg_entry = (b.avg_entry * ap + px * qb) / (ap + qb)
            b.position_lots = pos + side * q
        else:
            closed = min(abs(pos), q)
            sgn = 1 if pos > 0 else -1
            b.realized += ins.qty.to_float(closed) * (px - b.avg_entry) * sgn
            b.position_lots = pos + side * q
            if b.position_lots == 0:
                b.avg_entry = 0.0
            elif (b.position_lots > 0) != (pos > 0):
                b.avg_entry = px  # flipped through zero: the remainder opens at this price
        due_ms = self._due_ms
        for h, dq in self._pending[f.symbol].items():
            dq.append((f.ts_ms + h, f.fill_id, side, px, qb))
            if f.ts_ms + h < due_ms[f.symbol]:
                due_ms[f.symbol] = f.ts_ms + h
        self._touch(f.ts_ms)

    def on_ticker(self, symbol: str, data: dict, ts_ms: int) -> list[Funding]:
        """A ticker snapshot or delta of ``symbol`` (Bybit's ``tickers`` data; a missing key means
        unchanged) at exchange time ``ts_ms``. Settles funding first if it is due, with the
        *cached* rate (the one announced before the funding time), then merges the new fields.
        Returns the settlement to book (through :meth:`apply_funding`, like fills), if any."""
        fc = self._funding.get(symbol)
        if fc is None:
            fc = self._funding[symbol] = _FundingCache()
        out = self._settle_funding(symbol, fc, ts_ms)
        r = data.get("fundingRate")
        if r not in (None, ""):
            fc.rate = float(r)
        n = data.get("nextFundingTime")
        if n not in (None, ""):
            fc.next_ms = int(n)
        m = data.get("markPrice")
        if m not in (None, ""):
            fc.mark = float(m)
        return out

    def _settle_funding(self, symbol: str, fc: _FundingCache, ts_ms: int) -> list[Funding]:
        nf = fc.next_ms
        if nf is None or ts_ms < nf or nf <= fc.settled_ms:
            return []
        fc.settled_ms = nf
        if fc.rate is None or fc.mark is None:
            return []
        lots = self.books[symbol].position_lots
        pay = self.instruments[symbol].qty.to_float(lots) * fc.mark * fc.rate
        return [Funding(f"funding:{symbol}:{nf}", symbol, nf, fc.rate, fc.mark, lots, pay)]

    def position_lots(self, symbol: str) -> int:
        """Net position of ``symbol`` in lots (signed): the one figure the quoter and risk read."""
        return self.books[symbol].position_lots

    def apply_funding(self, fnd: Funding) -> bool:
        """Book a :class:`Funding` (``payment`` > 0 = paid). False if seen."""
        if fnd.funding_id in self._seen:
            self.duplicates += 1
            return False
        self._remember(fnd.funding_id)
        b = self.books[fnd.symbol]
        b.funding += fnd.payment
        b.cash -= fnd.payment
        self._touch(fnd.ts_ms)
        return True

    def _touch(self, ts_ms: int) -> None:
        """Update the equity path (peak, drawdown, UTC-day baseline) at ``ts_ms``."""
        if ts_ms > self.last_ts_ms:
            self.last_ts_ms = ts_ms
        tot = self.total_pnl()
        day = ts_ms // DAY_MS
        if self.day is None:
            self.day = day
            self.day_start_total = 0.0
        elif day > self.day:
            self.day = day
            self.day_start_total = tot
        if tot > self.peak:
            self.peak = tot
        dd = self.peak - tot
        if dd > self.max_drawdown:
            self.max_drawdown = dd

    # -- reads ----------------------------------------------------------------------------------

    def unrealized(self, symbol: str) -> float:
        b = self.books[symbol]
        if b.position_lots == 0 or b.mid != b.mid:
            return 0.0
        return self.instruments[symbol].qty.to_float(b.position_lots) * (b.mid - b.avg_entry)

    def pnl(self, symbol: str) -> PnlBreakdown:
        b = self.books[symbol]
        u = self.unrealized(symbol)
        gross = b.realized + u
        return PnlBreakdown(
            symbol, b.position_lots, b.avg_entry, b.realized, u, b.spread, gross - b.spread, b.fees, b.funding,
            gross - b.fees - b.funding,
        )

    def total_pnl(self) -> float:
        t = 0.0
        for s, b in self.books.items():
            t += b.realized - b.fees - b.funding
            if b.position_lots and b.mid == b.mid:
                t += self.instruments[s].qty.to_float(b.position_lots) * (b.mid - b.avg_entry)
        return t

    def pnl_path(self) -> tuple[float, float, float]:
        """``(total_pnl(), drawdown(), daily_pnl())`` with the total computed once (the risk gate's
        inputs on every decision; quote currency)."""
        t = self.total_pnl()
        return t, self.peak - t, t - self.day_start_total

    def drawdown(self) -> float:
        """Current drawdown from the equity peak (quote currency, >= 0)."""
        return self.peak - self.total_pnl()

    def daily_pnl(self) -> float:
        """PnL since the start of the current UTC day (of the latest event)."""
        return self.total_pnl() - self.day_start_total

    def position_base(self, symbol: str) -> float:
        return self.instruments[symbol].qty.to_float(self.books[symbol].position_lots)

    def notional(self, symbol: str) -> float:
        """|position| * mid in quote currency (0 without a mid)."""
        b = self.books[symbol]
        if b.mid != b.mid:
            return abs(self.position_base(symbol)) * b.avg_entry
        return abs(self.position_base(symbol)) * b.mid

    def total_notional(self) -> float:
        """Sum of :meth:`notional` over all symbols (quote currency)."""
        t = 0.0
        for sym in self.books:
            t += self.notional(sym)
        return t

    def markout_means(self, symbol: str) -> dict[int, float]:
        b = self.books[symbol]
        return {h: (b.markout_sum.get(h, 0.0) / b.markout_n[h]) if b.markout_n.get(h) else float("nan") for h in self.horizons_ms}

    def state(self) -> dict[str, tuple]:
        """A comparable snapshot: symbol -> (position_lots, avg_entry, cash, realized, fees, funding,
        spread, n_fills). Used to check that a restart restores exactly."""
        return {
            s: (b.position_lots, b.avg_entry, b.cash, b.realized, b.fees, b.funding, b.spread, b.n_fills)
            for s, b in self.books.items()
        }


class MarkSampler:
    """Decides when to journal a :class:`Mark`: at most one per ``interval_ms`` per symbol
    (exchange time)."""

    def __init__(self, interval_ms: int) -> None:
        if interval_ms < 1:
            raise ValueError("mark interval must be >= 1 ms")
        self.interval_ms = interval_ms
        self._next: dict[str, int] = {}

    def due(self, symbol: str, ts_ms: int) -> bool:
        nxt = self._next.get(symbol)
        if nxt is not None and ts_ms < nxt:
            return False
        self._next[symbol] = (ts_ms // self.interval_ms + 1) * self.interval_ms
        return True
