"""Engine: a book left waiting for a snapshot asks again after the stale limit (never stuck)."""

from __future__ import annotations

from daemon.core.engine import Engine, Resubscribe
from daemon.core.events import BookUpdate, StreamState, Timer
from daemon.core.instrument import btcusdt_linear

S = 1_000_000_000  # ns


def test_waiting_book_resubscribes_again_after_the_stale_limit():
    eng = Engine({"BTCUSDT": btcusdt_linear()}, 50, book_stale_ms=2000)
    eng.on_event(StreamState("connected", (), "", 0, 0))
    eng.on_event(BookUpdate("BTCUSDT", 50, True, [(100, 1)], [(101, 1)], 10, 1, 1, 1, 1 * S))
    eng.on_event(BookUpdate("BTCUSDT", 50, False, [(99, 1)], [], 12, 2, 2, 2, 1 * S))  # gap
    first = [a for a in eng.drain() if type(a) is Resubscribe]
    assert len(first) == 1 and "gap" in first[0].reason
    # deltas keep arriving but no snapshot: nothing new until the stale limit passes
    for k in range(1, 21):
        t = 1 * S + k * S // 10  # 100 ms timer over 2 s
        eng.on_event(BookUpdate("BTCUSDT", 50, False, [(98, 1)], [], 12 + k, 3, 3, 3, t))
        eng.on_event(Timer(0, t))
    assert not [a for a in eng.drain() if type(a) is Resubscribe]
    eng.on_event(Timer(0, 3 * S + S // 5))  # > 2 s after the first waiting timer
    again = [a for a in eng.drain() if type(a) is Resubscribe]
    assert len(again) == 1 and "no snapshot" in again[0].reason
    # a snapshot ends the wait: no more resubscribes
    eng.on_event(BookUpdate("BTCUSDT", 50, True, [(100, 1)], [(101, 1)], 50, 9, 9, 9, 4 * S))
    for k in range(60):
        eng.on_event(Timer(0, 4 * S + k * S // 10))
        eng.on_event(BookUpdate("BTCUSDT", 50, False, [(100, 2)], [], 51 + k, 10 + k, 9, 9, 4 * S + k * S // 10))
    assert not [a for a in eng.drain() if type(a) is Resubscribe]
    assert eng.symbols["BTCUSDT"].book.live
