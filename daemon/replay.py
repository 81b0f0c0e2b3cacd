"""Drive the pure core from recordings, no network, as fast as it can.

The same :class:`~daemon.core.engine.Engine` and strategy runtime as ``mmd run``; frames come from
``<recv_ns> <frame json>`` files instead of a socket. Bad frames are counted (never fatal), exactly
as live. A replay of the frames a live run recorded gives the same ledger as that live run. The journal's
run id is derived from the recordings and the config (:func:`daemon.runtime.runtime.replay_run_id`):
an interrupted replay simply runs again from the start, fresh state, same run id; records already
committed are ignored by id, so the final journal equals an uninterrupted run's.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from daemon.bybit.messages import FrameError, FrameParser
from daemon.config import Settings
from daemon.core.engine import BookStateChanged, Engine, Resubscribe
from daemon.logging import get_logger
from daemon.recording import load_instruments, read_frames

log = get_logger("mmd.replay")


def replay(
    paths: list[str | os.PathLike[str]],
    settings: Settings,
    *,
    ledger_path: str | None = None,
    progress: bool = False,
    trade: bool = True,
) -> dict[str, Any]:
    """Replay ``paths`` in order and return the summary dict (see ``mmd replay --json``)."""
    symbols = settings.market.symbols
    instruments = load_instruments(paths, symbols)
    engine = Engine(instruments, settings.market.depth, book_stale_ms=settings.ws.book_stale_ms)
    runtime = None
    parser = FrameParser(instruments, settings.ws.max_frame_bytes)
    if trade:
        from daemon.runtime.runtime import Runtime, replay_run_id

        runtime = Runtime.replay(settings, engine, ledger_path=ledger_path or settings.ledger.path,
                                 run_id=replay_run_id(paths, settings))
        runtime.errors_total = lambda: sum(parser.errors.values())
    t0 = time.perf_counter()
    frames = 0
    sym_frames = dict.fromkeys(symbols, 0)  # frames that produced events, by the symbol they were about
    last_progress = t0
    on_events = engine.on_events
    parse = parser.parse
    try:
        for recv_ns, frame in read_frames(paths):
            frames += 1
            try:
                out = parse(frame, recv_ns)
            except FrameError as e:
                if parser.errors[e.kind] <= 3:
                    log.warning("bad_frame", kind=e.kind, detail=e.detail[:200], sample=e.sample, frame=frames)
                continue
            if type(out) is list:
                if out:
                    sym_frames[out[0].symbol] += 1
                on_events(out)
                if engine.out:
                    _drain(engine, runtime)
            if progress and frames % 2048 == 0:
                now = time.perf_counter()
                if now - last_progress > 0.25:
                    last_progress = now
                    sys.stderr.write(f"\rreplay: {frames:,} frames  {frames / (now - t0):,.0f} frames/s")
                    sys.stderr.flush()
    finally:
        if runtime is not None:
            runtime.stop(reason="stop")
            runtime.close()
    secs = time.perf_counter() - t0
    if progress:
        sys.stderr.write(f"\rreplay: {frames:,} frames in {secs:.2f} s ({frames / max(secs, 1e-9):,.0f} frames/s)\n")
    summary: dict[str, Any] = {
        "frames": frames,
        "seconds": round(secs, 4),
        "frames_per_s": round(frames / max(secs, 1e-9), 1),
        "parse_errors": dict(parser.errors),
        "resyncs": engine.counts["resync"],
        "symbols": {},
    }
    if runtime is not None and runtime.ledger is not None:
        summary["ledger"] = runtime.ledger.path
        summary["run_id"] = runtime.ledger.run_id
    for sym, sc in engine.symbols.items():
        b = sc.book
        px = sc.inst.price.to_float
        row: dict[str, Any] = {
            "book_state": b.state.name,
            "best_bid": px(b.best_bid) if b.best_bid is not None else None,
            "best_ask": px(b.best_ask) if b.best_ask is not None else None,
            "frames": sym_frames[sym],
            "trades": sc.trades,
        }
        if runtime is not None:
            row.update(runtime.symbol_summary(sym))
        summary["symbols"][sym] = row
    return summary


def _drain(engine: Engine, runtime: Any) -> None:
    for act in engine.drain():
        t = type(act)
        if t is BookStateChanged:
            log.info("book_state", symbol=act.symbol, topic=act.topic, old=act.old, new=act.new, reason=act.reason)
        elif t is Resubscribe:
            # Offline there is nothing to resubscribe: the book waits for the next snapshot in the file.
            pass
        elif runtime is not None:
            runtime.on_action(act)
