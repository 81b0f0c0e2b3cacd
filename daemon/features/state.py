"""Per-symbol incremental microstructure features (pure: no clock, no I/O).

One :class:`FeatureState` per symbol. The engine calls

* :meth:`FeatureState.on_book` after the primary book applied an update and is LIVE;
* :meth:`FeatureState.on_trade` for each public trade;
* :meth:`FeatureState.on_kline` for each candle (only ``confirm = True`` ones are used);
* :meth:`FeatureState.on_timer` on clock ticks (moves windows and the sampling clock);
* :meth:`FeatureState.reset_book` when the book leaves LIVE (so OFI never compares across a gap).

**Time** is the feature clock ``now_ms``: the running maximum of the ``ts_ms`` of book, trade and
timer events (klines do not move it: REST history is old). Every windowed quantity stamps an event
with the clock *after* the event, so a late event (``ts_ms`` below the clock) counts as "now".
Windows are ``(now - W, now]``. Each update is O(1) or O(top_k) amortised; memory is bounded by
the windows.

Features (attribute -> meaning, unit). ``Vb``/``Va`` are sizes, ``Pb``/``Pa`` best prices:

============================ ===================================================================
``mid``                      (Pb + Pa) / 2, price units (NaN before the first two-sided book)
``weighted_mid``             (Va*Pb + Vb*Pa) / (Vb + Va) with best-level sizes, price units.
                             Not Stoikov's micro-price (papers.md section 7).
``wmid_lean_ticks``          (weighted_mid - mid) / tick, in ticks (directional)
``spread_ticks``             Pa - Pb in ticks; ``spread_bps``: (Pa - Pb) / mid * 1e4
``spread_z``                 z-score of the spread (ticks) against its last ``spread_window``
                             samples on the ``vol_sample_s`` clock (0 when their std is 0)
``imbalance_top``            (Vb - Va) / (Vb + Va) at the best level, in [-1, 1] (0 if both 0)
``imbalance_k``              the same with the sizes summed over the top ``top_k`` levels
``depth_ratio``              (Vb_1 + Va_1) / (Vb_k + Va_k): share of the top-``k`` depth at the
                             touch, in (0, 1] (0 for an empty book)
``bid_depth_k``/``ask_depth_k`` sizes within ``top_k`` levels, base units
``queue_pressure_bid``/``_ask`` rate of change of the best-level size while its price is unchanged,
                             summed over ``ofi_window_s`` and divided by it: base units per second
``queue_pressure``           queue_pressure_bid - queue_pressure_ask (directional)
``ofi``                      Cont-Kukanov-Stoikov OFI, weak inequalities (papers.md section 6), one
                             ``e_n`` per book update, summed over ``ofi_window_s``: base units
``cum_delta``                signed taker volume since start (buy +, sell -), base units
``delta_window``             signed taker volume over ``trade_window_s``, base units
``volume``                   taker volume over ``trade_window_s``, base units
``trade_rate``               trades per second over ``trade_window_s`` (count / window)
``avg_trade_size``           volume / trade count over ``trade_window_s``, base units (0 if none)
``vpin``                     BVC-VPIN (see :mod:`daemon.features.vpin`), NaN before one bucket
``realized_vol``             rolling std of per-sample mid log-returns (``vol_sample_s`` clock,
                             ``vol_window`` returns); ``realized_vol_per_s`` per sqrt(second)
``ewma_vol``/``ewma_vol_per_s`` EWMA of squared returns (half-life ``vol_ewma_halflife_s``)
``gk_vol_per_s``             Garman-Klass std of log price per sqrt(second) from closed candles
============================ ===================================================================

Edge cases: an empty side leaves ``mid``/``weighted_mid``/spread at their last values and
contributes nothing to that side's OFI / queue pressure; a snapshot of a depth > 1 book (a
(re)subscription) restarts the OFI comparison. Trades with a non-positive size or price, an
unknown side, or an inconsistent candle are rejected, counted in :attr:`FeatureState.errors` and
logged (first few per kind). Block trades (off-book) are counted and not used.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Iterable

from daemon.core.events import BookUpdate, Kline, Trade
from daemon.core.instrument import Instrument
from daemon.features.volatility import GarmanKlass, RealizedVol, SampleClock, SpreadStats
from daemon.features.vpin import Vpin
from daemon.features.windows import TimeWindowSum

#: every feature readable through :meth:`FeatureState.vector` / :meth:`FeatureState.as_dict`
FEATURE_NAMES: tuple[str, ...] = (
    "mid",
    "weighted_mid",
    "wmid_lean_ticks",
    "spread_ticks",
    "spread_bps",
    "spread_z",
    "imbalance_top",
    "imbalance_k",
    "depth_ratio",
    "bid_depth_k",
    "ask_depth_k",
    "queue_pressure_bid",
    "queue_pressure_ask",
    "queue_pressure",
    "ofi",
    "cum_delta",
    "delta_window",
    "volume",
    "trade_rate",
    "avg_trade_size",
    "vpin",
    "realized_vol",
    "realized_vol_per_s",
    "ewma_vol",
    "ewma_vol_per_s",
    "gk_vol_per_s",
)

#: features whose sign says "price pressure up" (positive) vs "down" (negative)
DIRECTIONAL_FEATURES: frozenset[str] = frozenset(
    {"wmid_lean_ticks", "imbalance_top", "imbalance_k", "queue_pressure", "ofi", "cum_delta", "delta_window"}
)

_LOG_FIRST_N = 5


_GETTERS: dict[tuple, Any] = {}

#: features kept up to date in a field (the property returns that field): vector() reads the field
_STORED: dict[str, str] = {
    "wmid_lean_ticks": "_lean",
    "spread_bps": "_spread_bps",
    "imbalance_top": "_imbalance_top",
    "imbalance_k": "_imbalance_k",
    "depth_ratio": "_depth_ratio",
    "queue_pressure": "_queue_pressure",
    "ofi": "_ofi_v",
}


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


@dataclass(frozen=True, slots=True)
class FeatureParams:
    """Feature windows (the defaults are ``[features]``'s; :mod:`daemon.wiring` maps the config).

    ``top_k``: book levels summed by the depth features; ``ofi_window_s``, ``trade_window_s``:
    window lengths (seconds, whole milliseconds); ``vol_sample_s``: sampling step of realized vol
    and spread stats (seconds); ``vol_window``: returns in the realized-vol window;
    ``vol_ewma_halflife_s``: EWMA half-life (seconds); ``vpin_bucket_volume``: base units per
    VPIN bucket (0 = derive from ``vpin_derive_s`` seconds of volume / ``vpin_buckets``);
    ``vpin_buckets``: buckets in the VPIN window; ``vpin_bar_s``: VPIN time-bar length (seconds);
    ``vpin_sigma_bars``: bar price changes in the BVC sigma estimate; ``spread_window``: spread
    samples in the z-score; ``gk_window``: closed candles in Garman-Klass."""

    top_k: int = 5
    ofi_window_s: float = 10.0
    trade_window_s: float = 60.0
    vol_sample_s: float = 1.0
    vol_window: int = 300
    vol_ewma_halflife_s: float = 60.0
    vpin_bucket_volume: float = 5.0
    vpin_buckets: int = 50
    vpin_bar_s: float = 1.0
    vpin_sigma_bars: int = 300
    vpin_derive_s: float = 60.0
    spread_window: int = 600
    gk_window: int = 30


class FeatureState:
    """Incremental features of one symbol; see the module docstring for definitions and units."""

    def __init__(self, instrument: Instrument, params: FeatureParams | None = None) -> None:
        cfg = params if params is not None else FeatureParams()
        self.instrument = instrument
        self.params = cfg
        self.tick = instrument.price.to_float(1)
        self.lot = instrument.qty.to_float(1)
        self.top_k = cfg.top_k
        self.now_ms = -(1 << 62)
        self.errors: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        # book
        self.best_bid: int | None = None  # ticks
        self.best_ask: int | None = None
        self.bid_size = 0  # lots at the best level
        self.ask_size = 0
        self.bid_depth_lots = 0  # within top_k
        self.ask_depth_lots = 0
        self._mid2 = 0  # bid + ask (ticks) of the last two-sided book, 0 = none
        self._spread = 0  # ticks of the last two-sided book
        self._wmid = math.nan
        self._lean = 0.0  # weighted_mid - mid, ticks
        self._prev: tuple | None = None  # (bid, qb, ask, qa) for OFI; None = no comparison
        # features read on every tick, stored when their inputs change (their properties and
        # vector() read these fields; see _refresh_ofi and on_book)
        self._imbalance_top = 0.0
        self._imbalance_k = 0.0
        self._depth_ratio = 0.0
        self._spread_bps = math.nan
        self._ofi_v = 0.0
        self._queue_pressure = 0.0
        self._ofi_w_s = cfg.ofi_window_s
        self._ofi = TimeWindowSum(_ms(cfg.ofi_window_s), 3)  # e_n, dq_bid, dq_ask (lots)
        # trades
        self._trade_w_s = cfg.trade_window_s
        self._trades = TimeWindowSum(_ms(cfg.trade_window_s), 2)  # qty, signed qty (lots)
        self.cum_delta_lots = 0
        self._vpin = Vpin(
            _ms(cfg.vpin_bar_s),
            cfg.vpin_buckets,
            int(round(cfg.vpin_bucket_volume / self.lot)) if cfg.vpin_bucket_volume > 0 else 0,
            cfg.vpin_sigma_bars,
            _ms(cfg.vpin_derive_s),
        )
        if cfg.vpin_bucket_volume > 0 and self._vpin.bucket_lots < 1:
            raise ValueError(f"vpin_bucket_volume {cfg.vpin_bucket_volume} is below one lot ({self.lot})")
        # sampling clock: realized vol + spread distribution
        self._clock = SampleClock(_ms(cfg.vol_sample_s))
        self._vol = RealizedVol(cfg.vol_sample_s, cfg.vol_window, cfg.vol_ewma_halflife_s)
        self._spread_stats = SpreadStats(cfg.spread_window)
        self._gk = GarmanKlass(cfg.gk_window)

    # ---------------------------------------------------------------------------------------
    # events
    # ---------------------------------------------------------------------------------------

    def _advance(self, ts_ms: int) -> int:
        """Move the clock to ``max(now, ts_ms)``: emit due samples (with the pre-event state),
        close a finished VPIN bar, evict expired window entries. Returns the new clock."""
        now = self.now_ms
        if ts_ms > now:
            self.now_ms = now = ts_ms
        elif ts_ms < now:
            self.counts["late_events"] += 1
        clock = self._clock
        if clock.started and now > clock.next_ms:
            g = clock.due(now)
            if g:
                m2 = self._mid2
                self._vol.sample(m2, m2 * 0.5 * self.tick, g)
                self._spread_stats.sample(self._spread, g)
                self.counts["vol_samples"] += g
        # each of these is a no-op before its own due time (tested first: the common case)
        if now >= self._vpin.bar_end_ms:
            self._vpin.advance(now)
        if now >= self._ofi.expires_ms:
            self._ofi.evict(now)
            self._refresh_ofi()
        if now >= self._trades.expires_ms:
            self._trades.evict(now)
        return now

    def on_book(self, book: Any, ev: BookUpdate) -> None:
        """The book applied ``ev`` and is LIVE: update book features and OFI. ``book`` is an
        :data:`~daemon.core.book.OrderBook` (C or Python: ``best_bid``, ``best_ask``,
        ``top_of_book(k)``)."""
        now = self._advance(ev.ts_ms)
        bb, ba, qb, qa, vb, va = book.top_of_book(self.top_k)
        self.best_bid, self.best_ask = bb, ba
        self.bid_size, self.ask_size = qb, qa
        self.bid_depth_lots, self.ask_depth_lots = vb, va
        t = qb + qa
        self._imbalance_top = (qb - qa) / t if t else 0.0
        tk = vb + va
        self._imbalance_k = (vb - va) / tk if tk else 0.0
        self._depth_ratio = t / tk if tk else 0.0
        if bb is not None and ba is not None:
            m2 = self._mid2 = bb + ba
            self._spread = ba - bb
            self._spread_bps = 2e4 * self._spread / m2 if m2 else math.nan
            tot = qb + qa
            tick = self.tick
            self._wmid = (qa * bb + qb * ba) / tot * tick if tot else (bb + ba) * 0.5 * tick
            # weighted_mid - mid = (Pa - Pb)(Vb - Va) / (2 (Vb + Va)): exact in ticks
            self._lean = (ba - bb) * (qb - qa) / (2 * tot) if tot else 0.0
            if not self._clock.started:
                self._clock.start(now)
        # OFI (Cont-Kukanov-Stoikov, weak inequalities) and queue pressure
        prev = self._prev
        if ev.snapshot and ev.depth > 1:
            prev = None  # (re)subscription: the change since the last book is unobserved
        if prev is not None:
            pb, pqb, pa, pqa = prev
            e = 0
            dqb = 0
            dqa = 0
            if bb is not None and pb is not None:
                if bb >= pb:
                    e += qb
                if bb <= pb:
                    e -= pqb
                if bb == pb:
                    dqb = qb - pqb
            if ba is not None and pa is not None:
                if ba <= pa:
                    e -= qa
                if ba >= pa:
                    e += pqa
                if ba == pa:
                    dqa = qa - pqa
            if e or dqb or dqa:
                self._ofi.push(now, e, dqb, dqa)
                self._refresh_ofi()
        self._prev = (bb, qb, ba, qa)

    def _refresh_ofi(self) -> None:
        """The OFI window sums changed: store the features read on every tick."""
        s = self._ofi.sums
        self._ofi_v = s[0] * self.lot
        self._queue_pressure = (s[1] - s[2]) * self.lot / self._ofi_w_s

    def reset_book(self) -> None:
        """The book left LIVE: the next update starts a fresh OFI comparison."""
        self._prev = None

    def on_trade(self, tr: Trade) -> None:
        """One public trade (taker side, ticks, lots). Bad input is counted and dropped."""
        side = tr.side
        if tr.qty <= 0 or tr.price <= 0 or (side != 1 and side != -1):
            self._bad("bad_trade", f"trade {tr.trade_id!r}: side={side} price={tr.price} qty={tr.qty}")
            return
        if tr.block:
            self.counts["block_trades"] += 1
            return
        now = self._advance(tr.ts_ms)
        q = tr.qty
        signed = q if side > 0 else -q
        self.cum_delta_lots += signed
        self._trades.push(now, q, signed)
        self._vpin.on_trade(now, tr.price, q)

    def on_kline(self, k: Kline) -> None:
        """A candle: closed ones (``confirm``) feed Garman-Klass. Does not move the clock."""
        if not k.confirm:
            return
        try:
            if not self._gk.add(k.start_ms, k.end_ms, k.open, k.high, k.low, k.close):
                self.counts["duplicate_klines"] += 1
        except ValueError as e:
            self._bad("bad_kline", str(e))

    def on_timer(self, ts_ms: int) -> None:
        """Clock tick: advance windows, sampling clock and VPIN bars to ``ts_ms``."""
        self._advance(ts_ms)

    def _bad(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if self.errors[kind] <= _LOG_FIRST_N:
            from daemon.logging import get_logger

            get_logger("features").warning(
                "feature_input_rejected", kind=kind, detail=detail, symbol=self.instrument.symbol,
                count=self.errors[kind],
            )

    # ---------------------------------------------------------------------------------------
    # reads
    # ---------------------------------------------------------------------------------------

    @property
    def mid(self) -> float:
        return self._mid2 * 0.5 * self.tick if self._mid2 else math.nan

    @property
    def weighted_mid(self) -> float:
        return self._wmid

    @property
    def wmid_lean_ticks(self) -> float:
        return self._lean

    @property
    def spread_ticks(self) -> float:
        return float(self._spread) if self._mid2 else math.nan

    @property
    def spread_bps(self) -> float:
        return self._spread_bps  # 2e4 * spread / (bid + ask) of the last two-sided book

    @property
    def spread_z(self) -> float:
        return self._spread_stats.z(self._spread) if self._mid2 else 0.0

    @property
    def imbalance_top(self) -> float:
        return self._imbalance_top  # (Vb - Va) / (Vb + Va) at the touch, set by on_book

    @property
    def imbalance_k(self) -> float:
        return self._imbalance_k  # the same over the top_k levels

    @property
    def depth_ratio(self) -> float:
        return self._depth_ratio  # (Vb_1 + Va_1) / (Vb_k + Va_k)

    @property
    def bid_depth_k(self) -> float:
        return self.bid_depth_lots * self.lot

    @property
    def ask_depth_k(self) -> float:
        return self.ask_depth_lots * self.lot

    @property
    def queue_pressure_bid(self) -> float:
        return self._ofi.sums[1] * self.lot / self._ofi_w_s

    @property
    def queue_pressure_ask(self) -> float:
        return self._ofi.sums[2] * self.lot / self._ofi_w_s

    @property
    def queue_pressure(self) -> float:
        return self._queue_pressure  # (sums[1] - sums[2]) * lot / ofi_window_s

    @property
    def ofi_lots(self) -> int:
        """OFI over the window in lots (exact integer)."""
        return self._ofi.sums[0]

    @property
    def ofi(self) -> float:
        return self._ofi_v  # sums[0] * lot

    @property
    def cum_delta(self) -> float:
        return self.cum_delta_lots * self.lot

    @property
    def delta_window(self) -> float:
        return self._trades.sums[1] * self.lot

    @property
    def volume(self) -> float:
        return self._trades.sums[0] * self.lot

    @property
    def trade_count(self) -> int:
        return self._trades.count

    @property
    def trade_rate(self) -> float:
        return self._trades.count / self._trade_w_s

    @property
    def avg_trade_size(self) -> float:
        n = self._trades.count
        return self._trades.sums[0] * self.lot / n if n else 0.0

    @property
    def vpin(self) -> float:
        return self._vpin.value

    @property
    def vpin_state(self) -> Vpin:
        return self._vpin

    @property
    def realized_vol(self) -> float:
        return self._vol.realized_vol

    @property
    def realized_vol_per_s(self) -> float:
        return self._vol.realized_vol_per_s

    @property
    def ewma_vol(self) -> float:
        return self._vol.ewma_vol

    @property
    def ewma_vol_per_s(self) -> float:
        return self._vol.ewma_vol_per_s

    @property
    def gk_vol_per_s(self) -> float:
        return self._gk.vol_per_s

    @property
    def vol_returns(self) -> int:
        """Number of returns sampled so far."""
        return self._vol.n_returns

    def sigma_price_per_s(self, ewma: bool = False) -> float:
        """Quoter sigma in **price units per sqrt(second)**: the last sampled mid times the
        per-second std of mid log-returns (rolling window, or EWMA with ``ewma=True``).
        NaN while fewer than 2 returns exist: callers use their fallback."""
        return self._vol.sigma_price_per_s(ewma)

    def vector(self, names: Iterable[str]) -> tuple:
        """Feature values in the order of ``names`` (each one of :data:`FEATURE_NAMES`). Called on
        every tick by the classifier: the getter for a given tuple of names is compiled once."""
        key = names if type(names) is tuple else tuple(names)
        get = _GETTERS.get(key)
        if get is None:
            attrs = [_STORED.get(n, n) for n in key]  # a stored feature is read from its field
            get = _GETTERS[key] = attrgetter(*attrs) if len(attrs) > 1 else (lambda o, _g=attrgetter(*attrs): (_g(o),))
        return get(self)

    def as_dict(self) -> dict[str, float]:
        """All features by name (for audit logs and datasets)."""
        return {n: float(getattr(self, n)) for n in FEATURE_NAMES}
