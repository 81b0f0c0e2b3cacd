"""The composition root: builds and wires, per symbol, features -> adverse model -> quoter -> risk
gate -> execution venue -> account (inventory) -> ledger, the same way for ``mmd run``, ``replay``,
``demo`` and the backtests (:meth:`Runtime.live`, :meth:`Runtime.replay`).

Everything that decides is a pure component built here from the settings; :class:`Runtime` holds
the parts shared by every symbol (the account, the risk gate, the ledger, the adverse model, hedge
ratios) and routes records: fills and funding to the account first (the one owner of position and
PnL), then everything to the ledger. Records are dispatched by type.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from daemon import wiring
from daemon.config import Settings
from daemon.core.engine import Engine
from daemon.core.events import BUY, Fill
from daemon.logging import get_logger
from daemon.paper.inventory import Funding, Inventory
from daemon.paper.ledger import Ledger
from daemon.risk import RiskEvent, RiskGate
from daemon.runtime.strategy import SymbolStrategy

log = get_logger("mmd.strategy")


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
        #: True once :meth:`stop` cancelled everything: no new orders after that
        self.stopped = False

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
        rt._attach(next_order_n=st.next_order_n)
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
        rt._attach(next_order_n={})
        return rt

    def _attach(self, next_order_n: dict[str, int]) -> None:
        for sym, sc in self.engine.symbols.items():
            venue = wiring.paper_venue(self.settings.venue, sc.inst, next_order_n.get(sym, 1))
            st = SymbolStrategy(self, sc, venue, wiring.feed_latency(self.settings.venue))
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
            elif t is Funding:
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
        if self.stopped:
            return
        ts = self.engine.now_ms
        for st in self.strategies.values():
            st.cancel_all(ts, reason)
            # Let the cancels land (market time + cancel latency) so the journal ends with no open
            # orders; deterministic, so live and replay journals still match.
            self.put(st.venue.drain(ts))
        self.stopped = True

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
