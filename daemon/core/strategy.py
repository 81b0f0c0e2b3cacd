"""The strategy runtime: per-symbol features -> adverse classifier -> quoter -> risk gate -> paper
venue -> inventory, and the ledger that journals every record (pure apart from the ledger's
queue put; no clock).

The :class:`~daemon.core.engine.Engine` owns books and sequencing; it hands each market event,
after the book was updated, to the symbol's :class:`SymbolStrategy`:

* ``on_book`` (primary depth, book LIVE): features, venue queue updates, mid for markouts and
  marks, then one quote decision (the tick: features -> ``p_adverse`` -> calibration -> quoter ->
  :func:`~daemon.models.quoting.finalize` -> risk gate -> venue);
* ``on_trade``: features, calibration, venue fills -> inventory -> ledger;
* ``on_ticker``: funding rate / next funding time -> venue funding settlement;
* ``on_kline``: Garman-Klass;
* ``on_book_lost``: cancel all paper orders (nothing quotes outside LIVE).

Determinism: every record is a function of the market events and their exchange timestamps, so a
replay of the frames a live run recorded rebuilds the same journal. (Shell-only happenings that are
not in a recording -- a socket drop, a silent-book timeout, a manual ``mmd resume`` -- produce
records only in the live journal.)
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from daemon import wiring
from daemon.config import Settings
from daemon.core.engine import Engine, SymbolCore
from daemon.core.events import BUY, SELL, BookUpdate, Fill, Kline, Quote, TickerUpdate, Trade
from daemon.core.risk import RiskEvent, RiskGate
from daemon.features.state import FeatureState
from daemon.logging import get_logger
from daemon.models.calibration import Calibrator
from daemon.paper.inventory import Inventory, Mark, MarkSampler
from daemon.paper.ledger import Ledger, QuoteAudit
from daemon.paper.venue import PaperVenue

log = get_logger("mmd.strategy")


class SymbolStrategy:
    """Everything that decides and books for one symbol."""

    def __init__(self, rt: "Runtime", sc: SymbolCore, *, next_order_n: int = 1, position_lots: int = 0) -> None:
        s = rt.settings
        inst = sc.inst
        self.rt = rt
        self.sc = sc
        self.symbol = sc.symbol
        self.tick = inst.price.step_float
        self.lot = inst.qty.step_float
        self.features = FeatureState(inst, wiring.feature_params(s))
        self.calib = Calibrator(wiring.calibration_params(s), self.tick)
        quoter = rt.make_quoter()
        self.spread_features = None
        if s.quoter.spread_model == "nn":
            # A-S reservation price with the neural network's total spread (docs/models.md).
            from daemon.models.spread_nn import NNSpreadAS, SpreadFeatures, SpreadModel

            self.spread_features = SpreadFeatures()
            quoter = NNSpreadAS(quoter, SpreadModel.load(s.quoter.spread_model_path), self.spread_features)
        # No [adverse] threshold configured: the gate uses the model file's own threshold.
        self.pipe = wiring.quoting_pipeline(s, inst, quoter, rt.adverse.threshold if rt.adverse is not None else None)
        self.venue = PaperVenue(
            inst,
            entry_latency_ms=s.venue.entry_latency_ms,
            cancel_latency_ms=s.venue.cancel_latency_ms,
            maker_fee=s.venue.maker_fee,
            queue_model=s.venue.queue_model,
            queue_power=s.venue.queue_power,
            next_order_n=next_order_n,
            position_lots=position_lots,
        )
        self.marks = MarkSampler(s.ledger.mark_interval_ms)
        self.max_position_lots = max(1, int(s.risk.max_position / inst.qty.step_float + 1e-9))
        self.min_requote_ms = s.quoter.min_requote_ms
        self.audit_every = s.ops.audit_every_n
        self.last_quote: Quote | None = None
        self.last_quote_ms = -(1 << 62)
        self.p_bid = 0.0
        self.p_ask = 0.0
        self.decisions = 0
        self.quotes_sent = 0
        self.fills = 0
        self.fills_buy = 0  # of which our side was BUY (metrics split fills by side)
        self.volume_lots = 0
        self.mid = float("nan")
        self.pulled = ""

    # -- market events ---------------------------------------------------------------------------

    def on_book(self, ev: BookUpdate) -> None:
        rt = self.rt
        book = self.sc.book
        self.features.on_book(book, ev)
        if self.spread_features is not None:
            self.spread_features.on_book(book)
        rt.pos += 1
        put = rt.put
        recs = self.venue.on_book(book)
        if recs:
            put(recs)
        bb, ba = book.best_bid, book.best_ask
        if bb is None or ba is None:
            return
        ts = ev.ts_ms
        mid = (bb + ba) * 0.5 * self.tick
        self.mid = mid
        recs = rt.inventory.on_mid(self.symbol, ts, mid)
        if recs:
            put(recs)
        self._decide(ts)
        if self.marks.due(self.symbol, ts):
            rt.on_mark(self.symbol, mid)
            w = self.venue.working
            put([Mark(f"mark:{self.symbol}:{ts}", self.symbol, ts, mid, w[BUY].price if w[BUY] else None,
                      w[SELL].price if w[SELL] else None, self.venue.position_lots, rt.pos)])

    def on_trade(self, tr: Trade) -> None:
        rt = self.rt
        rt.pos += 1
        self.features.on_trade(tr)
        if self.spread_features is not None:
            self.spread_features.on_trade(tr)
        mid = self.mid
        if mid == mid:
            self.calib.on_trade(tr.ts_ms, tr.price * self.tick, tr.qty * self.lot, mid, tr.side)
        book = self.sc.book
        recs = self.venue.on_trade(tr, book if book.live else None)
        if recs:
            rt.put(recs)

    def on_ticker(self, ticker: dict, ts_ms: int) -> None:
        self.rt.pos += 1
        self.rt.put(self.venue.on_ticker(TickerUpdate(self.symbol, True, ticker, ts_ms, 0)))

    def on_kline(self, k: Kline) -> None:
        self.rt.pos += 1
        self.features.on_kline(k)

    def on_timer(self, ts_ms: int) -> None:
        """Wall-clock timer (live only): nothing that reaches the journal happens here."""

    def on_book_lost(self, reason: str, ts_ms: int) -> None:
        self.features.reset_book()
        self.cancel_all(ts_ms, f"book not LIVE: {reason}")

    def cancel_all(self, ts_ms: int, reason: str) -> None:
        if self.rt._stopped:
            return
        self.rt.put(self.venue.cancel_all(ts_ms, reason, None))
        self.last_quote = None

    # -- the tick --------------------------------------------------------------------------------

    def _decide(self, ts: int) -> None:
        rt = self.rt
        book = self.sc.book
        f = self.features
        inv = rt.inventory
        sym = self.symbol
        gate = rt.gate
        venue = self.venue
        total_pnl, drawdown, daily_pnl = inv.pnl_path()
        notional = inv.notional(sym)
        d = gate.check_symbol(
            ts, sym, book.live, ts - book.ts_ms, inv.position_base(sym), notional,
            total_pnl, drawdown, daily_pnl, rt.errors_total(), rt.ledger_problem(),
            notional if len(rt.strategies) == 1 else inv.total_notional(),
        )
        if d.events:
            rt.on_risk_events(d.events)
        if d.cancel and sym in d.cancel:
            if d.halted:  # a hard trip stops every symbol now, not each at its own next tick
                for other in rt.strategies.values():
                    other.cancel_all(ts, "risk gate")
            else:
                self.cancel_all(ts, "risk gate")
        model = rt.adverse
        if model is not None:
            self.p_bid, self.p_ask = model.predict(f)
        calib = self.calib
        calib.set_sigma(f.sigma_price_per_s())
        cal = calib.on_timer(ts)
        q = self.pipe.step(
            ts_ms=ts, best_bid_ticks=book.best_bid, best_ask_ticks=book.best_ask,
            position_lots=venue.position_lots, calibration=cal, ofi=f.ofi, imbalance=f.imbalance_top,
            vpin=f.vpin, p_adverse_bid=self.p_bid, p_adverse_ask=self.p_ask,
        )
        self.decisions += 1
        q = gate.filter_quote(q, d, venue.position_lots, self.max_position_lots)
        self.pulled = q.reason
        if self.audit_every and self.decisions % self.audit_every == 0:
            rec = self.pipe.audit(f.as_dict())
            if rec is not None:
                log.info("quote_audit", **rec)  # rec carries "symbol" (passing it twice is a TypeError)
                rt.put([QuoteAudit(f"audit:{sym}:{ts}:{self.decisions}", sym, ts, rec)])
        last = self.last_quote
        if last is not None and last.bid_px == q.bid_px and last.ask_px == q.ask_px and last.bid_qty == q.bid_qty \
                and last.ask_qty == q.ask_qty:
            return  # nothing to change: the venue keeps the orders and their queue places
        if self.min_requote_ms and last is not None and ts - self.last_quote_ms < self.min_requote_ms:
            return
        self.last_quote = q
        self.last_quote_ms = ts
        self.quotes_sent += 1
        rt.quoted = True
        rt.put(venue.on_quote(q, book))


class Runtime:
    """All symbols' strategies plus the shared inventory, risk gate and ledger."""

    def __init__(self, settings: Settings, engine: Engine, ledger: Ledger | None, mode: str) -> None:
        self.settings = settings
        self.engine = engine
        self.ledger = ledger
        self.mode = mode
        self.inventory = Inventory(engine.instruments)
        self.gate = RiskGate.from_config(settings.risk)
        self.adverse = self._load_adverse()
        self.pos = 0
        self.quoted = False
        self.errors_total = lambda: 0
        self.strategies: dict[str, SymbolStrategy] = {}
        #: cross-symbol hedge ratios (``[inventory] hedge_symbols``), sampled on the mark clock
        self.hedge = wiring.hedge_ratios(settings)
        self._mark_mids: dict[str, float] = {}
        self.records = 0
        self._stopped = False

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def live(cls, settings: Settings, engine: Engine, *, ledger_path: str, resume: bool = False) -> "Runtime":
        run_id = settings.ledger.run_id or "live"
        led = Ledger.open(ledger_path, run_id, "live", meta={"config_hash": settings.config_hash()},
                          instruments=engine.instruments, batch_max=settings.ledger.batch_max,
                          flush_interval_ms=settings.ledger.flush_interval_ms)
        st = led.restore()
        rt = cls(settings, engine, led, "live")
        rt.inventory = st.inventory if st.inventory.books else rt.inventory
        for sym in engine.instruments:
            if sym not in rt.inventory.books:
                rt.inventory.add_instrument(engine.instruments[sym])
        if st.risk_tripped:
            rt.gate.restore(True, st.risk_reason, st.risk_since_ms)
            log.warning("risk_gate_restored", reason=st.risk_reason, since_ms=st.risk_since_ms,
                        hint="resume with `mmd resume LEDGER` or start with --resume")
        rt._attach(next_order_n=st.next_order_n,
                   positions={s: b.position_lots for s, b in rt.inventory.books.items()})
        for sym, b in rt.inventory.books.items():
            if b.position_lots:
                log.info("position_restored", symbol=sym, position_lots=b.position_lots)
        if resume and rt.gate.tripped:
            rt._resume("--resume flag")
        return rt

    @classmethod
    def replay(cls, settings: Settings, engine: Engine, *, ledger_path: str | None, run_id: str = "replay",
               resume: bool = False) -> "Runtime":
        """A replay journals under ``run_id``. An interrupted replay re-run with the same run id
        regenerates the same records from fresh state; committed ones are ignored by id."""
        led = None
        if ledger_path:
            led = Ledger.open(ledger_path, run_id, "replay", meta={"config_hash": settings.config_hash()},
                              instruments=engine.instruments, batch_max=settings.ledger.batch_max,
                              flush_interval_ms=settings.ledger.flush_interval_ms)
        rt = cls(settings, engine, led, "replay")
        rt._attach(next_order_n={}, positions={})
        return rt

    def _attach(self, next_order_n: dict[str, int], positions: dict[str, int]) -> None:
        for sym, sc in self.engine.symbols.items():
            st = SymbolStrategy(self, sc, next_order_n=next_order_n.get(sym, 1), position_lots=positions.get(sym, 0))
            sc.strategy = st
            self.strategies[sym] = st

    def make_quoter(self):
        return wiring.make_quoter(self.settings)

    def _load_adverse(self):
        path = self.settings.adverse.model_path
        if not path:
            return None
        from daemon.models.adverse import AdverseModel

        model = AdverseModel.load(path)
        if self.settings.adverse.threshold is not None:
            model.threshold = self.settings.adverse.threshold
        log.info("adverse_model_loaded", path=path, features=model.feature_names, threshold=model.threshold)
        return model

    # -- plumbing --------------------------------------------------------------------------------

    def put(self, recs: list) -> None:
        if not recs:
            return
        led = self.ledger
        inv = self.inventory
        for r in recs:
            t = type(r)
            if t is Fill:
                booked = inv.apply_fill(r)
                if booked is None:
                    continue
                st = self.strategies.get(r.symbol)
                if st is not None:
                    st.fills += 1
                    if r.side == BUY:
                        st.fills_buy += 1
                    st.volume_lots += r.qty
                r = booked
            elif t.__name__ == "Funding":
                if not inv.apply_funding(r):
                    continue
            self.records += 1
            if led is not None:
                led.append(r)
        if led is not None and self.mode == "replay" and led.backlog > 16 * self.settings.ledger.batch_max:
            led.flush(60)  # replay backpressure: results must not depend on writer timing

    def on_mark(self, symbol: str, mid: float) -> None:
        """A symbol's mark (every ``mark_interval_ms`` of market time): sample the hedge ratios
        once per reference mark, with the latest mid of every symbol."""
        self._mark_mids[symbol] = mid
        if self.hedge is not None and symbol == self.hedge.reference:
            self.hedge.on_mids(self._mark_mids)

    def hedge_suggestion(self) -> float | None:
        """Suggested hedge ``q_hedge = -sum beta_i * q_i`` in reference base units (None if off)."""
        if self.hedge is None:
            return None
        positions = {s: self.inventory.position_base(s) for s in self.strategies}
        return self.hedge.hedge_qty(positions, self._mark_mids)

    def ledger_problem(self) -> str | None:
        if self.ledger is None or self.mode == "replay":
            return None
        return self.ledger.problem

    def ledger_writable(self) -> bool:
        return self.ledger is None or self.ledger.healthy

    def on_risk_events(self, events: list) -> None:
        self.put(events)
        for e in events:
            if isinstance(e, RiskEvent):
                log.warning("risk_gate", kind=e.kind, check=e.check, symbol=e.symbol, value=e.value, limit=e.limit,
                            detail=e.detail)

    def _resume(self, source: str) -> None:
        ev = self.gate.resume(self.engine.now_ms, source, self.inventory.total_pnl())
        if ev is not None:
            self.on_risk_events([ev])

    def on_action(self, act: Any) -> None:
        """Actions the engine produced that are not the shell's (none today)."""

    def quoted_since_check(self) -> bool:
        q = self.quoted
        self.quoted = False
        return q

    def poll(self) -> None:
        """Live housekeeping from the shell's timer: honour `mmd resume` written to the ledger."""
        if self.ledger is None:
            return
        for req in self.ledger.poll_resumes():
            log.info("resume_requested", reason=getattr(req, "reason", ""))
            self._resume("mmd resume")

    def stop(self, reason: str) -> None:
        """Cancel every paper order (journalled)."""
        if self._stopped:
            return
        ts = self.engine.now_ms
        for st in self.strategies.values():
            st.cancel_all(ts, reason)
            # Let the cancels land (market time + cancel latency) so the journal ends with no open
            # orders; deterministic, so live and replay journals still match.
            self.put(st.venue.advance(ts + self.settings.venue.cancel_latency_ms, None))
        self._stopped = True

    def close(self) -> None:
        if self.ledger is not None:
            ok = self.ledger.close()
            log.info("ledger_closed", path=self.ledger.path, durable=ok, records=self.records)

    # -- reporting -------------------------------------------------------------------------------

    def symbol_status(self, sym: str) -> dict[str, Any]:
        st = self.strategies[sym]
        inst = st.sc.inst
        q = st.last_quote
        pnl = self.inventory.pnl(sym)
        return {
            "quote_bid": inst.price.to_str(q.bid_px) if q is not None and q.bid_px is not None else None,
            "quote_ask": inst.price.to_str(q.ask_px) if q is not None and q.ask_px is not None else None,
            "position": self.inventory.position_base(sym),
            "fills": st.fills,
            "pnl_total": pnl.total,
            "p_adverse_bid": st.p_bid,
            "p_adverse_ask": st.p_ask,
            "risk": self.gate.reason if self.gate.tripped else "",
            **({"q_hedge": self.hedge_suggestion(), "beta": self.hedge.beta(sym)} if self.hedge is not None else {}),
        }

    def symbol_summary(self, sym: str) -> dict[str, Any]:
        st = self.strategies[sym]
        pnl = self.inventory.pnl(sym)
        return {
            "fills": st.fills,
            "volume": st.volume_lots * st.sc.inst.qty.step_float,
            "position": self.inventory.position_base(sym),
            "pnl": {"spread": pnl.spread, "inventory": pnl.inventory, "fees": pnl.fees, "funding": pnl.funding,
                    "total": pnl.total},
            "decisions": st.decisions,
            "quotes": st.quotes_sent,
        }

    def export_metrics(self, metrics: Any) -> None:
        for sym, st in self.strategies.items():
            sm = metrics.symbol(sym)
            sm.set_position(self.inventory.position_base(sym))
            p = self.inventory.pnl(sym)
            sm.set_pnl(p.spread, p.inventory, p.fees, p.funding, p.total)
            sm.set_p_adverse(st.p_bid, st.p_ask)
        metrics.set_risk(self.gate.tripped, self.gate.reason)
        if self.ledger is not None:
            metrics.set_ledger(self.ledger.backlog, 0.0)


def replay_run_id(paths: list, settings: Settings) -> str:
    """Deterministic run id of a replay: the recordings (names and sizes) and the config sections
    that shape the journal, so a re-run of the same replay continues (and dedups into) the same
    journal whatever its logging, ports or ledger batching."""
    import json

    # Only what changes the journal: not ops (logging, ports), ledger path/batching, or endpoints.
    d = settings.model_dump(mode="json")
    keep = {k: d[k] for k in ("features", "quoter", "calibration", "inventory", "adverse", "venue", "risk")}
    keep["market"] = {"symbols": d["market"]["symbols"], "depth": d["market"]["depth"]}
    keep["mark_interval_ms"] = d["ledger"]["mark_interval_ms"]
    h = hashlib.sha256(json.dumps(keep, sort_keys=True).encode())
    for p in paths:
        h.update(os.path.basename(str(p)).encode())
        try:
            h.update(str(os.path.getsize(p)).encode())
        except OSError:
            pass
    return "replay-" + h.hexdigest()[:12]


def bench_pipeline(settings: Settings | None = None):
    """A fresh whole-tick pipeline for ``bench/``: ``step(frame_bytes)`` runs parse -> book ->
    features -> adverse classifier -> quoter -> risk gate -> paper venue -> inventory (no ledger
    I/O: records are built and dropped). Uses the bundled adverse model."""
    from daemon.bybit.messages import FrameError, FrameParser
    from daemon.config import load_settings
    from daemon.core.instrument import btcusdt_linear
    from daemon.recording import bundled_adverse_model

    s = settings or load_settings(overrides={"adverse": {"model_path": str(bundled_adverse_model())}})
    inst = {"BTCUSDT": btcusdt_linear()}
    engine = Engine(inst, s.market.depth)
    rt = Runtime.replay(s, engine, ledger_path=None)
    parser = FrameParser(inst)
    rt.errors_total = lambda: sum(parser.errors.values())
    parse = parser.parse
    on_events = engine.on_events

    def step(frame: bytes) -> None:
        try:
            out = parse(frame, 0)
        except FrameError:
            return
        if type(out) is list:
            on_events(out)
            if engine.out:
                engine.out.clear()

    step.runtime = rt  # type: ignore[attr-defined]
    return step
